"""Liveness rules (docs/liveness.md): runs of failed checks, the outage guard's window, and what the
state machine does with the verdicts."""

from __future__ import annotations

import datetime

from whatsapp_operator.core.liveness import LIVE, Check, FleetChecks, counted
from whatsapp_operator.core.machine import reconcile
from whatsapp_operator.core.phases import DB_STATUS, HOOK_STATE, Phase
from whatsapp_operator.core.state import (
    ForceLogout,
    InstanceState,
    Notify,
    Observation,
    Outcome,
    Policy,
    Restart,
    Verdict,
)
from whatsapp_operator.core.status import health, normalize

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
POLICY = Policy()


def field(state: InstanceState, type_: str, name: str) -> str | None:
    condition = state.condition(type_)
    return None if condition is None else str(getattr(condition, name))


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def open_with(live: Verdict | None) -> Observation:
    return Observation(Outcome.STATE, state="open", reason=200, live=live)


def connected() -> InstanceState:
    return reconcile(InstanceState(), open_with(None), T0, POLICY).state


def test_two_failures_in_a_row_are_dead_and_an_answer_starts_the_count_again() -> None:
    assert counted(0, Check.FAILED, 2) == (1, Verdict.FAILING)
    assert counted(1, Check.FAILED, 2) == (0, Verdict.DEAD)
    assert counted(1, Check.ALIVE, 2) == (0, Verdict.ALIVE)
    assert counted(1, None, 2) == (1, None), "a check that proved nothing counts for neither"


def test_the_guard_holds_when_more_than_the_share_of_the_fleet_fails_within_one_interval() -> None:
    fleet = FleetChecks(window=300, max_failing_share=0.3)
    for i in range(20):
        fleet.record(i, Check.ALIVE, at=float(i))
    fleet.record(0, Check.FAILED, at=30.0)
    assert not fleet.fleet_failing(30.0), "a lone failure in a healthy fleet is the instance's"
    for i in range(1, 7):
        fleet.record(i, Check.FAILED, at=30.0 + i)
    assert fleet.counts(40.0) == (7, 20)
    assert fleet.fleet_failing(40.0), "7 of 20 is more than 30 %"
    assert fleet.counts(336.5) == (0, 0), "checks older than one interval are gone"


def test_the_guard_stays_off_in_a_small_fleet() -> None:
    fleet = FleetChecks(window=300, max_failing_share=0.3)
    for i in range(3):
        fleet.record(i, Check.FAILED, at=1.0)
    assert not fleet.fleet_failing(2.0)


def test_dead_makes_a_connected_instance_unresponsive_restarts_it_and_notifies_once() -> None:
    decision = reconcile(connected(), open_with(Verdict.DEAD), at(600), POLICY)
    state = decision.state
    assert state.phase is Phase.UNRESPONSIVE
    assert field(state, LIVE, "status") == "False"
    assert field(state, "Ready", "status") == "False"
    assert state.restarts == 1
    assert [type(a) for a in decision.actions if isinstance(a, Restart | ForceLogout | Notify)] == [Notify, Restart]
    assert {e.reason for e in decision.events} == {"Unresponsive", "Restarted"}
    assert normalize(state).restarts == 1, "restarts round-trip through .status"

    failing = reconcile(state, open_with(Verdict.FAILING), at(630), POLICY)
    assert failing.state.phase is Phase.UNRESPONSIVE, "open, but no check has answered since"
    assert failing.actions == ()

    again = reconcile(failing.state, open_with(Verdict.DEAD), at(660), POLICY)
    assert [a for a in again.actions if isinstance(a, Restart | ForceLogout | Notify)] == [ForceLogout()]
    assert again.state.forced_logouts == 1
    assert field(again.state, LIVE, "status") == "Unknown"


def test_an_answer_makes_an_unresponsive_instance_connected_and_live() -> None:
    state = reconcile(connected(), open_with(Verdict.DEAD), at(600), POLICY).state
    healed = reconcile(state, open_with(Verdict.ALIVE), at(605), POLICY)
    assert healed.state.phase is Phase.CONNECTED
    assert field(healed.state, LIVE, "status") == "True"
    assert "Connected" in {e.reason for e in healed.events}


def test_no_live_condition_until_an_instance_is_first_found_unresponsive() -> None:
    state = connected()
    decision = reconcile(state, open_with(Verdict.ALIVE), at(300), POLICY)
    assert decision.state.condition(LIVE) is None, "no write per healthy instance for it"
    assert decision.state.conditions == state.conditions


def test_with_no_remedy_left_it_stays_unresponsive_with_one_event() -> None:
    policy = Policy(max_restarts=0, max_forced_logouts=0)
    first = reconcile(connected(), open_with(Verdict.DEAD), at(600), policy)
    assert field(first.state, LIVE, "reason") == "RemediationExhausted"
    assert "RemediationExhausted" in {e.reason for e in first.events}
    second = reconcile(first.state, open_with(Verdict.DEAD), at(660), policy)
    assert second.state.phase is Phase.UNRESPONSIVE
    assert second.events == ()


def test_checks_off_means_evolutions_word() -> None:
    state = reconcile(connected(), open_with(Verdict.DEAD), at(600), POLICY).state
    assert reconcile(state, open_with(None), at(630), Policy(liveness=False)).state.phase is Phase.CONNECTED


def test_unresponsive_is_not_connected_for_the_application_and_unhealthy() -> None:
    assert DB_STATUS[Phase.UNRESPONSIVE] == "disconnected"
    assert HOOK_STATE[Phase.UNRESPONSIVE] == "close"
    assert health(Phase.UNRESPONSIVE, stuck=False) == "unhealthy"
