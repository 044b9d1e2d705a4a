"""Scenario files: a fleet that exists before anyone arrives, what happens to it, and when the server misbehaves.

Everything is validated up front so that a typo fails the load with its location, not a demo halfway through.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from whatsapp_operator.devkit.simulator.faults import make_fault
from whatsapp_operator.devkit.simulator.instance import STARTS, validate_action

_INSTANCE_KEYS = frozenset({"name", "start", "events", "token", "number", "webhook"})
_GROUP_KEYS = frozenset({"prefix", "count", "start", "events", "webhook"})
_WEBHOOK_KEYS = frozenset({"url", "events", "headers", "byEvents", "base64"})


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message says where and why."""


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    at: float  # seconds after the simulator's start
    action: str
    reason: int | None = None
    heals: bool | None = None  # zombie: whether a restart heals it (None: yes)


@dataclass(frozen=True, slots=True)
class ScenarioInstance:
    """An instance that already exists on the server when the simulator starts."""

    name: str
    start: str = "close"
    events: tuple[ScenarioEvent, ...] = ()
    token: str | None = None
    number: str | None = None
    webhook: Mapping[str, Any] | None = None  # Evolution's inline form: {url, events, headers, byEvents, base64}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: str
    start: float
    end: float | None
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    instances: tuple[ScenarioInstance, ...] = ()
    faults: tuple[FaultSpec, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a YAML or JSON scenario file."""
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ScenarioError(f"{path}: {exc}") from exc
        try:
            return cls.from_dict(data or {})
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        if not isinstance(data, Mapping):
            raise ScenarioError("a scenario must be a mapping with instances, groups and faults")
        _no_unknown_keys(data, frozenset({"instances", "groups", "faults"}), "scenario")
        instances = [_instance(item, f"instances[{i}]") for i, item in enumerate(_list(data, "instances", "scenario"))]
        for i, item in enumerate(_list(data, "groups", "scenario")):
            instances.extend(_group(item, f"groups[{i}]"))
        seen: set[str] = set()
        for spec in instances:
            if spec.name in seen:
                raise ScenarioError(f"instance name {spec.name!r} is used twice")
            seen.add(spec.name)
        faults = tuple(_fault(item, f"faults[{i}]") for i, item in enumerate(_list(data, "faults", "scenario")))
        return cls(tuple(instances), faults)


def _instance(item: Any, where: str) -> ScenarioInstance:
    _mapping(item, where)
    _no_unknown_keys(item, _INSTANCE_KEYS, where)
    name = item.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ScenarioError(f"{where}.name: a non-empty name without '/' is required")
    return ScenarioInstance(
        name=name,
        start=_start(item, where),
        events=_events(item, where),
        token=_optional_str(item, "token", where),
        number=_optional_str(item, "number", where),
        webhook=_webhook(item, where),
    )


def _group(item: Any, where: str) -> list[ScenarioInstance]:
    """`{prefix: bulk, count: 3}` -> bulk-00001, bulk-00002, bulk-00003, all alike."""
    _mapping(item, where)
    _no_unknown_keys(item, _GROUP_KEYS, where)
    prefix, count = item.get("prefix"), item.get("count")
    if not isinstance(prefix, str) or not prefix or "/" in prefix:
        raise ScenarioError(f"{where}.prefix: a non-empty prefix without '/' is required")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ScenarioError(f"{where}.count: a positive integer is required")
    start, events, webhook = _start(item, where), _events(item, where), _webhook(item, where)
    return [ScenarioInstance(f"{prefix}-{n:05d}", start, events, webhook=webhook) for n in range(1, count + 1)]


def _fault(item: Any, where: str) -> FaultSpec:
    _mapping(item, where)
    params = {key: value for key, value in item.items() if key not in ("from", "to", "kind")}
    start = _seconds(item.get("from", 0), f"{where}.from")
    end = None if item.get("to") is None else _seconds(item["to"], f"{where}.to")
    try:
        make_fault(str(item.get("kind")), start, end, params)
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from exc
    return FaultSpec(str(item["kind"]), start, end, params)


def _start(item: Mapping[str, Any], where: str) -> str:
    start = item.get("start", "close")
    if start not in STARTS:
        raise ScenarioError(f"{where}.start: {start!r} is not one of {', '.join(STARTS)}")
    return str(start)


def _events(item: Mapping[str, Any], where: str) -> tuple[ScenarioEvent, ...]:
    events = []
    for i, event in enumerate(_list(item, "events", where)):
        at = f"{where}.events[{i}]"
        _mapping(event, at)
        _no_unknown_keys(event, frozenset({"at", "action", "reason", "heals"}), at)
        heals = event.get("heals")
        try:
            reason = validate_action(str(event.get("action")), event.get("reason"), heals)
        except ValueError as exc:
            raise ScenarioError(f"{at}: {exc}") from exc
        events.append(ScenarioEvent(_seconds(event.get("at"), f"{at}.at"), str(event["action"]), reason, heals))
    return tuple(sorted(events, key=lambda event: event.at))


def _webhook(item: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    webhook = item.get("webhook")
    if webhook is None:
        return None
    _mapping(webhook, f"{where}.webhook")
    _no_unknown_keys(webhook, _WEBHOOK_KEYS, f"{where}.webhook")
    if not isinstance(webhook.get("url"), str):
        raise ScenarioError(f"{where}.webhook.url is required")
    if not isinstance(webhook.get("events", []), list):
        raise ScenarioError(f"{where}.webhook.events must be a list of event names ([] = all)")
    if not isinstance(webhook.get("headers", {}), Mapping):
        raise ScenarioError(f"{where}.webhook.headers must be a mapping")
    return webhook


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ScenarioError(f"{where}: a number of seconds (>= 0) is required, not {value!r}")
    return float(value)


def _optional_str(item: Mapping[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise ScenarioError(f"{where}.{key} must be a string (quote numbers in YAML)")
    return value


def _list(item: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = item.get(key) or []
    if not isinstance(value, list):
        raise ScenarioError(f"{where}.{key} must be a list")
    return value


def _mapping(item: Any, where: str) -> None:
    if not isinstance(item, Mapping):
        raise ScenarioError(f"{where} must be a mapping")


def _no_unknown_keys(item: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(item) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
