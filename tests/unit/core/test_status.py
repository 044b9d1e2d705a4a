"""The status round trip: what the operator writes reads back identically, and an unchanged state
produces no patch at all (the zero-PATCH steady state rests on this)."""

from __future__ import annotations

import datetime

from whatsapp_operator.core.machine import reconcile
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.state import InstanceState, Observation, Outcome, Policy
from whatsapp_operator.core.status import from_status, normalize, status_patch, to_status

T0 = datetime.datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def test_round_trip_is_stable():
    state = reconcile(InstanceState(), Observation(Outcome.STATE, state="open", reason=200), T0, Policy()).state
    written = to_status(normalize(state))
    assert from_status(written) == normalize(state)
    assert to_status(from_status(written)) == written
    assert written["lastConnectedTime"] == "2026-11-29T12:00:00Z"


def test_unchanged_state_yields_an_empty_patch():
    state = normalize(reconcile(InstanceState(), Observation(Outcome.STATE, state="open"), T0, Policy()).state)
    assert status_patch(to_status(state), to_status(state)) == {}


def test_patch_carries_only_changed_keys_and_nulls_for_removed_ones():
    old = {"phase": "Connecting", "connectingSince": "2026-11-29T12:00:00Z", "forcedLogouts": 0}
    new = {"phase": "Pairing", "connectingSince": None, "forcedLogouts": 0, "pairingCodeExpiresAt": None}
    assert status_patch(old, new) == {"phase": "Pairing", "connectingSince": None}


def test_unknown_or_garbage_status_resumes_as_pending():
    assert from_status({}).phase is Phase.PENDING
    assert from_status({"phase": "Bogus", "conditions": [{"type": "Ready"}]}).phase is Phase.PENDING


def test_database_condition_is_not_taken_into_the_machine_state():
    status = {"phase": "Connected", "conditions": [{"type": "DatabaseSynced", "status": "False"}]}
    assert from_status(status).conditions == ()
