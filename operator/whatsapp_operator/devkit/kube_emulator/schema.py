"""Structural schemas as the API server applies them (pruning, defaulting, validation), object
metadata checks, and the Status bodies of refusals."""


from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import datetime
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import kmock

Body = dict[str, Any]
ObjectKey = tuple[kmock.resource, str | None, str]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply

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
NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(/(?P<name>[^/]+)(/(?P<subresource>status))?)?/?")
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's: no vowels, no look-alikes
_ANNOTATIONS_LIMIT = 256 * 1024



def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Errors, as the API server reports them: a Status body whose reason clients switch on.


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def status_body(error: kmock.KubernetesError) -> Body:
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


def go(value: Any) -> str:
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
        supported = ", ".join(go(option) for option in limit)
        return [
            Cause(field, "FieldValueNotSupported", f"Unsupported value: {go(value)}: supported values: {supported}")
        ]
    if keyword in ("type", "format"):
        actual = _JSON_TYPES.get(type(value), type(value).__name__) if keyword == "type" else value
        expected = "/".join(limit) if isinstance(limit, list) else limit
        return [
            Cause(
                field,
                "FieldValueTypeInvalid",
                f"Invalid value: {go(actual)}: {field} in body must be of type {expected}: {go(actual)}",
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
                yield Cause(_join(path, index), "FieldValueDuplicate", f"Duplicate value: {go(identity)}")
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
    return Cause(field, "FieldValueInvalid", f"Invalid value: {go(value)}: {why}")


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


def metadata_causes(meta: Mapping[str, Any], *, dns_label: bool) -> list[Cause]:
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
                causes.append(Cause(field, "FieldValueTypeInvalid", f"Invalid value: {go(value)}: must be a string"))
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


def fold_string_data(secret: Body) -> list[Cause]:
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


