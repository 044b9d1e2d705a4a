"""The resource types the emulator serves, and its records of writes and pruned fields."""


from __future__ import annotations

import dataclasses
from typing import Any

import kmock

from whatsapp_operator.devkit.kube_emulator.schema import Body, Schema


@dataclasses.dataclass(frozen=True)
class Column:
    """One printer column (a CRD's additionalPrinterColumns entry, or a built-in printer's)."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0  # above 0: shown by `kubectl get -o wide` only
    description: str = ""
    format: str = ""

    @classmethod
    def from_crd(cls, column: dict[str, Any]) -> Column:
        return cls(
            name=column["name"],
            json_path=column["jsonPath"],
            type=column["type"],
            priority=column.get("priority", 0),
            description=column.get("description", ""),
            format=column.get("format", ""),
        )


NAME = Column(
    "Name",
    ".metadata.name",
    format="name",
    description="Name must be unique within a namespace. More info:"
    " https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
)
AGE = Column("Age", ".metadata.creationTimestamp", "date")


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


# `kubectl get events`: what the API server's own printer shows first (core v1 field names).
EVENT_COLUMNS = (
    Column("Last Seen", ".lastTimestamp", "date"),
    Column("Type", ".type"),
    Column("Reason", ".reason"),
    Column("Object", ".involvedObject.name"),
    Column("Message", ".message"),
    dataclasses.replace(NAME, priority=1),
)
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
    columns=(Column("Status", ".status.phase"), AGE),
)
SECRETS = _builtin("", "v1", "secrets", "Secret", namespaced=True)
BUILTINS = (
    CRDS,
    NAMESPACES,
    SECRETS,
    _builtin("", "v1", "configmaps", "ConfigMap", namespaced=True, shortnames=("cm",)),
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
