"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for and prints as is.

The API server evaluates each printer column's JSONPath on the object and types the cell: `date`
cells are already ages ("5m", "3h10m"), `integer` and `number` cells numbers, `string` cells text.
A column whose path finds nothing is a null cell, which kubectl prints blank. Built-in kinds have
printers written in Go instead (pkg/printers/internalversion): their cells are computed, not found
by a path, so a built-in column here may compute its cell (`Column.compute`) the same way.
"""


from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from whatsapp_operator.devkit.kube_emulator.schema import Body
from whatsapp_operator.devkit.kube_emulator.selectors import jsonpath

TABLE_MEDIA = "as=Table"  # in kubectl's Accept: application/json;as=Table;v=v1;g=meta.k8s.io

Cell = str | int | float | bool | None
# A built-in printer's cell from the object and the time it is printed at (ages are computed then).
Compute = Callable[[Body, datetime.datetime], Cell]


@dataclasses.dataclass(frozen=True)
class Column:
    """One printer column (a CRD's additionalPrinterColumns entry, or a built-in printer's)."""

    name: str
    json_path: str  # ignored when `compute` is given
    type: str = "string"
    priority: int = 0  # above 0: shown by `kubectl get -o wide` only
    description: str = ""
    format: str = ""
    compute: Compute | None = None  # built-in printers only: the cell as the Go printer makes it

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


def wants_table(accept: str) -> bool:
    """Whether a client prefers a Table (it lists one first, with plain JSON as a fallback)."""
    first = accept.split(",")[0]
    return TABLE_MEDIA in first.replace(" ", "") and "g=meta.k8s.io" in first.replace(" ", "")


def table(columns: Sequence[Column], objects: Iterable[Body], metadata: Body, include: str | None) -> Body:
    """The Table for these objects; `include` is the request's includeObject (None, Metadata, Object)."""
    now = datetime.datetime.now(datetime.UTC)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [_definition(column) for column in columns],
        "rows": [_row(columns, obj, include, now) for obj in objects],
    }


def _definition(column: Column) -> Body:
    return {
        "name": column.name,
        "type": column.type,
        "format": column.format,
        "description": column.description,
        "priority": column.priority,
    }


def _row(columns: Sequence[Column], obj: Body, include: str | None, now: datetime.datetime) -> Body:
    row: Body = {"cells": [_cell(column, obj, now) for column in columns]}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return row


def _cell(column: Column, obj: Body, now: datetime.datetime) -> Cell:
    if column.compute is not None:
        return column.compute(obj, now)
    found = jsonpath(obj, column.json_path)
    if not found:
        return None
    value = found[0] if len(found) == 1 else found
    if column.type == "date":
        return _age(value, now)
    if column.type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column.type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if column.type == "boolean" and isinstance(value, bool):
        return value
    if column.type in ("integer", "number", "boolean"):
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _age(value: Any, now: datetime.datetime) -> str:
    try:
        then = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    return human_duration(now - then)


def human_duration(elapsed: datetime.timedelta) -> str:
    """An age as the API server writes it (apimachinery's HumanDuration): 45s, 5m3s, 3h10m, 2d4h."""
    seconds = int(elapsed.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


# ---------------------------------------------------------------------------------------------
# The API server's own printers for the built-in kinds served (pkg/printers/internalversion): it
# always sends every column, priority-1 ones too (kubectl hides those without `-o wide`).


def _since(timestamp: Any, now: datetime.datetime) -> str:
    """translateTimestampSince: an age, `<unknown>` for a zero (absent) time."""
    return _age(timestamp, now) if timestamp else "<unknown>"


def _keys(obj: Body, *fields: str) -> int:
    return sum(len(obj.get(field) or {}) for field in fields)


def _event_first_seen(event: Body, now: datetime.datetime) -> str:
    return _since(event.get("firstTimestamp") or event.get("eventTime"), now)


def _event_last_seen(event: Body, now: datetime.datetime) -> str:
    if series := event.get("series"):
        return _since(series.get("lastObservedTime"), now)
    last = event.get("lastTimestamp")
    return _since(last, now) if last else _event_first_seen(event, now)


def _event_object(event: Body, _: datetime.datetime) -> str:
    about = event.get("involvedObject") or {}
    kind = str(about.get("kind", "")).lower()
    return f"{kind}/{about['name']}" if about.get("name") else kind


def _event_source(event: Body, _: datetime.datetime) -> str:
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {instance}" if component and instance else component


def _event_count(event: Body, _: datetime.datetime) -> int:
    if series := event.get("series"):
        return int(series.get("count", 0))
    return int(event.get("count") or 1)  # a singleton event of the newer API has no count


def _computed(name: str, compute: Compute, *, priority: int = 0, format: str = "") -> Column:
    return Column(name, "", priority=priority, format=format, compute=compute)


NAMESPACE_COLUMNS = (NAME, Column("Status", ".status.phase"), AGE)
SECRET_COLUMNS = (
    NAME,
    Column("Type", ".type"),
    _computed("Data", lambda secret, _: _keys(secret, "data")),
    AGE,
)
CONFIGMAP_COLUMNS = (NAME, _computed("Data", lambda configmap, _: _keys(configmap, "data", "binaryData")), AGE)
EVENT_COLUMNS = (
    _computed("Last Seen", _event_last_seen),
    Column("Type", ".type"),
    Column("Reason", ".reason"),
    _computed("Object", _event_object),
    Column("Subobject", ".involvedObject.fieldPath", priority=1),
    _computed("Source", _event_source, priority=1),
    _computed("Message", lambda event, _: str(event.get("message", "")).strip()),
    _computed("First Seen", _event_first_seen, priority=1),
    _computed("Count", _event_count, priority=1),
    dataclasses.replace(NAME, priority=1),
)
