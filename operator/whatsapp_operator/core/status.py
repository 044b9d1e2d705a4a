"""The shape of both resources' `.status`: the round trip between the state machine's `InstanceState`
and a WhatsAppInstance's status, and the EvolutionServer's fleet summary.

`status_patch()` is what keeps steady-state probing free of writes: it yields only the keys that
differ, and nothing at all when nothing changed.
"""

from __future__ import annotations

import collections
import datetime
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

from whatsapp_operator.core.liveness import LIVE
from whatsapp_operator.core.machine import PHONE_NUMBER_VALID
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.state import Condition, InstanceState

# Conditions the state machine owns; DatabaseSynced is the Postgres mirror's.
MACHINE_CONDITIONS = frozenset({"Ready", "Probed", "Stuck", PHONE_NUMBER_VALID, LIVE})
DATABASE_SYNCED = "DatabaseSynced"


def rfc3339(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime.datetime | None:
    return _parse_time(str(value)) if value else None


# Shared, immutable values: instances that changed in the same second hold one datetime, and equal
# conditions one Condition, instead of one each (a fleet converges within seconds).
@functools.lru_cache(maxsize=4096)
def _parse_time(value: str) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def from_condition(raw: Mapping[str, Any]) -> Condition:
    return _condition(
        str(raw.get("type")),
        str(raw.get("status")),
        str(raw.get("reason") or ""),
        str(raw.get("message") or ""),
        parse_time(raw.get("lastTransitionTime")),
    )


@functools.lru_cache(maxsize=4096)
def _condition(
    type: str, status: str, reason: str, message: str, last_transition_time: datetime.datetime | None
) -> Condition:
    return Condition(type, status, reason, message, last_transition_time)


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
        "restarts": state.restarts,
        "recentRestarts": [rfc3339(t) for t in state.restart_times],
        "lastRestartTime": rfc3339(state.last_restart),
        "lastConnectedTime": rfc3339(state.last_connected),
        "lastDisconnectedTime": rfc3339(state.last_disconnected),
        "lastNotifiedTime": rfc3339(state.last_notified),
        "notifyDecisionTime": rfc3339(state.notify_decided),
        "notifyEpisode": rfc3339(state.notify_episode),
        "notifyKind": state.notify_kind,
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
            from_condition(c) for c in status.get("conditions") or () if c.get("type") in MACHINE_CONDITIONS
        ),
        connecting_since=parse_time(status.get("connectingSince")),
        pairing_code_expires_at=parse_time(status.get("pairingCodeExpiresAt")),
        forced_logouts=int(status.get("forcedLogouts") or 0),
        forced_logout_times=tuple(t for t in map(parse_time, status.get("recentForcedLogouts") or ()) if t),
        last_forced_logout=parse_time(status.get("lastForcedLogoutTime")),
        restarts=int(status.get("restarts") or 0),
        restart_times=tuple(t for t in map(parse_time, status.get("recentRestarts") or ()) if t),
        last_restart=parse_time(status.get("lastRestartTime")),
        last_connected=parse_time(status.get("lastConnectedTime")),
        last_disconnected=parse_time(status.get("lastDisconnectedTime")),
        last_notified=parse_time(status.get("lastNotifiedTime")),
        # Before notifyDecisionTime existed, lastNotifiedTime held the decision: its cooldown holds.
        notify_decided=parse_time(status.get("notifyDecisionTime") or status.get("lastNotifiedTime")),
        notify_episode=parse_time(status.get("notifyEpisode")),
        notify_kind=status.get("notifyKind"),
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



class InstanceStatus(NamedTuple):
    """Everything a WhatsAppInstance's `.status` is made from. The operator keeps this, never the
    rendered dict: an unchanged probe compares two of these (the very same objects, usually), and
    the dict is rendered only to make a patch."""

    state: InstanceState
    db_condition: Condition | None  # the mirror's DatabaseSynced
    instance_name: str | None
    server: str | None
    generation: int | None
    pair_handled: str | None  # the last pair-requested-at annotation answered

    def render(self) -> dict[str, Any]:
        extra = (self.db_condition,) if self.db_condition is not None else ()
        return to_status(self.state, extra) | {
            "instanceName": self.instance_name,
            "server": self.server,
            "observedGeneration": self.generation,
            "pairRequestHandled": self.pair_handled,
        }

    @classmethod
    def read(cls, status: Mapping[str, Any]) -> InstanceStatus:
        """What a status written by an earlier run (or by the active replica) was made from."""
        db = next((c for c in status.get("conditions") or () if c.get("type") == DATABASE_SYNCED), None)
        generation = status.get("observedGeneration")
        return cls(
            state=from_status(status),
            db_condition=from_condition(db) if db is not None else None,
            instance_name=status.get("instanceName"),
            server=status.get("server"),
            generation=int(generation) if generation is not None else None,
            pair_handled=status.get("pairRequestHandled"),
        )


# The heartbeat's buckets, as the original plan counts them: an instance failing to be probed is
# `unknown`, never `unhealthy`, so that an Evolution outage does not look like a mass disconnection.
UNHEALTHY = frozenset({Phase.DISCONNECTED, Phase.LOGGED_OUT, Phase.NOT_FOUND, Phase.UNRESPONSIVE})
HEALTH = ("healthy", "unhealthy", "unknown", "pairing")


def health(phase: Phase, stuck: bool) -> str | None:
    """An instance's heartbeat bucket; None for those in none (Pending, Suspended, Connecting not
    yet stuck)."""
    if phase is Phase.CONNECTED:
        return "healthy"
    if phase in UNHEALTHY or (phase is Phase.CONNECTING and stuck):
        return "unhealthy"
    if phase is Phase.UNKNOWN:
        return "unknown"
    return "pairing" if phase is Phase.PAIRING else None


def server_status(
    breaker: str, instances: Mapping[tuple[Phase, bool], int], conditions: tuple[Condition, ...]
) -> dict[str, Any]:
    """An EvolutionServer's `.status`: its breaker, its instances (counted by phase and whether
    stuck) by phase and by heartbeat bucket, and its conditions (Ready once Evolution first
    answered, SenderReady once a message was due)."""
    counts: collections.Counter[Phase] = collections.Counter()
    buckets: collections.Counter[str | None] = collections.Counter()
    for (phase, stuck), n in instances.items():
        counts[phase] += n
        buckets[health(phase, stuck)] += n
    status: dict[str, Any] = {
        "breaker": breaker,
        "instances": sum(counts.values()),
        "connected": counts[Phase.CONNECTED],
        **{bucket: buckets[bucket] for bucket in HEALTH},
        "phases": {str(p): counts[p] for p in Phase},
    }
    if conditions:
        status["conditions"] = [to_condition(c) for c in conditions]
    return status
