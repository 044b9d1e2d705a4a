"""The verbs on objects as the API server's handlers serve them: get, list and watch (as Tables
when kubectl asks), create, patch, replace and delete through the store's write path."""


from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import jsonpatch
import jsonpointer
import kmock

from whatsapp_operator.devkit.kube_emulator.printing import table
from whatsapp_operator.devkit.kube_emulator.request import (
    as_object,
    content_type,
    included,
    json_body,
    tabular,
    write_options,
)
from whatsapp_operator.devkit.kube_emulator.resources import ResourceType
from whatsapp_operator.devkit.kube_emulator.schema import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    Body,
    Cause,
    ObjectKey,
    api_error,
)
from whatsapp_operator.devkit.kube_emulator.selectors import field_selector, label_selector
from whatsapp_operator.devkit.kube_emulator.store import ObjectStore, check_preconditions, invalid


class Handlers:
    """One method per verb on the objects of the served resource types (`types`, by kmock's reference)."""

    def __init__(self, types: dict[kmock.resource, ResourceType], store: ObjectStore) -> None:
        self._types = types
        self._store = store

    # -- reading ---------------------------------------------------------------------------------

    async def fetch(self, request: kmock.Request) -> Body:
        rtype, _, obj = self._target(request)
        if tabular(request):
            metadata = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            return table(rtype.columns, [obj], metadata, included(request))
        return obj

    async def list(self, request: kmock.Request) -> Body:
        rtype = self._type_of(request)
        matches = self._filter(request, rtype)
        items = sorted(
            self._store.current_objects(rtype),
            key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
        )
        items = [obj for obj in items if matches(obj)]
        metadata: Body = {"resourceVersion": str(self._store.resource_version)}
        if request.params.get("continue"):
            after = json.loads(base64.urlsafe_b64decode(request.params["continue"]))
            items = [obj for obj in items if [obj["metadata"].get("namespace", ""), obj["metadata"]["name"]] > after]
        limit = int(request.params.get("limit") or 0)
        if limit and len(items) > limit:
            items = items[:limit]
            last = [items[-1]["metadata"].get("namespace", ""), items[-1]["metadata"]["name"]]
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(last).encode()).decode()
        if tabular(request):
            return table(rtype.columns, items, metadata, included(request))
        return {"apiVersion": rtype.api_version, "kind": f"{rtype.kind}List", "metadata": metadata, "items": items}

    async def watch(self, request: kmock.Request) -> AsyncIterator[Body | bytes]:
        rtype = self._type_of(request)
        matches = self._filter(request, rtype)
        since = request.params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise api_error(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        lifetime = request.params.get("timeoutSeconds")
        deadline = asyncio.get_running_loop().time() + float(lifetime) if lifetime else None
        initial = request.params.get("sendInitialEvents") == "true"
        events = self._store.changes(rtype, matches, int(since), initial=initial, deadline=deadline)
        return _tabulated(rtype, events, included(request)) if tabular(request) else events

    # -- writing ---------------------------------------------------------------------------------

    async def create(self, request: kmock.Request) -> Body:
        rtype = self._type_of(request, writing=True)
        options = write_options(request, "CreateOptions")
        body = as_object(json_body(request))
        namespace = self._scope(rtype, request.namespace)
        meta = body.setdefault("metadata", {})
        if rtype.namespaced and meta.setdefault("namespace", namespace) != namespace:
            raise api_error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        return self._store.create(rtype, namespace, body, options)

    async def patch(self, request: kmock.Request) -> Body:
        rtype = self._type_of(request, writing=True)
        options = write_options(request, "PatchOptions")
        patch_type = content_type(request)
        if patch_type == APPLY_PATCH:
            # Refused before the object is looked up: a NotFound would send `kubectl apply
            # --server-side` of a new object looking for the wrong cause.
            raise api_error(
                415,
                "UnsupportedMediaType",
                f"server-side apply ({APPLY_PATCH}) is not served by the emulated API server:"
                " use client-side kubectl apply (without --server-side)",
            )
        _, key, old = self._target(request, writing=True)
        if patch_type == JSON_PATCH and isinstance(request.data, list):
            try:
                new = as_object(jsonpatch.apply_patch(old, request.data))
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise api_error(
                    422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
                ) from e
        elif patch_type == MERGE_PATCH or (patch_type == STRATEGIC_MERGE_PATCH and not rtype.custom):
            patch = as_object(request.data)
            check_preconditions(rtype, old, patch.get("metadata") or {})
            new = _merge_patch(old, patch)
        else:
            # What a real API server accepts (server-side apply included): custom resources take no
            # strategic merge patch.
            accepted = (JSON_PATCH, MERGE_PATCH) if rtype.custom else (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)
            raise api_error(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join((*accepted, APPLY_PATCH)),
            )
        return self._store.update(rtype, key, old, new, request.subresource, options)

    async def replace(self, request: kmock.Request) -> Body:
        if request.name is None:
            raise api_error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        rtype, key, old = self._target(request, writing=True)
        options = write_options(request, "UpdateOptions")
        new = as_object(json_body(request))
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
            raise invalid(rtype, request.name, [cause])
        check_preconditions(rtype, old, meta)
        return self._store.update(rtype, key, old, new, request.subresource, options)

    async def delete(self, request: kmock.Request) -> Body:
        rtype, key, old = self._target(request, writing=True)
        options = write_options(request, "DeleteOptions")
        body = request.data if isinstance(request.data, dict) else {}
        check_preconditions(rtype, old, body.get("preconditions") or {})
        return self._store.delete(rtype, key, old, options)

    # -- what a request is about -----------------------------------------------------------------

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
        obj = self._store.current(key)
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

    def _filter(self, request: kmock.Request, rtype: ResourceType) -> Callable[[Body], bool]:
        namespace, name = request.namespace, request.name
        labels = label_selector(request.params.get("labelSelector", ""))
        fields = field_selector(request.params.get("fieldSelector", ""))
        return lambda obj: (
            (namespace is None or obj["metadata"].get("namespace") == namespace)
            and (name is None or obj["metadata"]["name"] == name)
            and labels(obj["metadata"].get("labels") or {})
            and fields(obj)
        )


async def _tabulated(
    rtype: ResourceType, events: AsyncIterator[Body | bytes], include: str | None
) -> AsyncIterator[Body | bytes]:
    """A watch as `kubectl get -w` asks for it: each object as a one-row Table."""
    async for event in events:
        if isinstance(event, dict) and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            obj = event["object"]
            meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            event = {"type": event["type"], "object": table(rtype.columns, [obj], meta, include)}
        yield event


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
