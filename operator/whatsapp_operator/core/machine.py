"""The instance state machine: what one observation of Evolution means for a WhatsAppInstance.

Pure and synchronous on purpose: every rule about phases, disconnection episodes and remediation
lives here and is unit-tested without a cluster, an Evolution server or a clock. The prober does the I/O, feeds
`reconcile()` an `Observation`, and carries out the returned `Action`s.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any

from whatsapp_operator.core.phases import EvolutionState, Phase

TERMINAL_REASONS = frozenset({401, 402, 403, 406})
"""Evolution's disconnect codes after which it stops reconnecting: the driver must pair again."""

PHONE_NUMBER_VALID = "PhoneNumberValid"


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
class Recreate:
    """Create the instance on Evolution again: it vanished behind the operator's back."""


@dataclasses.dataclass(frozen=True)
class Notify:
    """Tell the driver their WhatsApp link broke (delivered by the notifications outbox). One per
    episode: `episode` is when the instance connected, which names the episode for good."""

    kind: str  # "disconnected" | "logged_out" | "reconnected" (the link of `episode` is back)
    episode: datetime.datetime
    at: datetime.datetime  # when it was decided


Action = Event | ForceLogout | Recreate | Notify


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


def _phase_of(prev: Phase, obs: Observation, now: datetime.datetime, policy: Policy) -> Phase:
    if obs.outcome is Outcome.FAILED:
        return Phase.UNKNOWN
    if obs.outcome is Outcome.MISSING:
        return Phase.NOT_FOUND
    if obs.state == EvolutionState.OPEN:
        return Phase.CONNECTED
    if obs.state == EvolutionState.CONNECTING:
        if obs.code_valid_until is not None and obs.code_valid_until > now:
            return Phase.PAIRING
        return Phase.CONNECTING
    if obs.state in (EvolutionState.CLOSE, "refused"):  # refused: the QR limit, in webhooks only
        if policy.pairing_blocked and prev in (Phase.PENDING, Phase.NOT_FOUND):
            return Phase.PENDING  # new or recreated, and the operator could not start its pairing
        return Phase.LOGGED_OUT if obs.reason in TERMINAL_REASONS else Phase.DISCONNECTED
    # Evolution knows the instance but has not loaded it in memory: no state to act upon.
    return Phase.UNKNOWN


_PHASE_MESSAGES: Mapping[Phase, str] = {
    Phase.PENDING: "pairing by code waits for a valid spec.phoneNumber",
    Phase.CONNECTED: "WhatsApp is connected",
    Phase.PAIRING: "waiting for the driver to enter the pairing code or scan the QR code",
    Phase.CONNECTING: "Evolution is connecting without a valid pairing code",
    Phase.DISCONNECTED: "WhatsApp is disconnected",
    Phase.LOGGED_OUT: "the WhatsApp session ended; the driver must pair again",
    Phase.NOT_FOUND: "the instance does not exist on Evolution",
    Phase.UNKNOWN: "Evolution cannot be probed; keeping the last known state",
}


def reconcile(prev: InstanceState, obs: Observation, now: datetime.datetime, policy: Policy) -> Decision:
    """Fold one observation into the instance's state and say what to do about it."""
    phase = _phase_of(prev.phase, obs, now, policy)
    actions: list[Action] = []
    state = dataclasses.replace(prev, **_observed(prev, obs, phase, now))
    recheck_at = obs.code_valid_until if phase is Phase.PAIRING else None  # look again when the code runs out

    if phase is Phase.CONNECTED and prev.phase is not Phase.CONNECTED:
        state = dataclasses.replace(state, last_connected=now)
        actions.append(Event("Normal", "Connected", "WhatsApp connected"))
        state, back = _reconnected(prev, state, now, policy)
        actions.extend(back)

    if phase in (Phase.DISCONNECTED, Phase.LOGGED_OUT, Phase.NOT_FOUND) and phase is not prev.phase:
        reason = f" (reason {obs.reason})" if obs.reason is not None else ""
        if phase is Phase.LOGGED_OUT:
            actions.append(Event("Warning", "LoggedOut", f"WhatsApp session ended{reason}; pairing needed"))
        elif phase is Phase.DISCONNECTED:
            actions.append(Event("Warning", "Disconnected", f"WhatsApp disconnected{reason}"))
        state, notify = _end_episode(state, now, policy, "logged_out" if phase is Phase.LOGGED_OUT else "disconnected")
        actions.extend(notify)

    stuck = Condition("Stuck", ConditionStatus.FALSE, "NotStuck", "")
    if phase is Phase.CONNECTING:
        state, more, recheck_at, stuck = _stuck(state, now, policy)
        actions.extend(more)
    elif phase is Phase.UNKNOWN:
        stuck = Condition("Stuck", ConditionStatus.UNKNOWN, "NotProbed", "")
    if phase is Phase.NOT_FOUND:
        actions.append(Recreate())

    conditions, phone_event = _phone_condition(_conditions(state, obs, now, stuck), policy, now)
    actions.extend(phone_event)
    state = dataclasses.replace(state, conditions=conditions)
    if state.phase is not prev.phase:
        state = dataclasses.replace(state, last_transition=now)
    return Decision(state, tuple(actions), recheck_at)


def _observed(prev: InstanceState, obs: Observation, phase: Phase, now: datetime.datetime) -> dict[str, Any]:
    """The fields one observation sets, before any rule about episodes or remediation."""
    changes: dict[str, Any] = {"phase": phase, "message": _PHASE_MESSAGES[phase]}
    if phase is Phase.UNKNOWN:
        # A failed probe is never a disconnection: keep the last state, start stuck timing afresh.
        changes["message"] = f"{_PHASE_MESSAGES[phase]}: {obs.error}" if obs.error else changes["message"]
        changes["connecting_since"] = None
        return changes
    changes["state"] = obs.state
    if obs.reason is not None or phase in (Phase.CONNECTED, Phase.NOT_FOUND):
        changes["status_reason"] = obs.reason
    changes["pairing_code_expires_at"] = obs.code_valid_until if phase is Phase.PAIRING else None
    if phase is Phase.CONNECTING:
        since = prev.connecting_since if prev.phase is Phase.CONNECTING and prev.connecting_since else now
        changes["connecting_since"] = since
    else:
        changes["connecting_since"] = None
    return changes


def _stuck(
    state: InstanceState, now: datetime.datetime, policy: Policy
) -> tuple[InstanceState, list[Action], datetime.datetime | None, Condition]:
    """Connecting: wait for the stuck deadline, then remediate (or say remediation is exhausted)."""
    assert state.connecting_since is not None
    deadline = state.connecting_since + policy.stuck_after
    if now < deadline:
        return state, [], deadline, Condition("Stuck", ConditionStatus.FALSE, "NotStuck", "")
    if policy.pairing_blocked:  # a forced logout would end in a pairing the operator cannot start
        message = f"connecting for more than {int(policy.stuck_after.total_seconds())} s; a fresh pairing waits"
        return state, [], None, Condition("Stuck", ConditionStatus.TRUE, "InvalidPhoneNumber", message)
    state, more, recheck_at = _remediate(state, now, policy)
    if any(isinstance(a, ForceLogout) for a in more):
        message = f"connecting for more than {int(policy.stuck_after.total_seconds())} s without a code"
        return state, more, recheck_at, Condition("Stuck", ConditionStatus.TRUE, "ConnectingTooLong", message)
    message = f"{policy.max_forced_logouts} forced logouts within {policy.forced_logout_window}; waiting"
    return state, more, recheck_at, Condition("Stuck", ConditionStatus.TRUE, "RemediationExhausted", message)


def _end_episode(
    state: InstanceState, now: datetime.datetime, policy: Policy, kind: str
) -> tuple[InstanceState, list[Action]]:
    """Close a connected episode: one notification per episode, never within the cooldown."""
    if not state.episode_open:
        return state, []
    episode = state.last_connected
    assert episode is not None
    state = dataclasses.replace(state, last_disconnected=now)
    cooled = state.notify_decided is None or now - state.notify_decided >= policy.notify_cooldown
    if not (policy.notifications_enabled and cooled):
        return state, []
    state = dataclasses.replace(state, notify_decided=now, notify_episode=episode, notify_kind=kind)
    return state, [Notify(kind, episode, now)]


def _reconnected(
    prev: InstanceState, state: InstanceState, now: datetime.datetime, policy: Policy
) -> tuple[InstanceState, list[Action]]:
    """The driver was told the episode that just ended broke: say the link is back, once. The
    cooldown is the disconnections' and does not move."""
    told = prev.notify_kind in ("disconnected", "logged_out") and prev.notify_episode == prev.last_connected
    if not (policy.notifications_enabled and policy.notify_reconnected and told):
        return state, []
    assert prev.notify_episode is not None
    return dataclasses.replace(state, notify_kind="reconnected"), [Notify("reconnected", prev.notify_episode, now)]


def _remediate(
    state: InstanceState, now: datetime.datetime, policy: Policy
) -> tuple[InstanceState, list[Action], datetime.datetime | None]:
    recent = tuple(t for t in state.forced_logout_times if now - t < policy.forced_logout_window)
    if len(recent) >= policy.max_forced_logouts:
        actions: list[Action] = []
        old = state.condition("Stuck")
        if old is None or old.reason != "RemediationExhausted":
            actions.append(
                Event(
                    "Warning",
                    "RemediationExhausted",
                    f"still connecting after {len(recent)} forced logouts within the hour; not logging out again",
                )
            )
        # Look again when the oldest logout leaves the window and the budget frees up.
        return dataclasses.replace(state, forced_logout_times=recent), actions, recent[0] + policy.forced_logout_window
    state = dataclasses.replace(
        state,
        forced_logouts=state.forced_logouts + 1,
        forced_logout_times=(*recent, now),
        last_forced_logout=now,
        connecting_since=now,  # the fresh connect gets its own 30 s
    )
    actions = [
        ForceLogout(),
        Event("Warning", "ForcedLogout", "connecting without a code for too long; logged out for a fresh pairing"),
    ]
    state, notify = _end_episode(state, now, policy, "disconnected")
    return state, [*actions, *notify], now + policy.stuck_after


def _conditions(
    state: InstanceState,
    obs: Observation,
    now: datetime.datetime,
    stuck: Condition,
) -> tuple[Condition, ...]:
    conditions = state.conditions
    if obs.outcome is Outcome.FAILED:
        conditions = set_condition(
            conditions, "Probed", ConditionStatus.FALSE, obs.error or "ProbeFailed", state.message, now
        )
        conditions = set_condition(conditions, "Ready", ConditionStatus.UNKNOWN, "NotProbed", state.message, now)
    else:
        conditions = set_condition(conditions, "Probed", ConditionStatus.TRUE, "Probed", "", now)
        ready = ConditionStatus.TRUE if state.phase is Phase.CONNECTED else ConditionStatus.FALSE
        conditions = set_condition(conditions, "Ready", ready, str(state.phase), state.message, now)
    return set_condition(conditions, "Stuck", stuck.status, stuck.reason, stuck.message, now)


def _phone_condition(
    conditions: tuple[Condition, ...], policy: Policy, now: datetime.datetime
) -> tuple[tuple[Condition, ...], list[Action]]:
    """PhoneNumberValid: False while spec.phoneNumber cannot be normalised, with a Warning for each new
    problem; True once it can. Absent until a number was first found wrong (no write per instance for
    it), like DatabaseSynced. The problem names what is wrong, never the digits."""
    old = next((c for c in conditions if c.type == PHONE_NUMBER_VALID), None)
    if policy.phone_problem is None:
        if old is None:
            return conditions, []
        return set_condition(conditions, PHONE_NUMBER_VALID, ConditionStatus.TRUE, "Valid", "", now), []
    effect = "pairing by code waits until it is fixed" if policy.pairs_by_code else "the QR pairing goes on"
    message = f"spec.phoneNumber is not a valid phone number ({policy.phone_problem}); {effect}"
    if old is not None and (old.status, old.message) == (ConditionStatus.FALSE, message):
        return conditions, []
    conditions = set_condition(
        conditions, PHONE_NUMBER_VALID, ConditionStatus.FALSE, "InvalidPhoneNumber", message, now
    )
    return conditions, [Event("Warning", "InvalidPhoneNumber", message)]


def suspended(prev: InstanceState, now: datetime.datetime) -> InstanceState:
    """spec.suspend: no probing, no remediation; the last Evolution state stays visible."""
    if prev.phase is Phase.SUSPENDED:
        return prev
    conditions = set_condition(prev.conditions, "Ready", ConditionStatus.UNKNOWN, "Suspended", "probing suspended", now)
    conditions = set_condition(conditions, "Stuck", ConditionStatus.FALSE, "Suspended", "", now)
    return dataclasses.replace(
        prev,
        phase=Phase.SUSPENDED,
        message="probing and remediation suspended by spec.suspend",
        connecting_since=None,
        conditions=conditions,
        last_transition=now,
    )
