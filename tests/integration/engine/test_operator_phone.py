"""A spec.phoneNumber the schema lets through but the operator cannot normalise, with the real operator:
condition PhoneNumberValid and one Warning Event, no pairing at all meanwhile (Evolution would show a QR
code instead of sending a code), and the pairing by code once the spec is fixed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.support.operator_harness import (
    condition,
    environment,
    instance_manifest,
    requests_to,
    wait_event,
    wait_phase,
)
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster

pytestmark = pytest.mark.looptime

MISSING_NINTH_DIGIT = "(11) 8765-4321"  # a São Paulo mobile written as before 2012: valid in form only
PHONE_DIGITS = ("87654321", "8765-4321", "118765")
PROBLEM = "not a valid +55 (BR) number: check the area code and the digits"
WAITS = f"spec.phoneNumber is not a valid phone number ({PROBLEM}); pairing by code waits until it is fixed"


async def wait_condition(kube: EmulatedCluster, name: str, status: str, within: float = 60) -> dict[str, Any]:
    def holds(obj: dict[str, Any] | None) -> bool:
        conditions = ((obj or {}).get("status") or {}).get("conditions") or ()
        return any(c["type"] == "PhoneNumberValid" and c["status"] == status for c in conditions)

    async with asyncio.timeout(within):
        obj = await kube.wait_for("whatsappinstances", name, holds)
    assert obj is not None
    return obj


def status_writes(kube: EmulatedCluster, name: str) -> int:
    return kube.emulator.writes("whatsappinstances", subresource="status", name=name)


async def test_an_invalid_number_waits_in_pending_with_a_condition_and_one_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="whatsapp_operator")
    async with environment() as (kube, simulator, _operator):
        await kube.create(instance_manifest("driver-p", phone=MISSING_NINTH_DIGIT))
        obj = await wait_condition(kube, "driver-p", "False")
        assert obj["status"]["phase"] == "Pending"
        assert obj["status"]["message"] == "pairing by code waits for a valid spec.phoneNumber"
        assert condition(obj, "PhoneNumberValid")["reason"] == "InvalidPhoneNumber"
        assert condition(obj, "PhoneNumberValid")["message"] == WAITS
        assert condition(obj, "Ready")["status"] == "False"
        (event,) = await wait_event(kube, "driver-p", "InvalidPhoneNumber")
        assert (event["type"], event["message"]) == ("Warning", WAITS)

        writes = status_writes(kube, "driver-p")
        await asyncio.sleep(300)  # ten probe intervals
        assert status_writes(kube, "driver-p") == writes, "probes that find the same problem write nothing"
        assert len(kube.emulator.events(name="driver-p", reason="InvalidPhoneNumber")) == 1
        assert [e["reason"] for e in kube.emulator.events(name="driver-p")] == ["InvalidPhoneNumber"]
        assert not requests_to(simulator, "GET", "/instance/connect/driver-p"), "no connect: it would pair by QR"
        created = requests_to(simulator, "POST", "/instance/create")
        assert [(r.body["instanceName"], r.body["qrcode"], "number" in r.body) for r in created] == [
            ("driver-p", False, False)
        ]
        assert simulator.instances["driver-p"].state == "close"
        assert len(requests_to(simulator, "GET", "/instance/connectionState/driver-p")) >= 10, "still probed"

        await kube.patch("whatsappinstances", "driver-p", {"spec": {"phoneNumber": "(11) 98765-4321"}})
        obj = await wait_phase(kube, "driver-p", "Pairing", within=30)
        assert condition(obj, "PhoneNumberValid")["status"] == "True"
        assert condition(obj, "PhoneNumberValid")["reason"] == "Valid"
        (connect, *_) = requests_to(simulator, "GET", "/instance/connect/driver-p")
        assert connect.query == {"number": "5511987654321"}, "the fixed number, for a pairing code"
        assert simulator.instances["driver-p"].pairing_code
        simulator.act("driver-p", "pair")
        await wait_phase(kube, "driver-p", "Connected", within=60)
        assert len(kube.emulator.events(name="driver-p", reason="InvalidPhoneNumber")) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(digits in logged for digits in PHONE_DIGITS)


async def test_a_pair_request_waits_for_the_fixed_number() -> None:
    """A logged-out driver asks to pair again while the spec's number is wrong: nothing is sent until
    it is fixed, and then the request is answered with one pairing by code."""
    async with environment() as (kube, simulator, _operator):
        simulator.add_instance("driver-q", "open")
        await kube.create(instance_manifest("driver-q"))
        await wait_phase(kube, "driver-q", "Connected", within=30)
        await kube.patch("whatsappinstances", "driver-q", {"spec": {"phoneNumber": MISSING_NINTH_DIGIT}})
        obj = await wait_condition(kube, "driver-q", "False")
        assert obj["status"]["phase"] == "Connected", "the link does not need the number"
        simulator.act("driver-q", "disconnect", 401)
        await wait_phase(kube, "driver-q", "LoggedOut", within=60)

        annotation = {"whatsapp.evolution-operator.io/pair-requested-at": "2026-11-29T12:00:00Z"}
        await kube.patch("whatsappinstances", "driver-q", {"metadata": {"annotations": annotation}})
        await asyncio.sleep(120)
        assert not requests_to(simulator, "GET", "/instance/connect/driver-q")
        obj = await kube.get("whatsappinstances", "driver-q")
        assert obj["status"]["phase"] == "LoggedOut"
        assert "pairRequestHandled" not in obj["status"], "not answered yet"

        await kube.patch("whatsappinstances", "driver-q", {"spec": {"phoneNumber": "+55 11 98765-4321"}})
        obj = await wait_phase(kube, "driver-q", "Pairing", within=30)
        assert obj["status"]["pairRequestHandled"] == "2026-11-29T12:00:00Z"
        assert condition(obj, "PhoneNumberValid")["status"] == "True"
        connects = requests_to(simulator, "GET", "/instance/connect/driver-q")
        assert connects[0].query == {"number": "5511987654321"}
        assert [e["type"] for e in kube.emulator.events(name="driver-q", reason="InvalidPhoneNumber")] == ["Warning"]
