"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for and prints as is.

The API server evaluates each printer column's JSONPath on the object and types the cell: `date`
cells are already ages ("5m", "3h10m"), `integer` and `number` cells numbers, `string` cells text.
A column whose path finds nothing is a null cell, which kubectl prints as `<none>`.
"""


from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

from whatsapp_operator.devkit.kube_emulator.resources import Column, ResourceType
from whatsapp_operator.devkit.kube_emulator.schema import Body
from whatsapp_operator.devkit.kube_emulator.selectors import jsonpath

TABLE_MEDIA = "as=Table"  # in kubectl's Accept: application/json;as=Table;v=v1;g=meta.k8s.io


def wants_table(accept: str) -> bool:
    """Whether a client prefers a Table (it lists one first, with plain JSON as a fallback)."""
    first = accept.split(",")[0]
    return TABLE_MEDIA in first.replace(" ", "") and "g=meta.k8s.io" in first.replace(" ", "")


def table(rtype: ResourceType, objects: Iterable[Body], metadata: Body, include: str | None) -> Body:
    """The Table for these objects; `include` is the request's includeObject (None, Metadata, Object)."""
    now = datetime.datetime.now(datetime.UTC)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [_definition(column) for column in rtype.columns],
        "rows": [_row(rtype, obj, include, now) for obj in objects],
    }


def _definition(column: Column) -> Body:
    return {
        "name": column.name,
        "type": column.type,
        "format": column.format,
        "description": column.description,
        "priority": column.priority,
    }


def _row(rtype: ResourceType, obj: Body, include: str | None, now: datetime.datetime) -> Body:
    row: Body = {"cells": [_cell(column, obj, now) for column in rtype.columns]}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return row


def _cell(column: Column, obj: Body, now: datetime.datetime) -> Any:
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
