"""The state machine's rules (design brief, section 4), one observation at a time."""

from __future__ import annotations

import datetime

import pytest

from whatsapp_operator.core.machine import reconcile, suspended
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.state import (
    Event,
    ForceLogout,
    InstanceState,
    Notify,
    Observation,
    Outcome,
    Policy,
    Recreate,
)

T0 = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
POLICY = Policy()


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def seen(state: str, reason: int | None = None, code_until: datetime.datetime | None = None) -> Observation:
    return Observation(Outcome.STATE, state=state, reason=reason, code_valid_until=code_until)


FAILED = Observation(Outcome.FAILED, error="Unreachable")
MISSING = Observation(Outcome.MISSING)


def run(*steps: tuple[float, Observation], start: InstanceState | None = None, policy: Policy = POLICY):
    """Feed observations in order; return every decision."""
    state = start or InstanceState()
    decisions = []
    for seconds, obs in steps:
        decision = reconcile(state, obs, at(seconds), policy)
        decisions.append(decision)
        state = decision.state
    return decisions


def reasons(decision) -> list[str]:
    return [e.reason for e in decision.events]


def condition(state: InstanceState, type_: str) -> tuple[str, str]:
    c = state.condition(type_)
    assert c is not None
    return c.status, c.reason


def test_open_is_connected_with_ready_true_and_an_event():
    (d,) = run((0, seen("open", 200)))
    assert d.state.phase is Phase.CONNECTED
    assert condition(d.state, "Ready") == ("True", "Connected")
    assert reasons(d) == ["Connected"]
    assert d.state.last_connected == at(0)


def test_connecting_with_a_valid_code_is_pairing_and_never_stuck():
    steps = [(t, seen("connecting", code_until=at(t + 45))) for t in range(0, 181, 30)]
    decisions = run(*steps)
    assert {d.state.phase for d in decisions} == {Phase.PAIRING}
    assert not any(isinstance(a, ForceLogout) for d in decisions for a in d.actions)
    assert decisions[-1].state.pairing_code_expires_at == at(225)
    assert decisions[0].recheck_at == at(45)


def test_an_expired_code_does_not_count_as_pairing():
    (d,) = run((50, seen("connecting", code_until=at(45))))
    assert d.state.phase is Phase.CONNECTING


def test_connecting_without_code_is_stuck_after_30_seconds_and_logged_out_once():
    d0, d1, d2 = run((0, seen("connecting")), (29, seen("connecting")), (30, seen("connecting")))
    assert d0.state.phase is Phase.CONNECTING
    assert d0.recheck_at == at(30), "the stuck deadline is checked on time, not at the next tick"
    assert not any(isinstance(a, ForceLogout) for a in d0.actions + d1.actions)
    assert ForceLogout() in d2.actions
    assert reasons(d2) == ["ForcedLogout"]
    assert d2.state.forced_logouts == 1
    assert d2.state.last_forced_logout == at(30)
    assert condition(d2.state, "Stuck") == ("True", "ConnectingTooLong")


def test_pairing_clock_does_not_count_towards_stuck():
    decisions = run(
        (0, seen("connecting", code_until=at(45))),
        (40, seen("connecting", code_until=at(85))),
        (80, seen("connecting")),  # the code ran out: now Connecting, its own 30 s start here
        (100, seen("connecting")),
    )
    assert decisions[2].state.connecting_since == at(80)
    assert not any(isinstance(a, ForceLogout) for d in decisions for a in d.actions)


def test_three_forced_logouts_per_hour_then_remediation_exhausted():
    state = InstanceState()
    logouts = 0
    exhausted_events = 0
    t = 0.0
    for _episode in range(4):
        for d in run((t, seen("connecting")), (t + 31, seen("connecting")), start=state):
            logouts += sum(isinstance(a, ForceLogout) for a in d.actions)
            exhausted_events += reasons(d).count("RemediationExhausted")
            state = d.state
        t += 120
    assert logouts == 3
    assert exhausted_events == 1
    assert condition(state, "Stuck") == ("True", "RemediationExhausted")
    # Still stuck later in the same hour: no more logouts and no repeated event.
    (d,) = run((t + 60, seen("connecting")), start=state)
    assert not d.actions
    assert d.recheck_at == at(31) + datetime.timedelta(hours=1), "looks again when the budget frees up"
    # Once the first logout leaves the window, remediation resumes.
    (d,) = run((3700, seen("connecting")), start=d.state)
    assert ForceLogout() in d.actions


def test_probe_failure_is_unknown_never_disconnected_and_keeps_last_state():
    _d0, d1 = run((0, seen("open", 200)), (30, FAILED))
    assert d1.state.phase is Phase.UNKNOWN
    assert d1.state.state == "open"
    assert condition(d1.state, "Ready") == ("Unknown", "NotProbed")
    assert condition(d1.state, "Probed") == ("False", "Unreachable")
    assert not d1.actions


def test_recovery_from_unknown_to_connected_sends_no_event():
    decisions = run((0, seen("open", 200)), (30, FAILED), (60, FAILED), (90, seen("open", 200)))
    assert decisions[-1].state.phase is Phase.CONNECTED
    assert reasons(decisions[-1]) == ["Connected"]  # phase changed back from Unknown
    assert not any(isinstance(a, Notify) for d in decisions for a in d.actions)


def test_terminal_reasons_are_logged_out_and_notify_once():
    for code in (401, 402, 403, 406):
        _d0, d1, d2 = run((0, seen("open", 200)), (30, seen("close", code)), (60, seen("close", code)))
        assert d1.state.phase is Phase.LOGGED_OUT
        assert Event("Warning", "LoggedOut", f"WhatsApp session ended (reason {code}); pairing needed") in d1.actions
        assert Notify("logged_out", at(0), at(30)) in d1.actions
        state = d1.state
        assert (state.notify_decided, state.notify_episode, state.notify_kind) == (at(30), at(0), "logged_out")
        assert state.last_notified is None, "only a delivery sets lastNotifiedTime"
        assert not d2.actions, "the same state again is not news"


def test_close_with_transient_or_qr_limit_reason_is_disconnected():
    for code in (428, 408, 500, None):
        _, d1 = run((0, seen("open", 200)), (30, seen("close", code)))
        assert d1.state.phase is Phase.DISCONNECTED
        assert Notify("disconnected", at(0), at(30)) in d1.actions


def test_refused_is_disconnected():
    (d,) = run((0, seen("refused", 428)))
    assert d.state.phase is Phase.DISCONNECTED


def test_never_connected_instances_are_never_notified():
    decisions = run((0, seen("connecting", code_until=at(45))), (60, seen("close", 401)))
    assert decisions[-1].state.phase is Phase.LOGGED_OUT
    assert not any(isinstance(a, Notify) for d in decisions for a in d.actions)


def test_one_notification_per_episode():
    decisions = run(
        (0, seen("open", 200)),
        (30, seen("close", 428)),  # Disconnected: notify
        (60, seen("close", 401)),  # then LoggedOut in the same episode: no second notification
    )
    notes = [a for d in decisions for a in d.actions if isinstance(a, Notify)]
    assert notes == [Notify("disconnected", at(0), at(30))]


def test_notification_cooldown_between_episodes():
    decisions = run(
        (0, seen("open", 200)),
        (30, seen("close", 401)),  # notified
        (60, seen("open", 200)),
        (90, seen("close", 401)),  # new episode inside 30 min: suppressed
        (120, seen("open", 200)),
        (2000, seen("close", 401)),  # after the cooldown: notified again
    )
    notified_at = [i for i, d in enumerate(decisions) if any(isinstance(a, Notify) for a in d.actions)]
    assert notified_at == [1, 5]


def test_notifications_can_be_disabled_per_instance():
    policy = Policy(notifications_enabled=False)
    decisions = run((0, seen("open", 200)), (30, seen("close", 401)), policy=policy)
    assert not any(isinstance(a, Notify) for d in decisions for a in d.actions)


def test_forced_logout_of_a_previously_connected_instance_notifies():
    decisions = run(
        (0, seen("open", 200)),
        (30, seen("connecting", 428)),  # transient drop: no notification
        (61, seen("connecting")),  # stuck: forced logout
    )
    assert not any(isinstance(a, Notify) for a in decisions[1].actions)
    assert Notify("logged_out", at(0), at(61)) in decisions[2].actions, "the driver must pair again"


def test_transient_drop_is_connecting_without_events():
    _, d1, d2 = run((0, seen("open", 200)), (10, seen("connecting", 515)), (15, seen("open", 200)))
    assert d1.state.phase is Phase.CONNECTING
    assert not d1.actions
    assert reasons(d2) == ["Connected"]


def test_vanished_instance_is_recreated():
    _, d1 = run((0, seen("open", 200)), (30, MISSING))
    assert d1.state.phase is Phase.NOT_FOUND
    assert Recreate() in d1.actions


def test_condition_transition_time_moves_only_when_status_changes():
    decisions = run((0, seen("open", 200)), (30, seen("open", 200)), (60, seen("close", 401)))
    ready = [d.state.condition("Ready") for d in decisions]
    assert ready[0].last_transition_time == ready[1].last_transition_time == at(0)
    assert ready[2].last_transition_time == at(60)
    assert decisions[0].state == decisions[1].state, "nothing new: identical state, so nothing to write"


def test_suspend_keeps_last_state_and_is_idempotent():
    (d,) = run((0, seen("open", 200)))
    s1 = suspended(d.state, at(10))
    assert s1.phase is Phase.SUSPENDED
    assert s1.state == "open"
    assert suspended(s1, at(20)) is s1


@pytest.mark.parametrize("code", [515, 428, 440])
def test_transient_codes_never_disconnect(code):
    decisions = run((0, seen("open", 200)), (5, seen("connecting", code)), (10, seen("open", 200)))
    assert Phase.DISCONNECTED not in {d.state.phase for d in decisions}
    assert not any(isinstance(a, Notify) for d in decisions for a in d.actions)


def test_a_notified_driver_hears_once_that_the_link_is_back_when_the_server_asks_for_it():
    steps = (
        (0, seen("open", 200)),
        (30, seen("close", 401)),  # notified: logged out
        (60, seen("connecting", code_until=at(100))),
        (90, seen("open", 200)),  # back: "reconnected"
        (120, seen("close", 428)),  # a new episode, inside the cooldown: nothing
        (150, seen("open", 200)),  # back again, but that disconnection was not notified: nothing
    )
    notes = [a for d in run(*steps, policy=Policy(notify_reconnected=True)) for a in d.actions if isinstance(a, Notify)]
    assert notes == [Notify("logged_out", at(0), at(30)), Notify("reconnected", at(0), at(90))]
    plain = [a for d in run(*steps) for a in d.actions if isinstance(a, Notify)]
    assert plain == [Notify("logged_out", at(0), at(30))], "off by default"
