"""The state machine's vocabulary: what the operator remembers of an instance (`InstanceState`), what
one probe observed (`Observation`), the policy it is judged by, and the actions a decision asks for.
Pure; the rules over these live in `machine` (phases, episodes, remediation) and `liveness`."""

from __future__ import annotations

import dataclasses
import datetime
import enum

from whatsapp_operator.core.phases import Phase


@dataclasses.dataclass(frozen=True)
class Policy:
    stuck_after: datetime.timedelta = datetime.timedelta(seconds=30)
    max_forced_logouts: int = 3
    forced_logout_window: datetime.timedelta = datetime.timedelta(hours=1)
    notify_cooldown: datetime.timedelta = datetime.timedelta(minutes=30)
    notifications_enabled: bool = True
    notify_reconnected: bool = False  # also tell a notified driver when the link is back
    phone_problem: str | None = None  # why spec.phoneNumber cannot be normalised (None: it can)
    pairs_by_code: bool = True  # spec.pairing.method pairingCode: a fresh pairing needs that number
    max_restarts: int = 3  # restarts of unresponsive instances per forced_logout_window
    liveness: bool = True  # spec.probe.livenessIntervalSeconds is not 0: open instances are checked

    def recent(self, times: tuple[datetime.datetime, ...], now: datetime.datetime) -> tuple[datetime.datetime, ...]:
        """The remediations (forced logouts, restarts) of `times` still inside the budgets' window."""
        return tuple(t for t in times if now - t < self.forced_logout_window)

    @property
    def pairing_blocked(self) -> bool:
        """A fresh pairing would need a number the operator cannot use: it waits (never a QR instead)."""
        return self.pairs_by_code and self.phone_problem is not None


class Outcome(enum.StrEnum):
    STATE = "state"  # Evolution answered with a connection state
    MISSING = "missing"  # Evolution answered 404: the instance is gone
    FAILED = "failed"  # no usable answer (unreachable, timeout, 5xx, breaker open, ...)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one probe learnt. `code_valid_until` is the expiry of a pairing code or QR that the
    operator knows is outstanding for this instance (None: none known)."""

    outcome: Outcome
    state: str | None = None
    reason: int | None = None
    code_valid_until: datetime.datetime | None = None
    error: str | None = None
    live: Verdict | None = None  # the liveness checks' verdict, when this probe made one


class Verdict(enum.StrEnum):
    """What the liveness checks of an open instance say so far (docs/liveness.md); None: nothing new."""

    ALIVE = "alive"  # a check answered: the socket is alive
    FAILING = "failing"  # the last check failed, fewer than failureThreshold in a row
    DEAD = "dead"  # failureThreshold failed checks in a row: unresponsive, remediate


class ConditionStatus(enum.StrEnum):
    """Kubernetes' condition statuses, the strings `.status.conditions[].status` holds."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str  # a ConditionStatus (a plain str when read back from `.status`)
    reason: str
    message: str = ""
    last_transition_time: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class InstanceState:
    """Everything the operator remembers about an instance; it round-trips through `.status`."""

    phase: Phase = Phase.PENDING
    state: str | None = None
    status_reason: int | None = None
    message: str = ""
    conditions: tuple[Condition, ...] = ()
    connecting_since: datetime.datetime | None = None
    pairing_code_expires_at: datetime.datetime | None = None
    forced_logouts: int = 0
    forced_logout_times: tuple[datetime.datetime, ...] = ()
    last_forced_logout: datetime.datetime | None = None
    restarts: int = 0  # restarts of an unresponsive instance's socket, recorded like forced logouts
    restart_times: tuple[datetime.datetime, ...] = ()
    last_restart: datetime.datetime | None = None
    last_connected: datetime.datetime | None = None
    last_disconnected: datetime.datetime | None = None
    last_notified: datetime.datetime | None = None  # a channel delivered (written by the notifier)
    notify_decided: datetime.datetime | None = None  # the last decision to notify: the cooldown's start
    notify_episode: datetime.datetime | None = None  # that decision's episode: when it had connected
    notify_kind: str | None = None
    last_transition: datetime.datetime | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def episode_open(self) -> bool:
        """Connected at some point and not yet counted as disconnected since: a disconnection now
        is news for the driver. Derived from two timestamps so that it survives restarts."""
        if self.last_connected is None:
            return False
        return self.last_disconnected is None or self.last_disconnected < self.last_connected


@dataclasses.dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class ForceLogout:
    """Log the instance out and connect it again for a fresh code."""


@dataclasses.dataclass(frozen=True)
class Restart:
    """Restart the instance's socket (POST /instance/restart): the first remedy for an unresponsive one."""


@dataclasses.dataclass(frozen=True)
class Recreate:
    """Create the instance on Evolution again: it vanished behind the operator's back."""


@dataclasses.dataclass(frozen=True)
class Notify:
    """Tell the driver their WhatsApp link broke (delivered by the notifications outbox). One per
    episode: `episode` is when the instance connected, which names the episode for good."""

    kind: str  # "disconnected" | "logged_out" | "reconnected" (the link of `episode` is back)
    episode: datetime.datetime
    at: datetime.datetime  # when it was decided


Action = Event | ForceLogout | Restart | Recreate | Notify


def stuck(state: InstanceState) -> bool:
    """Connecting too long (remediated or not): unhealthy for the heartbeat."""
    condition = state.condition("Stuck")
    return condition is not None and condition.status == ConditionStatus.TRUE


@dataclasses.dataclass(frozen=True)
class Decision:
    state: InstanceState
    actions: tuple[Action, ...] = ()
    recheck_at: datetime.datetime | None = None  # probe again no later than this

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(a for a in self.actions if isinstance(a, Event))


def set_condition(
    conditions: tuple[Condition, ...],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime.datetime,
) -> tuple[Condition, ...]:
    """Kubernetes convention: lastTransitionTime moves only when the status itself changes."""
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(type_, status, reason, message, since)
    if old == new:
        return conditions
    return (*(c for c in conditions if c.type != type_), new)
