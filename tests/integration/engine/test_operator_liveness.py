"""Liveness checks end to end (docs/liveness.md): the real operator, the simulator's zombies and its
fleet-wide liveness fault, every clock fast-forwarded by looptime."""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Any

import pytest

from tests.support.operator_harness import (
    condition,
    environment,
    instance_manifest,
    loop_now,
    phases_seen,
    requests_to,
    wait_event,
    wait_instance,
    wait_phase,
)
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.simulator import Simulator

pytestmark = pytest.mark.looptime

INTERVAL = 60  # spec.probe.livenessIntervalSeconds in these tests; probes every 30 s (the default)
CHECKS = "/baileys/onWhatsapp/"


async def connected_fleet(kube: EmulatedCluster, sim: Simulator, names: list[str]) -> None:
    for name in names:
        sim.add_instance(name, "open")
        await kube.create(instance_manifest(name))
    async with asyncio.timeout(300):
        while any(
            (kube.emulator.read("whatsappinstances", name) or {}).get("status", {}).get("phase") != "Connected"
            for name in names
        ):
            await kube.emulator.next_change()


def checks_of(sim: Simulator, name: str) -> list[Any]:
    return requests_to(sim, "POST", f"{CHECKS}{name}")


async def test_a_zombie_is_unresponsive_within_two_intervals_and_one_restart_heals_it() -> None:
    async with environment(probe={"livenessIntervalSeconds": INTERVAL}) as (kube, sim, _operator):
        await connected_fleet(kube, sim, ["zombie-1"])
        sim.act("zombie-1", "zombie")
        became = loop_now()
        obj = await wait_phase(kube, "zombie-1", "Unresponsive", within=3 * INTERVAL)
        assert loop_now() - became <= 2 * INTERVAL + 1
        assert obj["status"]["state"] == "open", "Evolution still says open"
        assert condition(obj, "Live")["status"] == "False"
        assert condition(obj, "Ready")["status"] == "False"

        obj = await wait_phase(kube, "zombie-1", "Connected", within=60)
        assert condition(obj, "Live")["status"] == "True"
        assert obj["status"]["restarts"] == 1
        assert len(requests_to(sim, "POST", "/instance/restart/zombie-1")) == 1
        assert not requests_to(sim, "DELETE", "/instance/logout/"), "the restart healed it: no forced logout"
        assert [e["reason"] for e in await wait_event(kube, "zombie-1", "Restarted")] == ["Restarted"]
        (notified,) = await wait_event(kube, "zombie-1", "DriverNotified")
        assert "zombie-1" in notified["involvedObject"]["name"]
        assert phases_seen(kube, "zombie-1")[:2] == ["Connected", "Unresponsive"]
        assert phases_seen(kube, "zombie-1")[-1] == "Connected"


async def test_a_zombie_a_restart_does_not_heal_gets_one_forced_logout_and_one_notification() -> None:
    async with environment(probe={"livenessIntervalSeconds": INTERVAL}) as (kube, sim, _operator):
        await connected_fleet(kube, sim, ["zombie-2"])
        sim.act("zombie-2", "zombie", heals=False)
        await wait_phase(kube, "zombie-2", "Unresponsive", within=3 * INTERVAL)
        obj = await wait_phase(kube, "zombie-2", "Pairing", within=3 * INTERVAL)
        assert obj["status"]["restarts"] == 1
        assert obj["status"]["forcedLogouts"] == 1
        assert len(requests_to(sim, "POST", "/instance/restart/zombie-2")) == 1
        assert len(requests_to(sim, "DELETE", "/instance/logout/zombie-2")) == 1
        assert condition(obj, "Live")["status"] == "Unknown", "the forced logout ended the episode"
        await asyncio.sleep(3 * INTERVAL)  # no further remedy while the driver has not paired again
        assert len(requests_to(sim, "DELETE", "/instance/logout/zombie-2")) == 1
        assert len(kube.emulator.events(name="zombie-2", reason="DriverNotified")) == 1, "one per episode"


async def test_a_fleet_wide_liveness_fault_changes_no_phase_restarts_and_notifies_nobody() -> None:
    async with environment(probe={"livenessIntervalSeconds": INTERVAL}) as (kube, sim, _operator):
        names = [f"fleet-{i:03d}" for i in range(200)]
        await connected_fleet(kube, sim, names)
        await asyncio.sleep(INTERVAL)  # every instance checked once: the guard knows a healthy fleet
        sim.add_fault("liveness", duration=4 * INTERVAL)
        server = None
        async with asyncio.timeout(3 * INTERVAL):
            while server is None or not any(
                c["type"] == "InstancesLive" for c in server.get("status", {}).get("conditions", [])
            ):
                await kube.emulator.next_change()
                server = kube.emulator.read("evolutionservers", "default")
        assert condition(server, "InstancesLive")["status"] == "False"
        assert condition(server, "InstancesLive")["reason"] == "FleetWideLivenessFailure"
        await asyncio.sleep(4 * INTERVAL)  # the fault's whole length: every instance failed several checks
        failed = [r for r in requests_to(sim, "POST", CHECKS) if r.status == 500]
        assert len({r.instance for r in failed}) == len(names), "every instance's checks failed"
        for name in names:
            assert phases_seen(kube, name) == ["Connected"], name
        assert not requests_to(sim, "POST", "/instance/restart/")
        assert not requests_to(sim, "DELETE", "/instance/logout/")
        assert not kube.emulator.events(reason="DriverNotified")
        assert not kube.emulator.events(reason="Unresponsive")
        events = kube.emulator.events(name="default", reason="FleetWideLivenessFailure")
        assert [e["type"] for e in events] == ["Warning"]

        server = await kube.wait_for(
            "evolutionservers",
            "default",
            lambda o: o is not None and condition(o, "InstancesLive")["status"] == "True",
        )
        assert server is not None, "the guard lets go once the checks answer again"


async def test_a_healthy_fleet_gets_one_check_per_instance_per_interval_and_no_writes() -> None:
    async with environment(probe={"livenessIntervalSeconds": INTERVAL}) as (kube, sim, _operator):
        names = [f"healthy-{i:04d}" for i in range(1000)]
        await connected_fleet(kube, sim, names)
        await asyncio.sleep(2 * INTERVAL)  # past the jittered first checks, the owners' JIDs fetched
        writes = kube.emulator.writes(subresource="status")
        start = sim.elapsed()
        await asyncio.sleep(3 * INTERVAL)
        end = sim.elapsed()
        checks = [r for r in requests_to(sim, "POST", CHECKS) if start <= r.at < end]
        assert {r.status for r in checks} == {200}
        per_instance = collections.Counter(r.instance for r in checks)
        assert set(per_instance) == set(names)
        assert set(per_instance.values()) == {3}, "exactly one check per instance per interval"
        times: dict[str, list[float]] = collections.defaultdict(list)
        for r in checks:
            times[r.instance].append(r.at)
        gaps = [b - a for at in times.values() for a, b in itertools.pairwise(at)]
        assert min(gaps) >= INTERVAL - 0.5
        assert max(gaps) <= INTERVAL + 0.5
        assert kube.emulator.writes(subresource="status") == writes, "no status write"
        assert not requests_to(sim, "POST", "/instance/restart/")


async def test_liveness_interval_zero_turns_the_checks_off() -> None:
    async with environment(probe={"livenessIntervalSeconds": 0}) as (kube, sim, _operator):
        await connected_fleet(kube, sim, ["zombie-3"])
        sim.act("zombie-3", "zombie")
        await asyncio.sleep(10 * 30)
        assert not requests_to(sim, "POST", CHECKS)
        obj = await wait_instance(kube, "zombie-3", lambda o: True)
        assert obj["status"]["phase"] == "Connected", "Evolution's word is all there is"
