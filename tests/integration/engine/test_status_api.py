"""The status API through the real operator, without a database: what the application's backend
reads for a driver, in the original plan's `useWhatsappStatus` shape, behind its bearer token."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.operator_harness import (
    STATUS_API_TOKEN,
    IssuedCodes,
    backends,
    environment,
    exhaust_remediation,
    instance_manifest,
    operator_runtime,
    wait_phase,
)
from tests.support.status_api import Answer, status_client
from whatsapp_operator.bearer import REFRESH_SECONDS
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import instance_name_for
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.manifests import STATUS_API_SECRET, status_api_secret_manifest
from whatsapp_operator.engine.runner import running
from whatsapp_operator.engine.runtime import Runtime

pytestmark = pytest.mark.looptime

# The hook's state for each phase, as docs/status-api.md's table says.
HOOK_STATES = {
    "Pending": "connecting",
    "Pairing": "connecting",
    "Connecting": "connecting",
    "Connected": "open",
    "Unresponsive": "close",
    "Disconnected": "close",
    "LoggedOut": "close",
    "NotFound": "NOT_FOUND",
    "Unknown": "UNKNOWN",
    "Suspended": "UNKNOWN",
}
PHONE_DIGITS = "987654321"  # instance_manifest's "(11) 98765-4321", in any notation


def assert_hooks_shape(answer: Answer, obj: dict[str, Any], codes: IssuedCodes | None = None) -> None:
    """A 200 in the hook's shape that says what the instance's `.status` says, and nothing secret."""
    status = obj.get("status") or {}
    phase = phase_of(obj)
    assert answer.status == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.body == {
        "instanceName": status.get("instanceName", instance_name_for(obj["spec"]["driverId"])),
        "state": HOOK_STATES[phase],
        "statusReason": status.get("statusReason"),
        "phase": phase,
        "updatedAt": status.get("lastTransitionTime"),
    }
    assert PHONE_DIGITS not in answer.text.replace("-", "").replace(" ", "")
    for secret in codes.secrets() if codes is not None else ():
        assert secret not in answer.text, "a pairing code or QR reached the answer"


async def answers_phase(
    runtime: Runtime, kube: EmulatedCluster, codes: IssuedCodes | None, name: str, phase: str
) -> Answer:
    """Once the instance is in `phase` (Pending: it has no status yet), in `.status` and in the
    operator's memory, the API's answer about its driver."""
    async with asyncio.timeout(120):
        obj = await kube.wait_for("whatsappinstances", name, lambda o: o is not None and phase_of(o) == phase)
        while (member := runtime.fleet.get(("default", name))) is None or member.state.phase != phase:
            await kube.emulator.next_change()
    assert obj is not None
    async with status_client(runtime.http.url if runtime.http else None) as api:
        answer = await api.get(obj["spec"]["driverId"])
    assert_hooks_shape(answer, obj, codes)
    return answer


def phase_of(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase", "Pending"))


async def test_each_phase_the_operator_reaches_answers_in_the_hooks_shape() -> None:
    async with environment(status_api=True) as (kube, sim, runtime):
        assert runtime.http is not None
        assert runtime.http.webhooks is None, "no database: no webhook receiver"
        codes = IssuedCodes(sim)
        await kube.create(instance_manifest("waiting", serverRef={"name": "nowhere"}))  # no prober: Pending
        sim.add_instance("ana", "open")
        sim.add_instance("davi", "open")
        sim.add_instance("sus", "open")
        sim.add_instance("carla", "connecting")  # stuck connecting, no code
        for name in ("ana", "davi", "sus", "carla", "bruno", "qr"):
            await kube.create(instance_manifest(name))

        assert (await answers_phase(runtime, kube, codes, "waiting", "Pending")).body["updatedAt"] is None
        await answers_phase(runtime, kube, codes, "carla", "Connecting")
        await answers_phase(runtime, kube, codes, "bruno", "Pairing")
        ana = await answers_phase(runtime, kube, codes, "ana", "Connected")
        assert ana.body["statusReason"] == 200
        assert datetime.datetime.fromisoformat(ana.body["updatedAt"]).tzinfo == datetime.UTC

        sim.act("davi", "disconnect", 401)
        assert (await answers_phase(runtime, kube, codes, "davi", "LoggedOut")).body["statusReason"] == 401
        await wait_phase(kube, "qr", "Pairing")
        sim.act("qr", "qr_limit")
        await answers_phase(runtime, kube, codes, "qr", "Disconnected")
        await kube.patch("whatsappinstances", "sus", {"spec": {"suspend": True}})
        await answers_phase(runtime, kube, codes, "sus", "Suspended")

        sim.add_fault("outage", 300, mode="503")
        unknown = await answers_phase(runtime, kube, codes, "ana", "Unknown")
        assert unknown.body["statusReason"] == 200, "the last reason is kept while Evolution cannot be asked"


async def test_every_phase_in_status_maps_to_the_hooks_state() -> None:
    """Instances no prober runs (their EvolutionServer is elsewhere) answer what `.status` says, in
    every phase there is (NotFound included, which the operator leaves at once by recreating)."""
    assert set(HOOK_STATES) == {str(p) for p in Phase}
    async with environment(status_api=True) as (kube, _, runtime):
        for n, phase in enumerate(HOOK_STATES):
            name = f"seen-{phase.lower()}"
            await kube.create(instance_manifest(name, driver_id=f"Motorista {n}/{phase} ☺", serverRef={"name": "x"}))
            status = {"phase": phase, "statusReason": 400 + n, "lastTransitionTime": f"2026-01-{n + 1:02d}T12:00:00Z"}
            await kube.patch("whatsappinstances", name, {"status": status}, subresource="status")
        for phase in HOOK_STATES:
            await answers_phase(runtime, kube, None, f"seen-{phase.lower()}", phase)


async def test_remediation_exhausted_is_still_connecting() -> None:
    async with environment(status_api=True) as (kube, sim, runtime):
        codes = IssuedCodes(sim)
        obj = await exhaust_remediation(kube, sim, "stuck")
        async with status_client(runtime.http.url if runtime.http else None) as api:
            answer = await api.get("stuck")
        assert_hooks_shape(answer, obj, codes)
        assert answer.body["state"] == "connecting"


async def test_missing_and_wrong_tokens_are_refused_and_unknown_drivers_are_404() -> None:
    async with environment(status_api=True) as (kube, sim, runtime):
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        await wait_phase(kube, "ana", "Connected")
        async with status_client(runtime.http.url if runtime.http else None) as api:
            answers = {
                "none": await api.get("ana", token=None),
                "basic": await api.get("ana", authorization=f"Basic {STATUS_API_TOKEN}"),
                "empty": await api.get("ana", authorization="Bearer "),
                "wrong": await api.get("ana", token=STATUS_API_TOKEN + "x"),
                "prefix": await api.get("ana", token=STATUS_API_TOKEN[:-1]),
                "not ascii": await api.get("ana", token="tök\xe9n"),
            }
            for what, answer in answers.items():
                assert answer.status == 401, what
                assert answer.headers["WWW-Authenticate"].startswith("Bearer "), what
                assert answer.headers["Cache-Control"] == "no-store", what
                assert "error" in answer.body, what
                assert "ana" not in answer.text, what
                assert STATUS_API_TOKEN not in answer.text, what
            assert 'error="invalid_token"' in answers["wrong"].headers["WWW-Authenticate"]
            assert "error=" not in answers["none"].headers["WWW-Authenticate"]

            unknown = await api.get("nobody")
            assert (unknown.status, unknown.headers["Cache-Control"]) == (404, "no-store")
            assert unknown.body == {"error": "no WhatsAppInstance has driverId 'nobody'"}
            assert (await api.get("ana", authorization=f"bearer {STATUS_API_TOKEN}")).status == 200
            document = await api.openapi()  # no token needed
        assert document.status == 200
        assert set(document.body["paths"]) == {"/api/v1/drivers/{driverId}/whatsapp/status", "/api/v1/openapi.json"}


async def test_two_instances_of_one_driver_are_a_conflict_until_one_goes() -> None:
    async with environment(status_api=True) as (kube, sim, runtime):
        sim.add_instance("old", "open")
        await kube.create(instance_manifest("old", driver_id="maria", instanceName="old"))
        await kube.create(instance_manifest("new", driver_id="maria", instanceName="new"))
        await wait_phase(kube, "old", "Connected")
        await wait_phase(kube, "new", "Pairing")
        async with status_client(runtime.http.url if runtime.http else None) as api:
            conflict = await api.get("maria")
            assert conflict.status == 409
            assert conflict.body["instances"] == ["default/new", "default/old"]
            await kube.delete("whatsappinstances", "new")
            async with asyncio.timeout(30):
                await kube.wait_for("whatsappinstances", "new", lambda o: o is None)
            answer = await api.get("maria")
        assert (answer.status, answer.body["instanceName"], answer.body["state"]) == (200, "old", "open")


async def test_a_rotated_token_works_from_its_first_request_and_the_old_one_stops() -> None:
    async with environment(status_api=True) as (kube, sim, runtime):
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        await wait_phase(kube, "ana", "Connected")
        secret = status_api_secret_manifest("the-new-token-0123456789", previous=STATUS_API_TOKEN)
        async with status_client(runtime.http.url if runtime.http else None) as api:
            assert (await api.get("ana")).status == 200
            await asyncio.sleep(10)  # past the re-read a wrong token may ask for
            await kube.patch("secrets", STATUS_API_SECRET, {"data": secret["data"]})
            assert (await api.get("ana", token="the-new-token-0123456789")).status == 200
            assert (await api.get("ana")).status == 200, "the previous token works during the rotation"

            await kube.patch("secrets", STATUS_API_SECRET, {"data": {"previous-token": None}})
            assert (await api.get("ana")).status == 200, "until the next read"
            await asyncio.sleep(REFRESH_SECONDS)  # a request now finds the token old and reads it again
            assert (await until(lambda: api.get("ana"), 401)).headers["WWW-Authenticate"].startswith("Bearer")
            assert (await api.get("ana", token="the-new-token-0123456789")).status == 200

            await kube.delete("secrets", STATUS_API_SECRET)
            await asyncio.sleep(REFRESH_SECONDS)
            gone = await until(lambda: api.get("ana", token="the-new-token-0123456789"), 503)
        assert (gone.headers["Retry-After"], gone.headers["Cache-Control"]) == ("5", "no-store")


async def until(ask: Callable[[], Awaitable[Answer]], status: int, within: float = 5) -> Answer:
    """Ask again until the answer has `status` (a background read of the Secret landed)."""
    async with asyncio.timeout(within):
        while (answer := await ask()).status != status:  # noqa: ASYNC110  # nothing announces a read landing
            await asyncio.sleep(0.1)
    return answer


async def test_an_unreadable_secret_is_503_with_retry_after_until_it_exists() -> None:
    async with backends() as (kube, sim):
        runtime = operator_runtime(kube, status_api_secret=("default", STATUS_API_SECRET))
        async with running(runtime), status_client(runtime.http.url if runtime.http else None) as api:
            sim.add_instance("ana", "open")
            await kube.create(instance_manifest("ana"))
            await wait_phase(kube, "ana", "Connected")
            missing = await api.get("ana")
            assert (missing.status, missing.headers["Retry-After"]) == (503, "5")
            assert (await api.get("ana", token=None)).status == 401, "no token: refused without a read"
            await kube.create(status_api_secret_manifest(STATUS_API_TOKEN))
            await asyncio.sleep(1)
            assert (await api.get("ana")).status == 200


async def test_without_a_configured_secret_the_api_answers_503() -> None:
    async with environment() as (kube, sim, runtime):
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        await wait_phase(kube, "ana", "Connected")
        async with status_client(runtime.http.url if runtime.http else None) as api:
            answer = await api.get("ana")
        assert (answer.status, answer.headers["Cache-Control"]) == (503, "no-store")
        assert "Retry-After" not in answer.headers, "no use retrying: it is not configured"
        assert "--status-api-secret" in answer.body["error"]
