"""The resource types the emulator serves, and its records of writes and pruned fields."""


from __future__ import annotations

import dataclasses
from typing import Any

import kmock

from whatsapp_operator.devkit.kube_emulator.printing import (
    AGE,
    CONFIGMAP_COLUMNS,
    EVENT_COLUMNS,
    NAME,
    NAMESPACE_COLUMNS,
    SECRET_COLUMNS,
    Column,
)
from whatsapp_operator.devkit.kube_emulator.schema import Body, Schema


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
    columns: tuple[Column, ...] = (NAME, AGE)  # as the API server prints the resource

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
    "",
    "v1",
    "namespaces",
    "Namespace",
    namespaced=False,
    shortnames=("ns",),
    status_subresource=True,
    columns=NAMESPACE_COLUMNS,
)
SECRETS = _builtin("", "v1", "secrets", "Secret", namespaced=True, columns=SECRET_COLUMNS)
BUILTINS = (
    CRDS,
    NAMESPACES,
    SECRETS,
    _builtin("", "v1", "configmaps", "ConfigMap", namespaced=True, shortnames=("cm",), columns=CONFIGMAP_COLUMNS),
    _builtin("", "v1", "events", "Event", namespaced=True, shortnames=("ev",), columns=EVENT_COLUMNS),
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
    user_agent: str = ""

    def __str__(self) -> str:
        return f"{self.plural} {self.namespace}/{self.name}: {self.field}"


@dataclasses.dataclass(frozen=True)
class Change:
    rv: int
    type: str
    obj: Body


WRITE_VERBS = {
    kmock.method.POST: "create",
    kmock.method.PUT: "update",
    kmock.method.PATCH: "patch",
    kmock.method.DELETE: "delete",
}
