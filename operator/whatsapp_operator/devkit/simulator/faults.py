"""Injected API faults: outages, 5xx answers, hanging requests and latency, each active in a time window."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("outage", "errors", "timeouts", "latency", "liveness")
OUTAGE_MODES = ("refuse", "503")
LIVENESS_MODES = ("closed", "hang")  # every instance's socket dead ("Connection Closed"), or silent
LIVENESS_PATH = "/baileys/onWhatsapp"

# Parameters each kind accepts (besides the window); anything else is a typo worth reporting.
_PARAMS: dict[str, frozenset[str]] = {
    "outage": frozenset({"mode"}),
    "errors": frozenset({"rate", "status", "path"}),
    "timeouts": frozenset({"rate", "path"}),
    "latency": frozenset({"ms", "jitter_ms", "path"}),
    "liveness": frozenset({"mode", "rate"}),
}

_ids = itertools.count(1)


@dataclass(slots=True)
class Fault:
    """A fault active from `start` until `end` (event-loop times; `end` None = until cleared)."""

    kind: str
    start: float
    end: float | None
    mode: str = "refuse"
    rate: float = 1.0
    status: int = 500
    ms: float = 0.0
    jitter_ms: float = 0.0
    path: str | None = None  # only requests whose path starts with this
    id: int = field(default_factory=lambda: next(_ids))

    def active(self, now: float) -> bool:
        return self.start <= now and (self.end is None or now < self.end)

    def applies(self, now: float, path: str) -> bool:
        return self.active(now) and (self.path is None or path.startswith(self.path))

    def to_dict(self, origin: float) -> dict[str, Any]:
        """Times relative to the simulator's start, like in scenario files."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "from": self.start - origin,
            "to": None if self.end is None else self.end - origin,
        }
        data.update(
            {
                "outage": {"mode": self.mode},
                "errors": {"rate": self.rate, "status": self.status, "path": self.path},
                "timeouts": {"rate": self.rate, "path": self.path},
                "latency": {"ms": self.ms, "jitter_ms": self.jitter_ms, "path": self.path},
                "liveness": {"mode": self.mode, "rate": self.rate},
            }[self.kind]
        )
        return data


def make_fault(kind: str, start: float, end: float | None, params: Mapping[str, Any]) -> Fault:
    """Build a fault from scenario or admin parameters, with errors that name the offending field."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r} (expected one of {', '.join(FAULT_KINDS)})")
    unknown = set(params) - _PARAMS[kind]
    if unknown:
        raise ValueError(f"{kind} fault does not take {', '.join(sorted(unknown))}")
    if end is not None and end <= start:
        raise ValueError("a fault must end after it starts")
    fault = Fault(kind, start, end)
    if kind == "liveness":  # the whole fleet's sockets at once (a WhatsApp Web change): onWhatsapp only
        fault.mode, fault.path = "closed", LIVENESS_PATH
    if "mode" in params:
        fault.mode = str(params["mode"])
        modes = LIVENESS_MODES if kind == "liveness" else OUTAGE_MODES
        if fault.mode not in modes:
            raise ValueError(f"{kind} mode must be one of {', '.join(modes)}, not {fault.mode!r}")
    if "rate" in params:
        fault.rate = _number(params, "rate")
        if not 0 <= fault.rate <= 1:
            raise ValueError("rate must be between 0 and 1")
    if "status" in params:
        status = params["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
            raise ValueError(f"status must be a 5xx code, not {status!r}")
        fault.status = status
    if kind == "latency":
        if "ms" not in params:
            raise ValueError("latency fault needs ms")
        fault.ms = _number(params, "ms")
        fault.jitter_ms = _number(params, "jitter_ms") if "jitter_ms" in params else 0.0
        if fault.ms < 0 or fault.jitter_ms < 0:
            raise ValueError("ms and jitter_ms must not be negative")
    if "path" in params:
        path = params["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must be a URL path starting with /, not {path!r}")
        fault.path = path
    return fault


def _number(params: Mapping[str, Any], key: str) -> float:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, not {value!r}")
    return float(value)
