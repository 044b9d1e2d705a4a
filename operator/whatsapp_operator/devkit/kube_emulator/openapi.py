"""The OpenAPI v3 documents kubectl reads before it writes: `/openapi/v3` and one per group version.

kubectl (1.27 and later) validates a manifest on the server when the document says the resource's
PATCH takes the `fieldValidation` query parameter: it then sends `fieldValidation=Strict` and
reports the server's refusal. So each path lists the parameters and patch media types the emulator
serves, with `x-kubernetes-group-version-kind` naming its kind, and each custom kind's schema is its
CRD's, as the API server publishes it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable

from whatsapp_operator.devkit.kube_emulator.resources import ResourceType
from whatsapp_operator.devkit.kube_emulator.schema import JSON_PATCH, MERGE_PATCH, Body

# The Kubernetes release the emulator answers as (`/version` and these documents' info): the one
# the project targets, so that kubectl 1.32 prints no version-skew warning.
KUBERNETES_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T17:59:15Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# No strategic merge patch listed, for any kind: kubectl then builds a custom resource's patch as a JSON
# merge patch, and a built-in kind's from its own types, without needing their full schemas here.
PATCHES = (JSON_PATCH, MERGE_PATCH)
_QUERY = {
    "fieldValidation": "Strict: unknown fields are an error; Warn (the default): they are dropped, with a"
    " Warning header each; Ignore: they are dropped.",
    "fieldManager": "The actor making the change (kubectl sends its own).",
    "pretty": "Accepted and ignored.",
}


def documents(types: Iterable[ResourceType]) -> dict[str, Body]:
    """Each group version's document, by its key in `/openapi/v3` (`apis/group/version`, `api/v1`)."""
    grouped: dict[str, list[ResourceType]] = {}
    for rtype in types:
        grouped.setdefault(f"apis/{rtype.group}/{rtype.version}" if rtype.group else f"api/{rtype.version}", []).append(
            rtype
        )
    return {key: group_version(members) for key, members in sorted(grouped.items())}


def root(docs: dict[str, Body]) -> Body:
    """The discovery document: where each group version's document is, with the hash clients cache it by."""
    return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={_hash(doc)}"} for key, doc in docs.items()}}


def _hash(document: Body) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def group_version(types: Iterable[ResourceType]) -> Body:
    """The OpenAPI 3.0 document of one group version's resources."""
    paths: Body = {}
    schemas: Body = {}
    for rtype in types:
        gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
        ref = {"$ref": f"#/components/schemas/{_schema_name(rtype)}"}
        schemas[_schema_name(rtype)] = _kind_schema(rtype) | {"x-kubernetes-group-version-kind": [gvk]}
        item = {
            "get": _operation(rtype, "get", ref),
            "put": _operation(rtype, "put", ref, body={"application/json": {"schema": ref}}),
            "patch": _operation(rtype, "patch", ref, body={media: {"schema": {"type": "object"}} for media in PATCHES}),
            "delete": _operation(rtype, "delete", ref),
            "parameters": _parameters("name", "namespace" if rtype.namespaced else None),
        }
        collection = {
            "get": _operation(rtype, "list", {"type": "object"}),
            "post": _operation(rtype, "post", ref, body={"application/json": {"schema": ref}}),
            "parameters": _parameters("namespace" if rtype.namespaced else None),
        }
        template = rtype.path("{namespace}" if rtype.namespaced else None)
        paths[template] = collection
        paths[f"{template}/{{name}}"] = item
        if rtype.status_subresource:
            paths[f"{template}/{{name}}/status"] = {key: value for key, value in item.items() if key != "delete"}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _operation(rtype: ResourceType, action: str, schema: Body, *, body: Body | None = None) -> Body:
    operation: Body = {
        "operationId": f"{action}{rtype.kind}",
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
    }
    if body is not None:
        operation["requestBody"] = {"content": body, "required": True}
        operation["parameters"] = [
            {"name": name, "in": "query", "description": text, "schema": {"type": "string", "uniqueItems": True}}
            for name, text in _QUERY.items()
        ]
    return operation


def _parameters(*names: str | None) -> list[Body]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}
        for name in names
        if name is not None
    ]


def _schema_name(rtype: ResourceType) -> str:
    group = ".".join(reversed(rtype.group.split("."))) if rtype.group else "io.k8s.api.core"
    return f"{group}.{rtype.version}.{rtype.kind}"


def _kind_schema(rtype: ResourceType) -> Body:
    if rtype.schema is None:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return copy.deepcopy(dict(rtype.schema.root))
