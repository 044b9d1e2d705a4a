"""The state machine with a spec.phoneNumber the operator cannot normalise: condition PhoneNumberValid,
one Warning per problem, and a pairing by code that waits for the fix instead of becoming a QR."""

from __future__ import annotations

import datetime

from whatsapp_operator.core.machine import PHONE_NUMBER_VALID, reconcile
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.state import ForceLogout, InstanceState, Observation, Outcome, Policy

T0 = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
INVALID = Policy(phone_problem="too short")
VALID = Policy()


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def seen(state: str, reason: int | None = None, code_until: datetime.datetime | None = None) -> Observation:
    return Observation(Outcome.STATE, state=state, reason=reason, code_valid_until=code_until)


def phone_condition(state: InstanceState) -> tuple[str, str, str] | None:
    c = state.condition(PHONE_NUMBER_VALID)
    return None if c is None else (c.status, c.reason, c.message)


def warnings(decision) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in decision.events if e.type == "Warning"]


WAITS = "spec.phoneNumber is not a valid phone number (too short); pairing by code waits until it is fixed"


def test_a_new_instance_stays_pending_with_the_condition_and_one_warning():
    first = reconcile(InstanceState(), seen("close"), at(0), INVALID)
    assert first.state.phase is Phase.PENDING, "not Disconnected: it never connected, and nothing was tried"
    assert first.state.message == "pairing by code waits for a valid spec.phoneNumber"
    assert phone_condition(first.state) == ("False", "InvalidPhoneNumber", WAITS)
    assert warnings(first) == [("InvalidPhoneNumber", WAITS)]
    assert first.state.condition("Ready").status == "False"

    again = reconcile(first.state, seen("close"), at(30), INVALID)
    assert again.state == first.state, "the next probe changes nothing: no write"
    assert again.actions == ()


def test_the_fixed_number_turns_the_condition_true_and_pairing_goes_on():
    blocked = reconcile(InstanceState(), seen("close"), at(0), INVALID).state
    fixed = reconcile(blocked, seen("connecting", code_until=at(75)), at(30), VALID)
    assert fixed.state.phase is Phase.PAIRING
    assert phone_condition(fixed.state) == ("True", "Valid", "")
    assert warnings(fixed) == []


def test_a_valid_number_never_shows_the_condition():
    decision = reconcile(InstanceState(), seen("connecting", code_until=at(45)), at(0), VALID)
    assert phone_condition(decision.state) is None


def test_a_new_problem_is_a_new_warning():
    first = reconcile(InstanceState(), seen("close"), at(0), INVALID).state
    other = reconcile(first, seen("close"), at(30), Policy(phone_problem="too long"))
    assert [reason for reason, _ in warnings(other)] == ["InvalidPhoneNumber"]
    assert "(too long)" in other.state.condition(PHONE_NUMBER_VALID).message
    assert other.state.condition(PHONE_NUMBER_VALID).last_transition_time == at(0), "still False since then"


def test_stuck_connecting_is_not_logged_out_into_a_pairing_that_cannot_start():
    connecting = reconcile(InstanceState(), seen("connecting"), at(0), INVALID).state
    stuck = reconcile(connecting, seen("connecting"), at(31), INVALID)
    assert not any(isinstance(a, ForceLogout) for a in stuck.actions)
    stuck_condition = stuck.state.condition("Stuck")
    assert (stuck_condition.status, stuck_condition.reason) == ("True", "InvalidPhoneNumber")
    assert stuck.state.forced_logouts == 0

    fixed = reconcile(stuck.state, seen("connecting"), at(40), VALID)
    assert any(isinstance(a, ForceLogout) for a in fixed.actions), "remediation goes on once it is fixed"


def test_a_recreated_instance_waits_in_pending_too():
    gone = reconcile(InstanceState(phase=Phase.CONNECTED), Observation(Outcome.MISSING), at(0), INVALID).state
    assert gone.phase is Phase.NOT_FOUND
    recreated = reconcile(gone, seen("close"), at(1), INVALID)
    assert recreated.state.phase is Phase.PENDING


def test_a_connected_instance_keeps_its_link_and_shows_the_problem():
    connected = reconcile(InstanceState(), seen("open", 200), at(0), VALID).state
    edited = reconcile(connected, seen("open", 200), at(30), INVALID)
    assert edited.state.phase is Phase.CONNECTED
    assert phone_condition(edited.state) == ("False", "InvalidPhoneNumber", WAITS)
    logged_out = reconcile(edited.state, seen("close", 401), at(60), INVALID)
    assert logged_out.state.phase is Phase.LOGGED_OUT, "the session did end: only a new or recreated one waits"


def test_qr_pairing_goes_on_and_still_shows_the_problem():
    qr = Policy(phone_problem="too short", pairs_by_code=False)
    decision = reconcile(InstanceState(), seen("connecting", code_until=at(45)), at(0), qr)
    assert decision.state.phase is Phase.PAIRING
    message = "spec.phoneNumber is not a valid phone number (too short); the QR pairing goes on"
    assert phone_condition(decision.state) == ("False", "InvalidPhoneNumber", message)
    closed = reconcile(InstanceState(), seen("close"), at(0), qr)
    assert closed.state.phase is Phase.DISCONNECTED, "a QR pairing never waits for the number"
