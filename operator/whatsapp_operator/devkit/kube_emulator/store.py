"""The objects as the API server stores them, and its write path: admission, resourceVersions, and
the change log that watches read."""


from __future__ import annotations

import asyncio
import bisect
import copy
import dataclasses
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import kmock

from whatsapp_operator.devkit.kube_emulator.request import PLAIN_WRITE, WARNINGS, WriteOptions
from whatsapp_operator.devkit.kube_emulator.resources import NAMESPACES, SECRETS, Change, PrunedField, ResourceType
from whatsapp_operator.devkit.kube_emulator.schema import (
    GENERATE_ALPHABET,
    OBJECT_META_FIELDS,
    SYSTEM_METADATA,
    Body,
    Cause,
    ObjectKey,
    api_error,
    fold_string_data,
    go,
    metadata_causes,
    now_rfc3339,
    status_body,
)


class ObjectStore:
    """Every object and its versions under one cluster-wide resourceVersion counter, written only
    through the API server's checks: what a request handler would otherwise get wrong one verb at a time."""

    def __init__(self, watch_window: int) -> None:
        self.watch_window = watch_window  # changes kept per resource for watches resuming from a resourceVersion
        self.objects = kmock.ObjectsArray()  # kmock's array: `objects[resource, namespace, name].history`
        self.pruned: list[PrunedField] = []
        self.resource_version = 0
        self._log: dict[kmock.resource, list[Change]] = {}
        self._forgotten: dict[kmock.resource, int] = {}  # newest resourceVersion dropped from the log
        self._changed = asyncio.Event()

    # -- reading ---------------------------------------------------------------------------------

    def current(self, key: ObjectKey) -> Body | None:
        """The object as stored now (a copy), or None."""
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def current_objects(self, rtype: ResourceType) -> list[Body]:
        return [obj.raw for key, obj in self.objects.items() if key[0] == rtype.ref and not obj.deleted]

    async def next_change(self) -> None:
        await self._changed.wait()

    async def changes(
        self,
        rtype: ResourceType,
        matches: Callable[[Body], bool],
        since: int,
        *,
        initial: bool,
        deadline: float | None,
    ) -> AsyncIterator[Body | bytes]:
        """A watch's events from `since` on (the objects as they are, with 0 or `initial`), until `deadline`."""
        yield b""  # send the headers now: a watch may stay silent for long
        cursor = since
        if since == 0 or initial:
            cursor = self.resource_version
            for obj in self.current_objects(rtype):
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
                yield {"type": "ERROR", "object": status_body(api_error(410, "Expired", message))}
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

    # -- the API server's write path -------------------------------------------------------------

    def create(
        self, rtype: ResourceType, namespace: str | None, body: Body, options: WriteOptions = PLAIN_WRITE
    ) -> Body:
        _check_kind(rtype, body)
        meta = body.setdefault("metadata", {})
        for field in SYSTEM_METADATA:
            meta.pop(field, None)
        if not rtype.namespaced:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                cause = Cause("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")
                raise invalid(rtype, "", [cause])
            meta["name"] = self._generate_name(rtype, namespace, meta["generateName"])
        key = (rtype.ref, namespace, meta["name"])
        if self.current(key) is not None:
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
        obj = self._admit(rtype, body, key, options)
        if namespace is not None and self.current((NAMESPACES.ref, None, namespace)) is None:
            # The NamespaceLifecycle admission plugin: a namespace is created first, explicitly.
            raise api_error(404, "NotFound", f'namespaces "{namespace}" not found', name=namespace, kind="namespaces")
        obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if rtype.custom:
            obj["metadata"]["generation"] = 1
        return self._commit(rtype, key, obj, "ADDED", dry_run=options.dry_run)

    def update(
        self, rtype: ResourceType, key: ObjectKey, old: Body, new: Body, subresource: str | None, options: WriteOptions
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
        obj = self._admit(rtype, new, key, options)
        if obj == old:
            return old  # a no-op write stores nothing and notifies no one, as in etcd
        added = set(obj["metadata"].get("finalizers", [])) - set(old["metadata"].get("finalizers", []))
        if old["metadata"].get("deletionTimestamp") and added:
            cause = Cause(
                "metadata.finalizers",
                "FieldValueForbidden",
                "Forbidden: no new finalizers can be added if the object is being deleted,"
                f" found new finalizers {go(sorted(added))}",
            )
            raise invalid(rtype, key[2], [cause])
        if rtype.custom and _spec_of(obj, rtype) != _spec_of(old, rtype):
            obj["metadata"]["generation"] = old["metadata"]["generation"] + 1
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            return self._remove(rtype, key, obj, dry_run=options.dry_run)
        return self._commit(rtype, key, obj, "MODIFIED", dry_run=options.dry_run)

    def delete(self, rtype: ResourceType, key: ObjectKey, old: Body, options: WriteOptions) -> Body:
        """Remove the object, or with finalizers mark it deleted and leave it to them."""
        if not old["metadata"].get("finalizers"):
            return self._remove(rtype, key, old, dry_run=options.dry_run)
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        new["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
        if rtype.custom:
            new["metadata"]["generation"] += 1
        return self._commit(rtype, key, new, "MODIFIED", dry_run=options.dry_run)

    def _admit(self, rtype: ResourceType, body: Body, key: ObjectKey, options: WriteOptions) -> Body:
        """Prune, default, and validate: what the API server does between decoding and storing.
        `options.strict` (the client sent fieldValidation=Strict): an unknown field is refused, not dropped."""
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        unknown_meta = sorted(set(meta) - OBJECT_META_FIELDS)
        for field in unknown_meta:
            del meta[field]
        pruned = [f"metadata.{field}" for field in unknown_meta]
        causes = metadata_causes(meta, dns_label=rtype is NAMESPACES)
        if rtype.schema is not None:
            pruned += rtype.schema.prune(obj)
        if options.strict and pruned:
            unknown = ", ".join(f"unknown field {json.dumps(field)}" for field in pruned)
            message = f"{rtype.kind} in version {json.dumps(rtype.version)} cannot be handled as a {rtype.kind}"
            raise api_error(400, "BadRequest", f"{message}: strict decoding error: {unknown}")
        if options.warn:
            WARNINGS.get([]).extend(f"unknown field {json.dumps(field)}" for field in pruned)
        if rtype.schema is not None:
            rtype.schema.default(obj)
            causes += rtype.schema.validate(obj)
        if rtype is SECRETS:
            obj.setdefault("type", "Opaque")  # as the API server defaults it
            causes += fold_string_data(obj)
        if causes:
            raise invalid(rtype, key[2], causes)
        if not options.dry_run:  # nothing was lost where nothing is stored
            self.pruned.extend(PrunedField(rtype.plural, key[1], key[2], field, options.user_agent) for field in pruned)
        return obj

    def _commit(self, rtype: ResourceType, key: ObjectKey, obj: Body, change: str, *, dry_run: bool = False) -> Body:
        """Store a write and tell the watches; a dry run answers what would have been stored (with
        the stored resourceVersion, none for a create) and changes nothing."""
        if dry_run:
            return obj
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        if change == "DELETED":
            self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].history.append(obj)
        else:
            self.objects[key] = obj
        log = self._log.setdefault(rtype.ref, [])
        log.append(Change(self.resource_version, change, obj))
        if len(log) > 2 * self.watch_window:  # trim in batches: cheap, and watchers rarely lag
            self._forgotten[rtype.ref] = log[-self.watch_window - 1].rv
            del log[: -self.watch_window]
        self._changed.set()
        self._changed = asyncio.Event()
        return obj

    def _remove(self, rtype: ResourceType, key: ObjectKey, obj: Body, *, dry_run: bool = False) -> Body:
        return self._commit(rtype, key, copy.deepcopy(obj), "DELETED", dry_run=dry_run)

    def _generate_name(self, rtype: ResourceType, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix[:58] + "".join(random.choices(GENERATE_ALPHABET, k=5))
            if self.current((rtype.ref, namespace, name)) is None:
                return name


def check_preconditions(rtype: ResourceType, old: Body, given: Mapping[str, Any]) -> None:
    """A 409 Conflict when the client names a uid or resourceVersion the object no longer has."""
    for field in ("uid", "resourceVersion"):
        if given.get(field) and given[field] != old["metadata"].get(field):
            name = old["metadata"]["name"]
            message = (
                f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has been modified;'
                " please apply your changes to the latest version and try again"
            )
            raise api_error(409, "Conflict", message, name=name, group=rtype.group, kind=rtype.plural)


def invalid(rtype: ResourceType, name: str, causes: list[Cause]) -> kmock.KubernetesError:
    """The API server's 422 Invalid, naming each field in its message and its details."""
    listed = str(causes[0]) if len(causes) == 1 else f"[{', '.join(map(str, causes))}]"
    kind = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
    details = {
        "name": name,
        "group": rtype.group,
        "kind": rtype.kind,
        "causes": [dataclasses.asdict(c) for c in causes],
    }
    return api_error(422, "Invalid", f'{kind} "{name}" is invalid: {listed}', **details)


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
