"""The round trip between the state machine's `InstanceState` and a WhatsAppInstance's `.status`.

`status_patch()` is what keeps steady-state probing free of writes: it yields only the keys that
differ, and nothing at all when nothing changed.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from whatsapp_operator.core.machine import Condition, InstanceState
from whatsapp_operator.core.phases import Phase


def rfc3339(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def to_condition(c: Condition) -> dict[str, Any]:
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": rfc3339(c.last_transition_time),
    }


def to_status(state: InstanceState, extra: tuple[Condition, ...] = ()) -> dict[str, Any]:
    """`extra` carries conditions owned elsewhere (DatabaseSynced, by the Postgres mirror)."""
    return {
        "phase": str(state.phase),
        "state": state.state,
        "statusReason": state.status_reason,
        "message": state.message,
        "conditions": [to_condition(c) for c in (*state.conditions, *extra)],
        "connectingSince": rfc3339(state.connecting_since),
        "pairingCodeExpiresAt": rfc3339(state.pairing_code_expires_at),
        "forcedLogouts": state.forced_logouts,
        "recentForcedLogouts": [rfc3339(t) for t in state.forced_logout_times],
        "lastForcedLogoutTime": rfc3339(state.last_forced_logout),
        "lastConnectedTime": rfc3339(state.last_connected),
        "lastDisconnectedTime": rfc3339(state.last_disconnected),
        "lastNotifiedTime": rfc3339(state.last_notified),
        "lastTransitionTime": rfc3339(state.last_transition),
    }


def from_status(status: Mapping[str, Any]) -> InstanceState:
    """Resume from what a previous operator run wrote (or a fresh state for a new object)."""
    try:
        phase = Phase(status.get("phase") or Phase.PENDING)
    except ValueError:
        phase = Phase.PENDING
    reason = status.get("statusReason")
    return InstanceState(
        phase=phase,
        state=status.get("state"),
        status_reason=int(reason) if reason is not None else None,
        message=str(status.get("message") or ""),
        conditions=tuple(
            Condition(
                type=str(c.get("type")),
                status=str(c.get("status")),
                reason=str(c.get("reason") or ""),
                message=str(c.get("message") or ""),
                last_transition_time=parse_time(c.get("lastTransitionTime")),
            )
            for c in status.get("conditions") or ()
            if c.get("type") in {"Ready", "Probed", "Stuck"}  # DatabaseSynced belongs to the mirror
        ),
        connecting_since=parse_time(status.get("connectingSince")),
        pairing_code_expires_at=parse_time(status.get("pairingCodeExpiresAt")),
        forced_logouts=int(status.get("forcedLogouts") or 0),
        forced_logout_times=tuple(t for t in map(parse_time, status.get("recentForcedLogouts") or ()) if t),
        last_forced_logout=parse_time(status.get("lastForcedLogoutTime")),
        last_connected=parse_time(status.get("lastConnectedTime")),
        last_disconnected=parse_time(status.get("lastDisconnectedTime")),
        last_notified=parse_time(status.get("lastNotifiedTime")),
        last_transition=parse_time(status.get("lastTransitionTime")),
    )


def normalize(state: InstanceState) -> InstanceState:
    """The state as it will read back from `.status` (whole-second timestamps)."""
    return from_status(to_status(state))


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new` (top-level keys only; None deletes)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if old.get(key) != value and not (value is None and key not in old):
            patch[key] = value
    return patch

