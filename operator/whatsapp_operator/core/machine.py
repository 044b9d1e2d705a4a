"""The instance state machine: what one observation of Evolution means for a WhatsAppInstance.

Pure and synchronous on purpose: every rule about phases, disconnection episodes and remediation
lives here and is unit-tested without a cluster, an Evolution server or a clock. The prober does the I/O, feeds
`reconcile()` an `Observation`, and carries out the returned `Action`s.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from whatsapp_operator.core import liveness
from whatsapp_operator.core.liveness import Remedy
from whatsapp_operator.core.phases import EvolutionState, Phase
from whatsapp_operator.core.state import (
    Action,
    Condition,
    ConditionStatus,
    Decision,
    Event,
    ForceLogout,
    InstanceState,
    Notify,
    Observation,
    Outcome,
    Policy,
    Recreate,
    Restart,
    Verdict,
    set_condition,
)

TERMINAL_REASONS = frozenset({401, 402, 403, 406})
"""Evolution's disconnect codes after which it stops reconnecting: the driver must pair again."""

PHONE_NUMBER_VALID = "PhoneNumberValid"


def _phase_of(prev: InstanceState, obs: Observation, now: datetime.datetime, policy: Policy) -> Phase:
    if obs.outcome is Outcome.FAILED:
        return Phase.UNKNOWN
    if obs.outcome is Outcome.MISSING:
        return Phase.NOT_FOUND
    if obs.state == EvolutionState.OPEN:
        return liveness.open_phase(prev, obs.live, policy)
    if obs.state == EvolutionState.CONNECTING:
        if obs.code_valid_until is not None and obs.code_valid_until > now:
            return Phase.PAIRING
        return Phase.CONNECTING
    if obs.state in (EvolutionState.CLOSE, "refused"):  # refused: the QR limit, in webhooks only
        if policy.pairing_blocked and prev.phase in (Phase.PENDING, Phase.NOT_FOUND):
            return Phase.PENDING  # new or recreated, and the operator could not start its pairing
        return Phase.LOGGED_OUT if obs.reason in TERMINAL_REASONS else Phase.DISCONNECTED
    # Evolution knows the instance but has not loaded it in memory: no state to act upon.
    return Phase.UNKNOWN


_PHASE_MESSAGES: Mapping[Phase, str] = {
    Phase.PENDING: "pairing by code waits for a valid spec.phoneNumber",
    Phase.CONNECTED: "WhatsApp is connected",
    Phase.UNRESPONSIVE: "Evolution says open, but the socket does not answer liveness checks",
    Phase.PAIRING: "waiting for the driver to enter the pairing code or scan the QR code",
    Phase.CONNECTING: "Evolution is connecting without a valid pairing code",
    Phase.DISCONNECTED: "WhatsApp is disconnected",
    Phase.LOGGED_OUT: "the WhatsApp session ended; the driver must pair again",
    Phase.NOT_FOUND: "the instance does not exist on Evolution",
    Phase.UNKNOWN: "Evolution cannot be probed; keeping the last known state",
}


def reconcile(prev: InstanceState, obs: Observation, now: datetime.datetime, policy: Policy) -> Decision:
    """Fold one observation into the instance's state and say what to do about it."""
    phase = _phase_of(prev, obs, now, policy)
    actions: list[Action] = []
    state = dataclasses.replace(prev, **_observed(prev, obs, phase, now))
    recheck_at = obs.code_valid_until if phase is Phase.PAIRING else None  # look again when the code runs out

    if phase is Phase.CONNECTED and prev.phase is not Phase.CONNECTED:
        state = dataclasses.replace(state, last_connected=now)
        actions.append(Event("Normal", "Connected", "WhatsApp connected"))
        state, back = _reconnected(prev, state, now, policy)
        actions.extend(back)

    if phase in _EPISODE_ENDS and phase is not prev.phase:
        reason = f" (reason {obs.reason})" if obs.reason is not None else ""
        if phase is Phase.UNRESPONSIVE:  # the driver is told as of a disconnection
            actions.append(Event("Warning", "Unresponsive", "WhatsApp says open but its socket does not answer"))
        elif phase is Phase.LOGGED_OUT:
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
    done = None
    if obs.live is Verdict.DEAD:
        state, more, done = _revive(state, now, policy)
        actions.extend(more)

    conditions = liveness.live_condition(_conditions(state, obs, now, stuck), obs.live, done, policy, now)
    conditions, phone_event = _phone_condition(conditions, policy, now)
    actions.extend(phone_event)
    state = dataclasses.replace(state, conditions=conditions)
    if state.phase is not prev.phase:
        state = dataclasses.replace(state, last_transition=now)
    return Decision(state, tuple(actions), recheck_at)


_EPISODE_ENDS = (Phase.DISCONNECTED, Phase.LOGGED_OUT, Phase.NOT_FOUND, Phase.UNRESPONSIVE)


def _revive(state: InstanceState, now: datetime.datetime, policy: Policy) -> tuple[InstanceState, list[Action], Remedy]:
    """Unresponsive (failureThreshold failed checks in a row): the remedy `liveness.remedy` picks."""
    done = liveness.remedy(state, now, policy)
    if done is Remedy.RESTART:
        message = "liveness checks failed; restarted the socket"
        return liveness.restarted(state, now, policy), [Restart(), Event("Warning", "Restarted", message)], done
    if done is Remedy.LOGOUT:
        state, actions, _ = _remediate(state, now, policy, "liveness checks still failed after a restart")
        return state, actions, done
    old = state.condition(liveness.LIVE)
    if old is not None and old.reason == "RemediationExhausted":
        return state, [], done
    message = "still unresponsive with no restart or forced logout left within the hour"
    return state, [Event("Warning", "RemediationExhausted", message)], done


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
    state, more, recheck_at = _remediate(state, now, policy, "connecting without a code for too long")
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
    state: InstanceState, now: datetime.datetime, policy: Policy, why: str
) -> tuple[InstanceState, list[Action], datetime.datetime | None]:
    recent = policy.recent(state.forced_logout_times, now)
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
        Event("Warning", "ForcedLogout", f"{why}; logged out for a fresh pairing"),
    ]
    # The operator ended the session: the driver must pair again, as after a LoggedOut.
    state, notify = _end_episode(state, now, policy, "logged_out")
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
