"""An in-process Kubernetes API server, strict where the operator's correctness depends on it.

kmock's KubernetesEmulator stores whatever it is sent. An operator tested against it can pass and
still fail on a cluster: a status field the CRD does not declare silently disappears there, a write
with a stale resourceVersion is refused, `/status` is the only way to change `.status`. This one
does on every write what a real API server does:

- resourceVersion from one cluster-wide counter, bumped by every write that changes something (a
  no-op write changes nothing and sends no watch event), 409 Conflict on a stale one (PUT, or
  `metadata.resourceVersion` in a merge patch), 422 when a JSON-patch `test` fails (kopf relies on
  that for its finalizers); uid, creationTimestamp, generation (+1 when anything but metadata and
  status changes), generateName, 409 AlreadyExists, 404 NotFound;
- the status subresource: writes to the object ignore `.status`, writes to `/status` change only
  `.status` and leave generation alone;
- custom resources are pruned (unknown fields dropped and recorded in `pruned`), defaulted and
  validated against their CRD's openAPIV3Schema (422 Invalid naming each field, like
  `spec.phoneNumber: Invalid value: ...`); labels, annotations and names as the API server checks
  them; Secrets fold `stringData` into base64 `data`;
- finalizers and deletionTimestamp; DELETE returns the object; list and watch with resourceVersion,
  sendInitialEvents, label and field selectors, timeoutSeconds, and 410 Gone past the watch window;
- discovery with kinds, verbs, short names, categories and subresources, as kopf reads it.

Every write request is recorded (`writes()`, `write_log`) so that tests can count PATCHes;
`columns()` reads an object's printer columns as `kubectl get` would show them.
Namespaces need not be created first: a namespaced write creates its Namespace (`default` exists).
Served besides the CRDs: Namespaces, Secrets, Events (core and events.k8s.io), kopf's peerings
(kopf.dev, schema-less) and the CRDs themselves (read-only: use `register_crd()`).
Not emulated: server-side apply and strategic merge on custom resources (415), dry runs, garbage
collection of owned objects, admission webhooks, authentication and RBAC, and Table responses.

Test and demo tooling: nothing in the operator imports this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import copy
import dataclasses
import datetime
import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from types import EllipsisType, TracebackType
from typing import Any, Self

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import jsonschema
import kmock
import kopf
from kopf._cogs.structs.credentials import Vault  # kopf.operator(vault=...) is public, its type is not

from whatsapp_operator.devkit.crds import load_crds

Body = dict[str, Any]
ObjectKey = tuple[kmock.resource, str | None, str]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# Written by the server only: whatever a client sends for these is replaced.
SYSTEM_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "selfLink",
    "managedFields",
)
OBJECT_META_FIELDS = frozenset(
    {"name", "generateName", "namespace", "labels", "annotations", "finalizers", "ownerReferences"}
    | set(SYSTEM_METADATA)
)

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# kmock's URL parser reads "namespaces" as a scope and cannot parse the Namespace API itself.
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(/(?P<name>[^/]+)(/(?P<subresource>status))?)?/?")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's: no vowels, no look-alikes
_ANNOTATIONS_LIMIT = 256 * 1024


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Errors, as the API server reports them: a Status body whose reason clients switch on.


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def _status_body(error: kmock.KubernetesError) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": error.status,
        "reason": error.reason,
        "message": error.message,
        "details": error.details or {},
    }


@dataclasses.dataclass(frozen=True)
class Cause:
    """One field-level reason for a 422, as in a Status's `details.causes`."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _go(value: Any) -> str:
    """A value as the API server quotes it in messages (strings double-quoted)."""
    return json.dumps(value, ensure_ascii=False)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------------------------
# CRD schemas: what the API server does with an openAPIV3Schema on every write.

_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        parsed = datetime.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("no time zone")
    return True


def _children(value: Any, schema: Mapping[str, Any]) -> Iterator[tuple[str | int, Any, Mapping[str, Any]]]:
    """Each child of `value` that `schema` declares, with the child's schema."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                yield key, item, sub
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield index, item, schema["items"]


def _nullable_as_type(node: Any) -> Any:
    """OpenAPI's `nullable: true` as JSON Schema spells it, the rest as it is."""
    if isinstance(node, list):
        return [_nullable_as_type(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    result = {key: _nullable_as_type(value) for key, value in node.items()}
    if node.get("nullable") and "type" in node:
        result["type"] = [node["type"], "null"]
        if "enum" in node:
            result["enum"] = [*node["enum"], None]
    return result


def _prune(value: Any, schema: Mapping[str, Any], path: str, pruned: list[str]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
        for key in list(value):
            sub = properties.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is None and not keep_unknown:
                del value[key]
                pruned.append(_join(path, key))
            elif sub is not None and value[key] is None and not sub.get("nullable"):
                del value[key]
    for key, item, sub in _children(value, schema):
        _prune(item, sub, _join(path, key), pruned)


def _default(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
    for _, item, sub in _children(value, schema):
        _default(item, sub)


class Schema:
    """One CRD version's openAPIV3Schema: prune, default and validate as the API server does."""

    def __init__(self, openapi: Mapping[str, Any]) -> None:
        # apiVersion, kind and metadata are the API server's own; metadata is checked separately.
        self.root: Mapping[str, Any] = {
            **openapi,
            "properties": {
                **openapi.get("properties", {}),
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
        self._validator = jsonschema.Draft4Validator(_nullable_as_type(self.root), format_checker=_FORMATS)

    def prune(self, obj: Body) -> list[str]:
        """Drop undeclared fields (returned) and non-nullable nulls (not returned: not unknown)."""
        pruned: list[str] = []
        _prune(obj, self.root, "", pruned)
        return pruned

    def default(self, obj: Body) -> None:
        _default(obj, self.root)

    def validate(self, obj: Body) -> list[Cause]:
        causes = {cause: None for error in self._validator.iter_errors(obj) for cause in _causes(error)}
        causes.update(dict.fromkeys(_list_type_causes(obj, self.root, "")))
        return sorted(causes, key=lambda cause: (cause.field, cause.message))


_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}
_JSON_TYPES[type(None)] = "null"


def _causes(error: jsonschema.ValidationError) -> list[Cause]:
    field = ""
    for key in error.absolute_path:
        field = _join(field, key)
    keyword, limit, value = error.validator, error.validator_value, error.instance
    if keyword == "required":
        missing = [name for name in limit if isinstance(value, dict) and name not in value]
        return [Cause(_join(field, name), "FieldValueRequired", "Required value") for name in missing]
    if keyword == "enum":
        supported = ", ".join(_go(option) for option in limit)
        return [
            Cause(field, "FieldValueNotSupported", f"Unsupported value: {_go(value)}: supported values: {supported}")
        ]
    if keyword in ("type", "format"):
        actual = _JSON_TYPES.get(type(value), type(value).__name__) if keyword == "type" else value
        expected = "/".join(limit) if isinstance(limit, list) else limit
        return [
            Cause(
                field,
                "FieldValueTypeInvalid",
                f"Invalid value: {_go(actual)}: {field} in body must be of type {expected}: {_go(actual)}",
            )
        ]
    rules = {
        "pattern": f"should match '{limit}'",
        "minimum": f"should be greater than {'' if error.schema.get('exclusiveMinimum') else 'or equal to '}{limit}",
        "maximum": f"should be less than {'' if error.schema.get('exclusiveMaximum') else 'or equal to '}{limit}",
        "minLength": f"should be at least {limit} chars long",
        "maxLength": f"should be at most {limit} chars long",
        "minItems": f"should have at least {limit} items",
        "maxItems": f"should have at most {limit} items",
    }
    return [_invalid_value(field, value, f"{field} in body {rules.get(str(keyword), error.message)}")]


def _list_type_causes(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[Cause]:
    """x-kubernetes-list-type map and set: the duplicates the API server refuses."""
    if isinstance(value, list) and schema.get("x-kubernetes-list-type") in ("map", "set"):
        keys = schema.get("x-kubernetes-list-map-keys")
        seen: list[Any] = []
        for index, item in enumerate(value):
            identity = {key: item.get(key) for key in keys} if keys and isinstance(item, dict) else item
            if identity in seen:
                yield Cause(_join(path, index), "FieldValueDuplicate", f"Duplicate value: {_go(identity)}")
            seen.append(identity)
    for key, item, sub in _children(value, schema):
        yield from _list_type_causes(item, sub, _join(path, key))


def structural_errors(schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Why the API server would refuse this openAPIV3Schema as non-structural (empty if it would not).

    Covers the rules that matter here: every node typed, arrays with items, no properties together
    with additionalProperties, no types or defaults inside allOf/anyOf/oneOf/not, list-map keys
    required, and defaults that validate against their own schema without being pruned.
    """
    where = path or "<root>"
    errors: list[str] = []
    typed = (
        "type" in schema
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    )
    if not typed:
        errors.append(f"{where}: type is required")
    if schema.get("type") == "array" and "items" not in schema:
        errors.append(f"{where}: items is required for arrays")
    if "properties" in schema and "additionalProperties" in schema:
        errors.append(f"{where}: properties and additionalProperties are mutually exclusive")
    for combinator in ("allOf", "anyOf", "oneOf", "not"):
        branches = schema.get(combinator, [])
        for branch in [branches] if isinstance(branches, Mapping) else branches:
            forbidden = {"type", "default", "nullable", "additionalProperties", "description"} & set(branch)
            if forbidden:
                errors.append(f"{where}: {combinator} must not set {', '.join(sorted(forbidden))}")
    if schema.get("x-kubernetes-list-type") == "map":
        item = schema.get("items", {})
        for key in schema.get("x-kubernetes-list-map-keys", []):
            if key not in item.get("required", []) and "default" not in item.get("properties", {}).get(key, {}):
                errors.append(f"{where}: list-map key {key} must be required or defaulted")
    if "default" in schema:
        pruned: list[str] = []
        _prune(copy.deepcopy(schema["default"]), schema, where, pruned)
        errors.extend(f"{field}: default has a field the schema prunes" for field in pruned)
        validator = jsonschema.Draft4Validator(_nullable_as_type(schema), format_checker=_FORMATS)
        errors.extend(f"{where}: default is invalid: {e.message}" for e in validator.iter_errors(schema["default"]))
    for key, sub in schema.get("properties", {}).items():
        errors.extend(structural_errors(sub, _join(path, key)))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            errors.extend(structural_errors(schema[key], f"{path}[*]" if key == "items" else f"{path}.*"))
    return errors


# ---------------------------------------------------------------------------------------------
# Metadata and Secrets: what the API server checks on every resource, custom or not.


def _invalid_value(field: str, value: Any, why: str) -> Cause:
    return Cause(field, "FieldValueInvalid", f"Invalid value: {_go(value)}: {why}")


_NAME_RULE = "must consist of alphanumeric characters, '-', '_' or '.', and start and end with an alphanumeric"


def _is_qualified_name(key: object) -> bool:
    """A label or annotation key: an optional DNS subdomain and '/', then a name of at most 63."""
    prefix, _, name = str(key).rpartition("/")
    return (
        isinstance(key, str)
        and len(name) <= 63
        and _QUALIFIED_NAME.fullmatch(name) is not None
        and (not prefix or (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix) is not None))
    )


def _metadata_causes(meta: Mapping[str, Any], *, dns_label: bool) -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name", "")
    what, limit, pattern = ("label", 63, re.compile(_DNS_LABEL)) if dns_label else ("subdomain", 253, _DNS_SUBDOMAIN)
    if not (isinstance(name, str) and len(name) <= limit and pattern.fullmatch(name)):
        why = f"a lowercase RFC 1123 {what} (at most {limit}) {_NAME_RULE}, lower case only"
        causes.append(_invalid_value("metadata.name", name, why))
    for kind in ("labels", "annotations"):
        mapping = meta.get(kind, {})
        if not isinstance(mapping, dict):
            causes.append(Cause(f"metadata.{kind}", "FieldValueTypeInvalid", "must be a map of strings"))
            continue
        for key, value in mapping.items():
            field = f"metadata.{kind}[{key}]"
            if not _is_qualified_name(key):
                causes.append(_invalid_value(field, key, f"a key's name part (at most 63) {_NAME_RULE}"))
            if not isinstance(value, str):
                causes.append(Cause(field, "FieldValueTypeInvalid", f"Invalid value: {_go(value)}: must be a string"))
            elif kind == "labels" and not (len(value) <= 63 and _LABEL_VALUE.fullmatch(value)):
                causes.append(_invalid_value(field, value, f"a label value is empty or (at most 63) {_NAME_RULE}"))
    if len(json.dumps(meta.get("annotations", {}))) > _ANNOTATIONS_LIMIT:
        causes.append(
            Cause("metadata.annotations", "FieldValueTooLong", f"Too long: at most {_ANNOTATIONS_LIMIT} bytes")
        )
    finalizers = meta.get("finalizers", [])
    if not (isinstance(finalizers, list) and all(isinstance(item, str) for item in finalizers)):
        causes.append(Cause("metadata.finalizers", "FieldValueTypeInvalid", "must be a list of strings"))
    return causes


def _fold_string_data(secret: Body) -> list[Cause]:
    """The API server stores a Secret's `stringData` base64-encoded into `data`, and checks `data`."""
    data = secret.get("data") or {}
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    causes: list[Cause] = []
    for key, value in data.items():
        if not _SECRET_KEY.fullmatch(key):
            causes.append(_invalid_value(f"data[{key}]", key, "a valid config key must consist of [-._a-zA-Z0-9]"))
        try:
            base64.b64decode(str(value), validate=True)
        except binascii.Error:
            causes.append(Cause(f"data[{key}]", "FieldValueInvalid", "Invalid value: illegal base64 data"))
    if data:
        secret["data"] = data
    return causes


# ---------------------------------------------------------------------------------------------
# Selectors, as list and watch requests give them.


def _selector_terms(selector: str) -> list[str]:
    return [term.strip() for term in re.split(r",(?![^()]*\))", selector) if term.strip()]


def _label_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _selector_terms(selector):
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, operator, options = match[1], match[2], {v.strip() for v in match[3].split(",")}
            checks.append(lambda labels, k=key, o=options, neg=operator == "notin": (labels.get(k) in o) != neg)
        elif match := re.fullmatch(r"(!?)([^=!\s]+)", term):
            checks.append(lambda labels, k=match[2], neg=bool(match[1]): (k in labels) != neg)
        elif match := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", term):
            checks.append(lambda labels, k=match[1], v=match[3], neg=match[2] == "!=": (labels.get(k) == v) != neg)
        else:
            raise api_error(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)


def _field_selector(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _selector_terms(selector):
        match = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", term)
        if match is None:
            raise api_error(400, "BadRequest", f"invalid field selector: {term!r}")

        def check(
            obj: Mapping[str, Any], path: str = match[1], value: str = match[3], neg: bool = match[2] == "!="
        ) -> bool:
            found: Any = obj
            for part in path.split("."):
                found = found.get(part) if isinstance(found, Mapping) else None
            return (str(found if found is not None else "") == value) != neg

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


# ---------------------------------------------------------------------------------------------
# Printer columns: the JSONPath subset CRDs use (`.a.b`, `[0]`, `[?(@.type=="Ready")]`).

_JSONPATH_STEP = re.compile(
    r'\.(?P<field>[A-Za-z0-9_-]+)|\[(?P<index>\d+)\]|\[\?\(@\.(?P<key>[A-Za-z0-9_-]+)=="(?P<value>[^"]*)"\)\]'
)


def _jsonpath_steps(path: str) -> list[re.Match[str]]:
    steps = list(_JSONPATH_STEP.finditer(path))
    if "".join(step[0] for step in steps) != path:
        raise ValueError(f"unsupported JSONPath: {path!r}")
    return steps


def _jsonpath(obj: Any, path: str) -> list[Any]:
    """Every value `path` selects in `obj`, as kubectl evaluates a printer column."""
    values = [obj]
    for step in _jsonpath_steps(path):
        if step["field"] is not None:
            values = [v[step["field"]] for v in values if isinstance(v, dict) and step["field"] in v]
        elif step["index"] is not None:
            index = int(step["index"])
            values = [v[index] for v in values if isinstance(v, list) and index < len(v)]
        else:
            values = [
                item
                for v in values
                if isinstance(v, list)
                for item in v
                if isinstance(item, dict) and str(item.get(step["key"])) == step["value"]
            ]
    return values


# ---------------------------------------------------------------------------------------------
# What the emulator serves and records.


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """One served resource: its discovery facts and, for custom resources, the schema it admits."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    custom: bool = False  # CRD-served: generation is tracked and PUT must name a resourceVersion
    schema: Schema | None = None  # None: stored as sent, no pruning, defaulting or validation
    read_only: bool = False
    columns: tuple[tuple[str, str], ...] = ()  # additionalPrinterColumns: (name, jsonPath)

    @property
    def ref(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: `plural.group`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        parts = [f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"]
        parts += ["namespaces", namespace] if self.namespaced and namespace is not None else []
        parts += [self.plural, *(part for part in (name, subresource) if part is not None)]
        return "/".join(parts)

    @property
    def verbs(self) -> set[str]:
        read = {"get", "list", "watch"}
        return read if self.read_only else read | {"create", "update", "patch", "delete"}


def _builtin(group: str, version: str, plural: str, kind: str, *, namespaced: bool, **extra: Any) -> ResourceType:
    return ResourceType(group, version, plural, kind, namespaced, singular=kind.lower(), **extra)


CRDS = _builtin(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
    shortnames=("crd", "crds"),
    read_only=True,
)
NAMESPACES = _builtin(
    "", "v1", "namespaces", "Namespace", namespaced=False, shortnames=("ns",), status_subresource=True
)
SECRETS = _builtin("", "v1", "secrets", "Secret", namespaced=True)
BUILTINS = (
    CRDS,
    NAMESPACES,
    SECRETS,
    _builtin("", "v1", "events", "Event", namespaced=True, shortnames=("ev",)),
    _builtin("events.k8s.io", "v1", "events", "Event", namespaced=True, shortnames=("ev",)),
    # kopf's peering, for operators that run as an active/standby pair (kopf's CRDs keep unknown fields).
    _builtin("kopf.dev", "v1", "kopfpeerings", "KopfPeering", namespaced=True, custom=True),
    _builtin("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False, custom=True),
)


@dataclasses.dataclass(frozen=True)
class Write:
    """One write request as the API server saw it, whatever became of it."""

    verb: str  # create, update (PUT), patch, delete
    group: str
    plural: str
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    user_agent: str
    refused: tuple[str, ...] = ()  # the fields a 422 named ("spec.x: Invalid value: ..."); none for others


@dataclasses.dataclass(frozen=True)
class PrunedField:
    """A field a client wrote that the schema does not declare: a real API server drops it silently."""

    plural: str
    namespace: str | None
    name: str
    field: str

    def __str__(self) -> str:
        return f"{self.plural} {self.namespace}/{self.name}: {self.field}"


@dataclasses.dataclass(frozen=True)
class _Change:
    rv: int
    type: str
    obj: Body


_WRITE_VERBS = {
    kmock.method.POST: "create",
    kmock.method.PUT: "update",
    kmock.method.PATCH: "patch",
    kmock.method.DELETE: "delete",
}


@attrs.define(kw_only=True)
class StrictKubernetesEmulator(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold (discovery, errors, its DSL) with an API server's write semantics.

    The state changes where the response is made, not before kmock's matching (as its own emulator
    does), so a reaction a test injects (`emulator["patch", resource] << 503`) fails the write the way
    a broken API server would: nothing is stored.
    """

    watch_window: int = 10_000  # events kept per resource for watches resuming from a resourceVersion

    pruned: list[PrunedField] = attrs.field(factory=list, init=False)
    write_log: list[Write] = attrs.field(factory=list, init=False)

    _types: dict[kmock.resource, ResourceType] = attrs.field(factory=dict, init=False)
    _objects: kmock.ObjectsArray = attrs.field(factory=kmock.ObjectsArray, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _log: dict[kmock.resource, list[_Change]] = attrs.field(factory=dict, init=False)
    _forgotten: dict[kmock.resource, int] = attrs.field(factory=dict, init=False)  # newest rv dropped
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _written: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _own_reactions: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for criterion, serve in self._routes().items():
            if criterion == kmock.action.CREATE:
                self.fallback[criterion] << 201 << serve
            else:
                self.fallback[criterion] << serve
        self._own_reactions = len(self._payloads)
        for rtype in BUILTINS:
            self.register(rtype)
        self._ensure_namespace("default")

    def _routes(self) -> dict[kmock.action | kmock.method, Callable[[kmock.Request], Awaitable[Any]]]:
        return {
            kmock.action.LIST: self._serve_list,
            kmock.action.WATCH: self._serve_watch,
            kmock.action.FETCH: self._serve_fetch,
            kmock.action.CREATE: self._serve_create,
            kmock.action.UPDATE: self._serve_patch,
            kmock.action.DELETE: self._serve_delete,
            kmock.method.PUT: self._serve_replace,
        }

    # -- what is served ------------------------------------------------------------------------

    def register(self, rtype: ResourceType) -> None:
        self._types[rtype.ref] = rtype
        self.resources[rtype.ref] = kmock.ResourceInfo(
            kind=rtype.kind,
            singular=rtype.singular,
            namespaced=rtype.namespaced,
            verbs=rtype.verbs,
            shortnames=rtype.shortnames,
            categories=rtype.categories,
            subresources={"status"} if rtype.status_subresource else set(),
        )

    def register_crd(self, crd: Mapping[str, Any]) -> None:
        """Serve a CustomResourceDefinition's versions, refusing it as the API server would."""
        spec, names = crd["spec"], crd["spec"]["names"]
        for version in spec["versions"]:
            openapi = version["schema"]["openAPIV3Schema"]
            errors = structural_errors(openapi)
            if errors:
                raise ValueError(f"{crd['metadata']['name']} {version['name']} is not structural: {errors}")
            columns = tuple((c["name"], c["jsonPath"]) for c in version.get("additionalPrinterColumns", ()))
            for _, path in columns:
                _jsonpath_steps(path)  # refuse what columns() could not evaluate
            if version.get("served", True):
                self.register(
                    ResourceType(
                        group=spec["group"],
                        version=version["name"],
                        plural=names["plural"],
                        kind=names["kind"],
                        namespaced=spec["scope"] == "Namespaced",
                        singular=names.get("singular", names["kind"].lower()),
                        shortnames=tuple(names.get("shortNames", ())),
                        categories=tuple(names.get("categories", ())),
                        status_subresource="status" in version.get("subresources", {}),
                        custom=True,
                        schema=Schema(openapi),
                        columns=columns,
                    )
                )
        stored = copy.deepcopy(dict(crd))
        stored["status"] = {
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
            "conditions": [
                {"type": kind, "status": "True", "reason": reason, "message": "", "lastTransitionTime": now_rfc3339()}
                for kind, reason in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
            ],
        }
        self._create_object(CRDS, None, stored)

    def resolve(self, name: str) -> ResourceType:
        """A resource as kubectl finds it: by plural, singular, short name or kind (any case)."""
        wanted = name.lower()
        for rtype in self._types.values():
            if (
                wanted in {rtype.plural, rtype.singular, rtype.kind.lower(), *rtype.shortnames}
                or wanted == rtype.qualified
            ):
                return rtype
        raise LookupError(f"the server doesn't have a resource type {name!r}")

    def lookup(self, api_version: str, kind: str) -> ResourceType:
        for rtype in self._types.values():
            if rtype.api_version == api_version and rtype.kind == kind:
                return rtype
        raise LookupError(f"no matches for kind {kind!r} in version {api_version!r}")

    # -- what tests assert on --------------------------------------------------------------------

    @property
    def objects(self) -> kmock.ObjectsArray:
        """Every object and its versions (kmock's array: `objects[resource, namespace, name].history`)."""
        return self._objects

    @property
    def resource_version(self) -> int:
        return self._rv

    def read(self, resource: str, name: str, namespace: str | None = "default") -> Body | None:
        """The object as stored now (a copy), or None; no request is made or counted."""
        rtype = self.resolve(resource)
        return self._current((rtype.ref, namespace if rtype.namespaced else None, name))

    def columns(self, resource: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
        """The object's printer columns as `kubectl get` shows them (None where a path finds nothing)."""
        rtype = self.resolve(resource)
        obj = self.read(resource, name, namespace)
        if obj is None:
            raise LookupError(f'{rtype.qualified} "{name}" not found')
        return {column: next(iter(_jsonpath(obj, path)), None) for column, path in rtype.columns}

    async def next_change(self) -> None:
        """Return after the next write that changes anything (no-op writes do not count)."""
        await self._changed.wait()

    async def next_write(self) -> None:
        """Return after the next write request is answered, refused or not."""
        await self._written.wait()

    def writes(
        self,
        resource: str | None = None,
        *,
        subresource: str | EllipsisType | None = ...,
        verb: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        user_agent: str | None = None,
    ) -> int:
        """How many write requests match; `subresource=None` means the object itself, `...` any."""
        plural = self.resolve(resource).plural if resource is not None else None
        return sum(
            1
            for write in self.write_log
            if (plural is None or write.plural == plural)
            and (subresource is ... or write.subresource == subresource)
            and (verb is None or write.verb == verb)
            and (namespace is None or write.namespace == namespace)
            and (name is None or write.name == name)
            and (user_agent is None or write.user_agent.startswith(user_agent))
        )

    def events(
        self,
        *,
        name: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        reason: str | None = None,
        type: str | None = None,
    ) -> list[Body]:
        """Kubernetes Events of both APIs (core v1 and events.k8s.io), oldest first, by what they are about."""
        found: list[tuple[int, Body]] = []
        for rtype in self._types.values():
            if rtype.kind != "Event":
                continue
            for key, obj in self._objects.items():
                if key[0] != rtype.ref or obj.deleted:
                    continue
                event = copy.deepcopy(obj.raw)
                about = event.get("involvedObject") or event.get("regarding") or {}
                if (
                    (name is None or about.get("name") == name)
                    and (kind is None or about.get("kind") == kind)
                    and (namespace is None or event["metadata"].get("namespace") == namespace)
                    and (reason is None or event.get("reason") == reason)
                    and (type is None or event.get("type") == type)
                ):
                    found.append((int(event["metadata"]["resourceVersion"]), event))
        return [event for _, event in sorted(found, key=lambda pair: pair[0])]

    # -- HTTP ------------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _NAMESPACE_PATH.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        method = kmock.method(raw_request.method)
        watching = method == kmock.method.GET and raw_request.query.get("watch") in ("true", "1")
        action = (
            kmock.action.WATCH
            if watching
            else {
                (kmock.method.GET, False): kmock.action.LIST,
                (kmock.method.POST, False): kmock.action.CREATE,
                (kmock.method.GET, True): kmock.action.FETCH,
                (kmock.method.PATCH, True): kmock.action.UPDATE,
                (kmock.method.DELETE, True): kmock.action.DELETE,
            }.get((method, match["name"] is not None))
        )
        request = kmock.Request(
            id=len(self._requests),
            method=method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            text=body.decode(errors="replace"),
            data=data,
            action=action,
            resource=NAMESPACES.ref,
            name=match["name"],
            subresource=match["subresource"],
            raw_request=raw_request,
        )
        self._requests.append(request)  # kmock matches reactions against its log of requests
        return await self._handle(request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        refused: tuple[str, ...] = ()
        try:
            response = await self._serve(request)
        except kmock.KubernetesError as error:
            response = aiohttp.web.json_response(_status_body(error), status=error.status)
            refused = tuple(f"{c['field']}: {c['message']}" for c in (error.details or {}).get("causes", ()))
        verb = _WRITE_VERBS.get(request.method) if request.resource is not None else None
        if verb is not None and request.resource.plural:
            self.write_log.append(
                Write(
                    verb=verb,
                    group=request.resource.group or "",
                    plural=request.resource.plural,
                    subresource=request.subresource,
                    namespace=request.namespace,
                    name=request.name,
                    status=response.status,
                    user_agent=_header(request, "User-Agent") or "",
                    refused=refused,
                )
            )
            self._written.set()
            self._written = asyncio.Event()
        return response

    async def _serve(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """Serve object requests directly unless a test injected reactions: kmock matches a request
        against its whole request log, which makes a long run quadratic. Discovery and injected
        reactions (`emulator[...] << 503`) go through kmock; only those stay in its request log."""
        serve = None
        if request.resource is not None and request.resource.plural and len(self._payloads) == self._own_reactions:
            serve = self._routes().get(kmock.method.PUT if request.method == kmock.method.PUT else request.action)
        if serve is None:
            return await super()._handle(request)
        self._requests.remove(request)
        status = 201 if request.action == kmock.action.CREATE else None
        return await kmock.Response(status=status, payload=await serve(request))(request)

    async def _serve_fetch(self, request: kmock.Request) -> Body:
        _, _, obj = self._target(request)
        return obj

    async def _serve_list(self, request: kmock.Request) -> Body:
        rtype = self._type_of(request)
        matches = self._filter(request, rtype)
        items = sorted(
            self._current_objects(rtype), key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        )
        items = [obj for obj in items if matches(obj)]
        metadata: Body = {"resourceVersion": str(self._rv)}
        if request.params.get("continue"):
            after = json.loads(base64.urlsafe_b64decode(request.params["continue"]))
            items = [obj for obj in items if [obj["metadata"].get("namespace", ""), obj["metadata"]["name"]] > after]
        limit = int(request.params.get("limit") or 0)
        if limit and len(items) > limit:
            items = items[:limit]
            last = [items[-1]["metadata"].get("namespace", ""), items[-1]["metadata"]["name"]]
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(last).encode()).decode()
        return {"apiVersion": rtype.api_version, "kind": f"{rtype.kind}List", "metadata": metadata, "items": items}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Body | bytes]:
        rtype = self._type_of(request)
        matches = self._filter(request, rtype)
        since = request.params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise api_error(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        lifetime = request.params.get("timeoutSeconds")
        deadline = asyncio.get_running_loop().time() + float(lifetime) if lifetime else None
        initial = request.params.get("sendInitialEvents") == "true"
        return self._stream(rtype, matches, int(since), initial=initial, deadline=deadline)

    async def _stream(
        self,
        rtype: ResourceType,
        matches: Callable[[Body], bool],
        since: int,
        *,
        initial: bool,
        deadline: float | None,
    ) -> AsyncIterator[Body | bytes]:
        yield b""  # send the headers now: a watch may stay silent for long
        cursor = since
        if since == 0 or initial:
            cursor = self._rv
            for obj in self._current_objects(rtype):
                if matches(obj):
                    yield {"type": "ADDED", "object": obj}
            if initial:
                bookmark = {"resourceVersion": str(cursor), "annotations": {"k8s.io/initial-events-end": "true"}}
                yield {
                    "type": "BOOKMARK",
                    "object": {"apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": bookmark},
                }
        while True:
            changed = self._changed  # before reading the log, so that no change slips between
            if cursor < self._forgotten.get(rtype.ref, 0):
                message = f"too old resource version: {cursor} ({self._forgotten[rtype.ref]})"
                yield {"type": "ERROR", "object": _status_body(api_error(410, "Expired", message))}
                return
            log = self._log.get(rtype.ref, [])
            for change in log[bisect.bisect_right(log, cursor, key=lambda c: c.rv) :]:
                cursor = change.rv
                if matches(change.obj):
                    yield {"type": change.type, "object": change.obj}
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                return

    async def _serve_create(self, request: kmock.Request) -> Body:
        rtype = self._type_of(request, writing=True)
        body = _object(request.data)
        namespace = self._scope(rtype, request.namespace)
        meta = body.setdefault("metadata", {})
        if rtype.namespaced and meta.setdefault("namespace", namespace) != namespace:
            raise api_error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        return self._create_object(rtype, namespace, body)

    async def _serve_patch(self, request: kmock.Request) -> Body:
        rtype, key, old = self._target(request, writing=True)
        content_type = (_header(request, "Content-Type") or "").split(";")[0].strip()
        if content_type == JSON_PATCH and isinstance(request.data, list):
            try:
                new = _object(jsonpatch.apply_patch(old, request.data))
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise api_error(
                    422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
                ) from e
        elif content_type == MERGE_PATCH or (content_type == STRATEGIC_MERGE_PATCH and not rtype.custom):
            patch = _object(request.data)
            self._check_preconditions(rtype, old, patch.get("metadata") or {})
            new = _merge_patch(old, patch)
        else:
            raise api_error(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include:"
                f" {JSON_PATCH}, {MERGE_PATCH}",
            )
        return self._update_object(rtype, key, old, new, request.subresource)

    async def _serve_replace(self, request: kmock.Request) -> Body:
        if request.name is None:
            raise api_error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        rtype, key, old = self._target(request, writing=True)
        new = _object(request.data)
        meta = new.get("metadata") or {}
        if meta.get("name", request.name) != request.name:
            raise api_error(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({request.name})",
            )
        if rtype.custom and not meta.get("resourceVersion"):
            cause = Cause(
                "metadata.resourceVersion", "FieldValueInvalid", "Invalid value: 0x0: must be specified for an update"
            )
            raise self._invalid(rtype, request.name, [cause])
        self._check_preconditions(rtype, old, meta)
        return self._update_object(rtype, key, old, new, request.subresource)

    async def _serve_delete(self, request: kmock.Request) -> Body:
        rtype, key, old = self._target(request, writing=True)
        options = request.data if isinstance(request.data, dict) else {}
        self._check_preconditions(rtype, old, options.get("preconditions") or {})
        if not old["metadata"].get("finalizers"):
            return self._remove(rtype, key, old)
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        new["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
        if rtype.custom:
            new["metadata"]["generation"] += 1
        return self._commit(rtype, key, new, "MODIFIED")

    # -- the API server's write path -------------------------------------------------------------

    def _create_object(self, rtype: ResourceType, namespace: str | None, body: Body) -> Body:
        _check_kind(rtype, body)
        meta = body.setdefault("metadata", {})
        for field in SYSTEM_METADATA:
            meta.pop(field, None)
        if not rtype.namespaced:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                cause = Cause("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")
                raise self._invalid(rtype, "", [cause])
            meta["name"] = self._generate_name(rtype, namespace, meta["generateName"])
        key = (rtype.ref, namespace, meta["name"])
        if self._current(key) is not None:
            raise api_error(
                409,
                "AlreadyExists",
                f'{rtype.qualified} "{meta["name"]}" already exists',
                name=meta["name"],
                group=rtype.group,
                kind=rtype.plural,
            )
        if rtype.status_subresource:
            body.pop("status", None)
        if rtype is NAMESPACES:
            body["status"] = {"phase": "Active"}
        obj = self._admit(rtype, body, key)
        obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if rtype.custom:
            obj["metadata"]["generation"] = 1
        if namespace is not None:
            self._ensure_namespace(namespace)
        return self._commit(rtype, key, obj, "ADDED")

    def _update_object(
        self, rtype: ResourceType, key: ObjectKey, old: Body, new: Body, subresource: str | None
    ) -> Body:
        _check_kind(rtype, new)
        if subresource == "status":
            status = new.get("status")
            new = {k: v for k, v in copy.deepcopy(old).items() if k != "status"}
            if status is not None:
                new["status"] = status
        elif rtype.status_subresource:
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        meta = new["metadata"] = dict(new.get("metadata") or {})
        for field in (*SYSTEM_METADATA, "name", "namespace"):
            meta.pop(field, None)
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
        obj = self._admit(rtype, new, key)
        if obj == old:
            return old  # a no-op write stores nothing and notifies no one, as in etcd
        added = set(obj["metadata"].get("finalizers", [])) - set(old["metadata"].get("finalizers", []))
        if old["metadata"].get("deletionTimestamp") and added:
            cause = Cause(
                "metadata.finalizers",
                "FieldValueForbidden",
                "Forbidden: no new finalizers can be added if the object is being deleted,"
                f" found new finalizers {_go(sorted(added))}",
            )
            raise self._invalid(rtype, key[2], [cause])
        if rtype.custom and _spec_of(obj, rtype) != _spec_of(old, rtype):
            obj["metadata"]["generation"] = old["metadata"]["generation"] + 1
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            return self._remove(rtype, key, obj)
        return self._commit(rtype, key, obj, "MODIFIED")

    def _admit(self, rtype: ResourceType, body: Body, key: ObjectKey) -> Body:
        """Prune, default, and validate: what the API server does between decoding and storing."""
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        unknown_meta = sorted(set(meta) - OBJECT_META_FIELDS)
        for field in unknown_meta:
            del meta[field]
        pruned = [f"metadata.{field}" for field in unknown_meta]
        causes = _metadata_causes(meta, dns_label=rtype is NAMESPACES)
        if rtype.schema is not None:
            pruned += rtype.schema.prune(obj)
            rtype.schema.default(obj)
            causes += rtype.schema.validate(obj)
        if rtype is SECRETS:
            causes += _fold_string_data(obj)
        if causes:
            raise self._invalid(rtype, key[2], causes)
        self.pruned.extend(PrunedField(rtype.plural, key[1], key[2], field) for field in pruned)
        return obj

    def _commit(self, rtype: ResourceType, key: ObjectKey, obj: Body, change: str) -> Body:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if change == "DELETED":
            self._objects[key].delete()
        elif key in self._objects:
            self._objects[key].history.append(obj)
        else:
            self._objects[key] = obj
        log = self._log.setdefault(rtype.ref, [])
        log.append(_Change(self._rv, change, obj))
        if len(log) > 2 * self.watch_window:  # trim in batches: cheap, and watchers rarely lag
            self._forgotten[rtype.ref] = log[-self.watch_window - 1].rv
            del log[: -self.watch_window]
        self._changed.set()
        self._changed = asyncio.Event()
        return obj

    def _remove(self, rtype: ResourceType, key: ObjectKey, obj: Body) -> Body:
        return self._commit(rtype, key, copy.deepcopy(obj), "DELETED")

    def _ensure_namespace(self, name: str) -> None:
        if self._current((NAMESPACES.ref, None, name)) is None:
            self._create_object(NAMESPACES, None, {"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}})

    def _generate_name(self, rtype: ResourceType, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix[:58] + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            if self._current((rtype.ref, namespace, name)) is None:
                return name

    def _check_preconditions(self, rtype: ResourceType, old: Body, given: Mapping[str, Any]) -> None:
        for field in ("uid", "resourceVersion"):
            if given.get(field) and given[field] != old["metadata"].get(field):
                name = old["metadata"]["name"]
                message = (
                    f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has been modified;'
                    " please apply your changes to the latest version and try again"
                )
                raise api_error(409, "Conflict", message, name=name, group=rtype.group, kind=rtype.plural)

    def _invalid(self, rtype: ResourceType, name: str, causes: list[Cause]) -> kmock.KubernetesError:
        listed = str(causes[0]) if len(causes) == 1 else f"[{', '.join(map(str, causes))}]"
        kind = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
        details = {
            "name": name,
            "group": rtype.group,
            "kind": rtype.kind,
            "causes": [dataclasses.asdict(c) for c in causes],
        }
        return api_error(422, "Invalid", f'{kind} "{name}" is invalid: {listed}', **details)

    # -- reading ---------------------------------------------------------------------------------

    def _type_of(self, request: kmock.Request, *, writing: bool = False) -> ResourceType:
        rtype = self._types.get(request.resource) if request.resource is not None else None
        if rtype is None:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        if writing and rtype.read_only:
            raise api_error(
                405, "MethodNotAllowed", f"the emulator serves {rtype.qualified} read-only: use register_crd()"
            )
        return rtype

    def _scope(self, rtype: ResourceType, namespace: str | None) -> str | None:
        if rtype.namespaced != (namespace is not None):
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        return namespace

    def _target(self, request: kmock.Request, *, writing: bool = False) -> tuple[ResourceType, ObjectKey, Body]:
        rtype = self._type_of(request, writing=writing)
        if request.subresource is not None and not (request.subresource == "status" and rtype.status_subresource):
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        key = (rtype.ref, self._scope(rtype, request.namespace), request.name or "")
        obj = self._current(key)
        if obj is None:
            raise api_error(
                404,
                "NotFound",
                f'{rtype.qualified} "{request.name}" not found',
                name=request.name,
                group=rtype.group,
                kind=rtype.plural,
            )
        return rtype, key, obj

    def _current(self, key: ObjectKey) -> Body | None:
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _current_objects(self, rtype: ResourceType) -> list[Body]:
        return [obj.raw for key, obj in self._objects.items() if key[0] == rtype.ref and not obj.deleted]

    def _filter(self, request: kmock.Request, rtype: ResourceType) -> Callable[[Body], bool]:
        namespace, name = request.namespace, request.name
        labels = _label_selector(request.params.get("labelSelector", ""))
        fields = _field_selector(request.params.get("fieldSelector", ""))
        return lambda obj: (
            (namespace is None or obj["metadata"].get("namespace") == namespace)
            and (name is None or obj["metadata"]["name"] == name)
            and labels(obj["metadata"].get("labels") or {})
            and fields(obj)
        )


def _header(request: kmock.Request, name: str) -> str | None:
    return next((value for key, value in request.headers.items() if key.lower() == name.lower()), None)


def _object(data: Any) -> Body:
    """A body shaped like an object (a JSON object with an object for metadata), or a 400."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata", {}), dict):
        raise api_error(400, "BadRequest", "the body must be a JSON object whose metadata is an object")
    return copy.deepcopy(data)


def _check_kind(rtype: ResourceType, body: Body) -> None:
    """Fill apiVersion and kind when absent (clients may omit them); refuse them when wrong."""
    for field, expected in (("apiVersion", rtype.api_version), ("kind", rtype.kind)):
        if body.setdefault(field, expected) != expected:
            raise api_error(
                400,
                "BadRequest",
                f"the {field} in the data ({body[field]}) does not match the expected {field} ({expected})",
            )


def _spec_of(obj: Body, rtype: ResourceType) -> Body:
    """Whatever bumps generation when it changes: all but metadata (and status, if a subresource)."""
    skip = {"metadata", "status"} if rtype.status_subresource else {"metadata"}
    return {key: value for key, value in obj.items() if key not in skip}


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, null deletes, everything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------
# The emulator on a loopback port, and the verbs of a kubectl user.

USER_AGENT = "kubectl/emulated"  # the verbs' User-Agent, to tell their writes from the operator's


class KubeApiError(Exception):
    """A request the API server refused; `reason` is the Status reason (NotFound, Conflict, Invalid...)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body: Body = body if isinstance(body, dict) else {}
        self.reason: str = self.body.get("reason", "")
        self.message: str = self.body.get("message", str(body))
        super().__init__(f"{status} {self.reason}: {self.message}")

    @property
    def causes(self) -> list[Body]:
        return list(self.body.get("details", {}).get("causes", []))


class EmulatedCluster:
    """The strict emulator serving on loopback with the project's CRDs, and kubectl's verbs over HTTP.

    ``async with EmulatedCluster() as cluster:`` then point kopf at it with
    ``kopf.operator(..., vault=cluster.vault())`` or anything else at ``cluster.url``.
    """

    def __init__(
        self,
        crds: Iterable[Mapping[str, Any]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        # strict: an emulator crash (not a 4xx it meant to send) fails the block it runs in.
        self.emulator = StrictKubernetesEmulator(strict=True)
        for crd in load_crds() if crds is None else crds:
            self.emulator.register_crd(crd)
        self._server = kmock.Server(self.emulator, host=host, port=port, user_agent=USER_AGENT)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        await self._stack.enter_async_context(self.emulator)
        await self._stack.enter_async_context(self._server)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def url(self) -> str:
        return str(self._server.url).rstrip("/")

    def connection_info(self) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=self.url, default_namespace="default")

    def vault(self) -> Vault:
        """Credentials for one `kopf.operator()` run (kopf closes the vault when the run ends)."""
        return Vault({"emulated-cluster": self.connection_info()})

    def violations(self) -> list[str]:
        """What a real API server would have silently dropped or refused as invalid from anyone but
        these verbs (a failed JSON-patch `test` is not invalid: kopf retries on it). Tests assert
        it is empty."""
        refused = [
            f"{w.verb} {w.plural}{'/' + w.subresource if w.subresource else ''} {w.namespace}/{w.name}: {cause}"
            for w in self.emulator.write_log
            if not w.user_agent.startswith(USER_AGENT)
            for cause in w.refused
        ]
        return [f"pruned {field}" for field in self.emulator.pruned] + refused

    @contextlib.asynccontextmanager
    async def operator(
        self,
        *,
        registry: kopf.OperatorRegistry,
        settings: kopf.OperatorSettings | None = None,
        namespaces: Collection[str] = (),
        standalone: bool = True,
        **kwargs: Any,
    ) -> AsyncIterator[asyncio.Task[None]]:
        """Run `kopf.operator()` against this cluster in a task of the caller's loop, for the block.

        Cluster-wide unless `namespaces` are given; other keyword arguments (memo, indexers,
        peering_name...) go to `kopf.operator()`. Enters once kopf is ready; an operator that dies
        before that raises here. Leaving stops it gracefully.
        """
        ready, stop = asyncio.Event(), asyncio.Event()
        operator = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=settings if settings is not None else kopf.OperatorSettings(),
                vault=self.vault(),
                standalone=standalone,
                clusterwide=not namespaces,
                namespaces=namespaces,
                ready_flag=ready,
                stop_flag=stop,
                **kwargs,
            ),
            name="kopf operator on the emulated cluster",
        )
        readiness = asyncio.create_task(ready.wait())
        try:
            await asyncio.wait([operator, readiness], return_when=asyncio.FIRST_COMPLETED)
            if operator.done():
                await operator  # raises why it stopped, if it did raise
                raise RuntimeError("the operator stopped before it was ready")
            yield operator
        finally:
            readiness.cancel()
            stop.set()
            await operator

    async def create(self, manifest: Mapping[str, Any], *, namespace: str = "default") -> Body:
        rtype = self.emulator.lookup(manifest["apiVersion"], manifest["kind"])
        namespace = (manifest.get("metadata") or {}).get("namespace") or namespace
        return await self._request("POST", rtype.path(namespace), json=manifest)

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Body:
        return await self._request("GET", self.emulator.resolve(resource).path(namespace, name))

    async def list(self, resource: str, *, namespace: str | None = None, labels: str | None = None) -> list[Body]:
        params = {"labelSelector": labels} if labels else {}
        listing = await self._request("GET", self.emulator.resolve(resource).path(namespace), params=params)
        return list(listing["items"])

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Mapping[str, Any] | list[Mapping[str, Any]],
        *,
        namespace: str = "default",
        subresource: str | None = None,
    ) -> Body:
        """A JSON merge patch (a dict) or a JSON patch (a list of operations)."""
        content_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        path = self.emulator.resolve(resource).path(namespace, name, subresource)
        return await self._request("PATCH", path, data=json.dumps(patch), headers={"Content-Type": content_type})

    async def replace(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> Body:
        """PUT the whole object; its metadata.resourceVersion is the precondition."""
        rtype = self.emulator.lookup(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return await self._request("PUT", rtype.path(meta.get("namespace"), meta["name"], subresource), json=obj)

    async def delete(self, resource: str, name: str, *, namespace: str = "default") -> Body:
        return await self._request("DELETE", self.emulator.resolve(resource).path(namespace, name))

    async def wait_for(
        self,
        resource: str,
        name: str,
        predicate: Callable[[Body | None], bool],
        *,
        namespace: str = "default",
    ) -> Body | None:
        """The object once `predicate` holds for it (None: absent), woken by writes, not polling.

        It waits as long as it takes: bound it with `asyncio.timeout()`.
        """
        while not predicate(obj := self.emulator.read(resource, name, namespace)):
            await self.emulator.next_change()
        return obj

    async def _request(self, method: str, path: str, **kwargs: Any) -> Body:
        async with self._server.client.request(method, path, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise KubeApiError(response.status, body)
            return dict(body)
