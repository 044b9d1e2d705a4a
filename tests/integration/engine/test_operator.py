"""The operator end to end: kopf against the strict Kubernetes emulator, the Evolution simulator on
loopback, every clock fast-forwarded by looptime (a "minute" here takes milliseconds)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.operator_harness import (
    backends,
    condition,
    environment,
    exhaust_remediation,
    instance_manifest,
    loop_now,
    operator_runtime,
    phases_seen,
    requests_to,
    wait_event,
    wait_phase,
)
from whatsapp_operator.devkit.manifests import server_manifest
from whatsapp_operator.devkit.simulator import Simulator
from whatsapp_operator.engine.runner import running
from whatsapp_operator.kube import KubeError

pytestmark = pytest.mark.looptime


def evolution_state(sim: Simulator, name: str) -> str | None:
    instance = sim.instances.get(name)
    return instance.state if instance is not None else None


async def test_new_instance_goes_pending_pairing_connected() -> None:
    async with environment() as (kube, simulator, _operator):
        await kube.create(instance_manifest("driver-1"))
        obj = await wait_phase(kube, "driver-1", "Pairing", within=30)
        created = requests_to(simulator, "POST", "/instance/create")
        assert [r.body["instanceName"] for r in created] == ["driver-1"]
        assert created[0].body["integration"] == "WHATSAPP-BAILEYS"
        connects = requests_to(simulator, "GET", "/instance/connect/driver-1")
        assert connects[0].query == {"number": "5511987654321"}, "pairing-code mode asks with the digits-only number"
        assert obj["status"]["pairingCodeExpiresAt"]
        code = simulator.instances["driver-1"].pairing_code
        assert code is not None
        assert code not in str(obj), "a pairing code never reaches .status"

        simulator.act("driver-1", "pair")
        obj = await wait_phase(kube, "driver-1", "Connected", within=60)
        status = obj["status"]
        assert condition(obj, "Ready")["status"] == "True"
        assert status["statusReason"] == 200
        assert status["instanceName"] == "driver-1"
        assert status["server"] == "default"
        assert obj["spec"]["driverName"] == "Driver driver-1"
        assert (await wait_event(kube, "driver-1", "Connected"))[0]["type"] == "Normal"
        async with asyncio.timeout(30):
            server = await kube.wait_for(
                "evolutionservers", "default", lambda o: o is not None and o.get("status", {}).get("connected") == 1
            )
        assert server is not None
        assert condition(server, "Ready")["status"] == "True"
        assert server["status"]["breaker"] == "Closed"
        for event in kube.emulator.events(name="driver-1"):
            assert code not in str(event)


async def test_transient_drop_is_not_a_disconnection_but_401_is() -> None:
    async with environment() as (kube, simulator, operator):
        simulator.add_instance("driver-2", "open")
        await kube.create(instance_manifest("driver-2"))
        await wait_phase(kube, "driver-2", "Connected", within=30)

        for code in (515, 428, 440):
            simulator.act("driver-2", "drop", code)
            await asyncio.sleep(1)  # mid-reconnect: make the operator look right now
            operator.probers[("default", "default")].probe_soon(("default", "driver-2"))
            await asyncio.sleep(60)
            obj = await wait_phase(kube, "driver-2", "Connected", within=60)
        seen = phases_seen(kube, "driver-2")
        assert "Connecting" in seen, "the probe did look mid-reconnect"
        assert "Disconnected" not in seen
        assert not kube.emulator.events(name="driver-2", reason="Disconnected")
        assert not kube.emulator.events(name="driver-2", reason="LoggedOut")

        simulator.act("driver-2", "disconnect", 401)
        obj = await wait_phase(kube, "driver-2", "LoggedOut", within=60)
        assert obj["status"]["statusReason"] == 401
        assert condition(obj, "Ready")["status"] == "False"
        assert [e["type"] for e in await wait_event(kube, "driver-2", "LoggedOut")] == ["Warning"]


async def test_stuck_instance_is_logged_out_once_within_40_seconds() -> None:
    async with environment() as (kube, simulator, _operator):
        simulator.add_instance("driver-3", "connecting")  # stuck: connecting, no code, never progresses
        created_at = loop_now()
        await kube.create(instance_manifest("driver-3"))
        obj = await wait_phase(kube, "driver-3", "Pairing", within=40)
        logouts = requests_to(simulator, "DELETE", "/instance/logout/driver-3")
        assert len(logouts) == 1
        assert loop_now() - created_at <= 40
        assert obj["status"]["forcedLogouts"] == 1
        assert obj["status"]["lastForcedLogoutTime"]
        assert [e["type"] for e in await wait_event(kube, "driver-3", "ForcedLogout")] == ["Warning"]
        assert simulator.instances["driver-3"].pairing_code, "a fresh code was requested after the logout"

        # Pairing with rotating codes for 3 minutes: never logged out.
        await asyncio.sleep(180)
        assert len(requests_to(simulator, "DELETE", "/instance/logout/driver-3")) == 1
        obj = await wait_phase(kube, "driver-3", "Pairing", within=1)
        assert simulator.instances["driver-3"].qr_count >= 4, "codes rotated meanwhile"


async def test_four_stuck_episodes_in_an_hour_give_three_logouts_then_exhaustion() -> None:
    async with environment() as (kube, simulator, _operator):
        obj = await exhaust_remediation(kube, simulator, "driver-4")
        assert condition(obj, "Stuck")["status"] == "True"
        assert obj["status"]["forcedLogouts"] == 3
        assert [e["type"] for e in await wait_event(kube, "driver-4", "RemediationExhausted")] == ["Warning"]
        await asyncio.sleep(600)
        assert len(requests_to(simulator, "DELETE", "/instance/logout/driver-4")) == 3


async def test_evolution_outage_makes_instances_unknown_without_disconnections() -> None:
    async with environment() as (kube, simulator, _operator):
        names = [f"fleet-{i}" for i in range(5)]
        for name in names:
            simulator.add_instance(name, "open")
            await kube.create(instance_manifest(name))
        for name in names:
            await wait_phase(kube, name, "Connected", within=60)

        simulator.add_fault("outage", 300, mode="503")
        outage_end = loop_now() + 300
        async with asyncio.timeout(120):
            server = await kube.wait_for(
                "evolutionservers", "default", lambda o: o is not None and o.get("status", {}).get("breaker") == "Open"
            )
        assert server is not None
        assert condition(server, "Ready")["status"] == "False"
        for name in names:
            obj = await wait_phase(kube, name, "Unknown", within=120)
            assert condition(obj, "Ready")["status"] == "Unknown"
            assert obj["status"]["state"] == "open", "the last known state is kept"
        await asyncio.sleep(max(0.0, outage_end - loop_now()))
        recovery = loop_now()
        for name in names:
            await wait_phase(kube, name, "Connected", within=200)
        # The breaker lets a trial through at most openSeconds (60) after the outage; then one round (30).
        assert loop_now() - recovery <= 60 + 30 + 5
        for name in names:
            assert phases_seen(kube, name) == ["Connected", "Unknown", "Connected"]
            assert not kube.emulator.events(name=name, reason="Disconnected")
            assert not kube.emulator.events(name=name, reason="LoggedOut")


async def test_steady_connected_fleet_writes_nothing() -> None:
    async with environment() as (kube, simulator, _operator):
        names = [f"steady-{i:03d}" for i in range(200)]
        for name in names:
            simulator.add_instance(name, "open")
            await kube.create(instance_manifest(name))
        async with asyncio.timeout(120):
            while sum(
                1
                for name in names
                if (kube.emulator.read("whatsappinstances", name) or {}).get("status", {}).get("phase") == "Connected"
            ) < len(names):
                await kube.emulator.next_change()
        await asyncio.sleep(35)  # let the server's counts settle
        before = kube.emulator.writes(subresource="status")
        probes_before = len(requests_to(simulator, "GET", "/instance/connectionState/"))
        await asyncio.sleep(300)  # ten 30 s probe rounds
        probes = len(requests_to(simulator, "GET", "/instance/connectionState/")) - probes_before
        assert probes >= 200 * 9, "every instance was probed every round"
        assert kube.emulator.writes(subresource="status") == before, "steady state: zero status PATCHes"


async def test_deleting_the_resource_deletes_the_evolution_instance() -> None:
    async with environment() as (kube, simulator, _operator):
        simulator.add_instance("driver-5", "open")
        await kube.create(instance_manifest("driver-5"))
        await wait_phase(kube, "driver-5", "Connected", within=30)
        await kube.delete("whatsappinstances", "driver-5")
        async with asyncio.timeout(30):
            await kube.wait_for("whatsappinstances", "driver-5", lambda o: o is None)
        assert requests_to(simulator, "DELETE", "/instance/delete/driver-5")
        assert "driver-5" not in simulator.instances


async def test_retain_policy_keeps_the_evolution_instance() -> None:
    async with environment() as (kube, simulator, _operator):
        simulator.add_instance("driver-6", "open")
        await kube.create(instance_manifest("driver-6", deletionPolicy="Retain"))
        await wait_phase(kube, "driver-6", "Connected", within=30)
        await kube.delete("whatsappinstances", "driver-6")
        async with asyncio.timeout(30):
            await kube.wait_for("whatsappinstances", "driver-6", lambda o: o is None)
        assert not requests_to(simulator, "DELETE", "/instance/delete/driver-6")
        assert evolution_state(simulator, "driver-6") == "open"


async def test_instance_deleted_behind_the_operators_back_is_recreated() -> None:
    async with environment() as (kube, simulator, _operator):
        simulator.add_instance("driver-7", "open")
        await kube.create(instance_manifest("driver-7"))
        await wait_phase(kube, "driver-7", "Connected", within=30)
        simulator.act("driver-7", "vanish")
        obj = await wait_phase(kube, "driver-7", "Pairing", within=60)
        assert "driver-7" in simulator.instances
        assert len(requests_to(simulator, "POST", "/instance/create")) == 2  # the adoption, then the recreation
        assert await wait_event(kube, "driver-7", "Recreated")
        assert obj["status"]["state"] == "connecting"


async def test_suspend_stops_probing_and_resume_restarts_it() -> None:
    async with environment() as (kube, simulator, _operator):
        simulator.add_instance("driver-8", "open")
        await kube.create(instance_manifest("driver-8"))
        await wait_phase(kube, "driver-8", "Connected", within=30)
        await kube.patch("whatsappinstances", "driver-8", {"spec": {"suspend": True}})
        await wait_phase(kube, "driver-8", "Suspended", within=30)
        probes = len(requests_to(simulator, "GET", "/instance/connectionState/driver-8"))
        await asyncio.sleep(120)
        assert len(requests_to(simulator, "GET", "/instance/connectionState/driver-8")) == probes
        await kube.patch("whatsappinstances", "driver-8", {"spec": {"suspend": False}})
        await wait_phase(kube, "driver-8", "Connected", within=30)


async def test_pair_request_annotation_gets_one_fresh_connect() -> None:
    async with environment() as (kube, simulator, _operator):
        simulator.add_instance("driver-9", "open")
        await kube.create(instance_manifest("driver-9"))
        await wait_phase(kube, "driver-9", "Connected", within=30)
        simulator.act("driver-9", "disconnect", 401)
        await wait_phase(kube, "driver-9", "LoggedOut", within=60)
        await asyncio.sleep(300)
        assert not requests_to(simulator, "GET", "/instance/connect/driver-9"), "no QR cycling for an absent driver"

        annotation = {"whatsapp.evolution-operator.io/pair-requested-at": "2026-11-29T12:00:00Z"}
        await kube.patch("whatsappinstances", "driver-9", {"metadata": {"annotations": annotation}})
        await wait_phase(kube, "driver-9", "Pairing", within=30)
        await asyncio.sleep(120)
        connects = requests_to(simulator, "GET", "/instance/connect/driver-9")
        # One connect starts the pairing; later ones only read the rotating code (no number,
        # which Evolution ignores while connecting anyway) and restart nothing.
        assert connects[0].query == {"number": "5511987654321"}
        assert all(c.query == {} for c in connects[1:])
        assert simulator.instances["driver-9"].qr_count <= 4, "one pairing cycle, not a new one per look"


async def test_a_restarted_operator_takes_up_existing_instances_and_server_ref_changes() -> None:
    """Instances that exist before the operator starts are probed by their server's prober, whatever
    the order kopf starts things in; an instance whose serverRef changes moves to the other prober."""
    async with backends() as (kube, simulator):
        assert simulator.base_url is not None
        await kube.create(server_manifest(simulator.base_url, name="other"))
        names = ("kept", "moved", "unlinked")
        for name in names:
            simulator.add_instance(name, "open")
            await kube.create(instance_manifest(name))
        async with running(operator_runtime(kube)):
            for name in names:
                await wait_phase(kube, name, "Connected", within=30)

        simulator.act("unlinked", "disconnect", 401)  # while no operator runs
        async with running(operator_runtime(kube)) as runtime:
            await wait_phase(kube, "unlinked", "LoggedOut", within=60)
            default, other = runtime.probers[("default", "default")], runtime.probers[("default", "other")]
            assert set(default.tracked) == {("default", name) for name in names}
            assert not other.tracked

            await kube.patch("whatsappinstances", "moved", {"spec": {"serverRef": {"name": "other"}}})
            async with asyncio.timeout(30):
                while ("default", "moved") not in other.tracked:  # noqa: ASYNC110  # the watch event hands it over
                    await asyncio.sleep(0.1)
            assert ("default", "moved") not in default.tracked
            obj = await kube.wait_for(
                "whatsappinstances", "moved", lambda o: o is not None and o["status"].get("server") == "other"
            )
            assert obj is not None
            assert obj["status"]["phase"] == "Connected"


async def test_news_during_a_probe_is_followed_by_one_more_probe_never_a_second_at_once() -> None:
    """Webhooks come while a probe is out (they often follow what the probe itself did). A second
    probe of the same instance at once could log a driver out twice; none at all would miss the news."""
    async with environment(probe={"intervalSeconds": 600}) as (kube, simulator, runtime):
        simulator.add_instance("driver-1", start="open")
        await kube.create(instance_manifest("driver-1"))
        await wait_phase(kube, "driver-1", "Connected", within=30)
        prober = runtime.probers[("default", "default")]
        path = "/instance/connectionState/driver-1"
        before = len(requests_to(simulator, "GET", path))
        simulator.add_fault("latency", 10, ms=1000, path="/instance/connectionState")
        prober.probe_soon(("default", "driver-1"))
        await asyncio.sleep(0.5)  # the probe is out, waiting for its answer
        for _ in range(3):
            prober.probe_soon(("default", "driver-1"))
        await asyncio.sleep(5)
        probes = requests_to(simulator, "GET", path)[before:]
        assert len(probes) == 2, "one probe, then exactly one more for the news that came during it"
        assert probes[1].at - probes[0].at >= 1.0, "the second started after the first had its answer"


async def test_a_status_write_the_api_server_refused_is_made_at_the_next_probe() -> None:
    """Steady probes skip building the status; one whose PATCH failed must not count as written."""
    async with environment() as (kube, simulator, runtime):
        simulator.add_instance("driver-1", start="open")
        await kube.create(instance_manifest("driver-1"))
        await wait_phase(kube, "driver-1", "Connected", within=30)
        patch_status, refused = runtime.kube.patch_status, []

        async def refusing_once(plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
            if plural == "whatsappinstances" and not refused:
                refused.append(status)
                raise KubeError("the server is currently unable to handle the request", status=503)
            await patch_status(plural, namespace, name, status)

        runtime.kube.patch_status = refusing_once  # type: ignore[method-assign]  # the API server's 503
        simulator.act("driver-1", "disconnect", 401)
        obj = await wait_phase(kube, "driver-1", "LoggedOut", within=90)
        assert refused[0]["phase"] == "LoggedOut", "the first write of the change was the refused one"
        assert obj["status"]["statusReason"] == 401


async def test_news_for_an_instance_waiting_for_a_worker_adds_no_probe() -> None:
    """Its probe has not started: it will see the news. Queued twice, it could be probed twice at once."""
    spec = {"probe": {"intervalSeconds": 600, "concurrency": 1}}
    async with environment(**spec) as (kube, simulator, runtime):
        for name in ("driver-a", "driver-b"):
            simulator.add_instance(name, start="open")
            await kube.create(instance_manifest(name))
            await wait_phase(kube, name, "Connected", within=30)
        prober = runtime.probers[("default", "default")]
        path = "/instance/connectionState/driver-b"
        before = len(requests_to(simulator, "GET", path))
        simulator.add_fault("latency", 10, ms=1000, path="/instance/connectionState/driver-a")
        prober.probe_soon(("default", "driver-a"))  # takes the only worker for a second
        await asyncio.sleep(0.1)
        prober.probe_soon(("default", "driver-b"))  # due: waits for the worker
        await asyncio.sleep(0.1)
        for _ in range(3):
            prober.probe_soon(("default", "driver-b"))
            await asyncio.sleep(0.1)
        await asyncio.sleep(5)
        assert len(requests_to(simulator, "GET", path)) - before == 1
