import datetime

from whatsapp_operator.core.driver_status import driver_status
from whatsapp_operator.core.phases import HOOK_STATE, HookState, Phase
from whatsapp_operator.core.state import InstanceState


def test_every_phase_has_one_of_the_hooks_states():
    assert set(HOOK_STATE) == set(Phase)
    assert {str(s) for s in HookState} == {"open", "close", "connecting", "UNKNOWN", "NOT_FOUND"}
    assert {p for p, s in HOOK_STATE.items() if s is HookState.OPEN} == {Phase.CONNECTED}


def test_the_answer_has_the_hooks_fields_and_no_secret():
    at = datetime.datetime(2026, 12, 3, 15, 4, 5, 678, tzinfo=datetime.timezone(datetime.timedelta(hours=-3)))
    state = InstanceState(
        phase=Phase.LOGGED_OUT, state="close", status_reason=401, last_transition=at, pairing_code_expires_at=at
    )
    assert driver_status("driver-ana", state) == {
        "instanceName": "driver-ana",
        "state": "close",
        "statusReason": 401,
        "phase": "LoggedOut",
        "updatedAt": "2026-12-03T18:04:05Z",
    }
    assert driver_status("x", InstanceState())["updatedAt"] is None
