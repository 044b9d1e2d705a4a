"""Scenarios (fleets, timed events, groups, faults), the admin API, and the simulator at fleet scale."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from whatsapp_operator.devkit.simulator import Scenario, ScenarioError, Simulator

pytestmark = pytest.mark.looptime

KEY = "global-key"
EXAMPLE = Path(__file__).parents[3] / "docs" / "simulator-scenario.yaml"


@contextlib.asynccontextmanager
async def playing(
    scenario: Scenario | dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    if isinstance(scenario, dict):
        scenario = Scenario.from_dict(scenario)
    async with (
        Simulator(KEY, scenario, seed=11) as sim,
        httpx.AsyncClient(base_url=sim.base_url, headers={"apikey": KEY}, timeout=10) as api,
    ):
        yield sim, api


async def state(api: httpx.AsyncClient, name: str) -> str | int:
    """The instance's state, or the HTTP status when there is no state to read."""
    response = await api.get(f"/instance/connectionState/{name}")
    return response.json()["instance"]["state"] if response.status_code == 200 else response.status_code


async def until(seconds: float, sim: Simulator) -> None:
    """Sleep until `seconds` after the simulator's start."""
    await asyncio.sleep(seconds - sim.elapsed())


# ------------------------------------------------------------------------------------------ loading


def test_the_example_scenario_loads() -> None:
    scenario = Scenario.load(EXAMPLE)

    names = [spec.name for spec in scenario.instances]
    assert names[:5] == ["driver-ana", "driver-bruno", "driver-carla", "driver-davi", "driver-eva"]
    assert names[5:] == [f"bulk-{n:05d}" for n in range(1, 51)]
    assert [(e.at, e.action, e.reason) for e in scenario.instances[0].events] == [
        (60, "drop", 428),
        (300, "disconnect", 401),
    ]
    assert [fault.kind for fault in scenario.faults] == ["latency", "outage", "errors", "timeouts", "outage"]


def test_json_scenarios_load_too(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps({"instances": [{"name": "a", "start": "pairing"}]}))

    assert Scenario.load(path).instances[0].start == "pairing"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"instances": [{"name": "a", "start": "sleeping"}]}, "instances[0].start: 'sleeping' is not one of"),
        (
            {"instances": [{"name": "a", "events": [{"at": 1, "action": "explode"}]}]},
            "instances[0].events[0]: unknown action 'explode'",
        ),
        (
            {"instances": [{"name": "a", "events": [{"at": 1, "action": "disconnect", "reason": 428}]}]},
            "instances[0].events[0]: disconnect needs a terminal reason",
        ),
        (
            {"instances": [{"name": "a", "events": [{"at": 1, "action": "drop", "reason": 401}]}]},
            "drop needs a transient reason; 401 is terminal",
        ),
        ({"instances": [{"name": "a", "events": [{"action": "drop"}]}]}, "instances[0].events[0].at: a number"),
        ({"instances": [{"name": "a", "strat": "open"}]}, "instances[0]: unknown field(s) strat"),
        ({"instances": [{"name": "bulk-00002"}], "groups": [{"prefix": "bulk", "count": 3}]}, "used twice"),
        ({"groups": [{"prefix": "bulk", "count": 0}]}, "groups[0].count: a positive integer"),
        ({"faults": [{"from": 5, "to": 10, "kind": "earthquake"}]}, "faults[0]: unknown fault kind 'earthquake'"),
        ({"faults": [{"from": 5, "to": 1, "kind": "errors"}]}, "faults[0]: a fault must end after it starts"),
        ({"faults": [{"kind": "errors", "rate": 2}]}, "faults[0]: rate must be between 0 and 1"),
        ({"faults": [{"kind": "outage", "mode": "fire"}]}, "faults[0]: outage mode must be one of refuse, 503"),
        ({"faults": [{"kind": "latency"}]}, "faults[0]: latency fault needs ms"),
        ({"instancs": []}, "scenario: unknown field(s) instancs"),
    ],
)
def test_invalid_scenarios_say_where_and_why(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=None) as raised:
        Scenario.from_dict(data)

    assert message in str(raised.value)


def test_a_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("instances:\n  - {name: a, start: nowhere}\n")

    with pytest.raises(ScenarioError, match=r"bad\.yaml: instances\[0\]\.start"):
        Scenario.load(path)


# ------------------------------------------------------------------------------------------ playing


async def test_the_example_fleet_evolves_on_schedule() -> None:
    async with playing(Scenario.load(EXAMPLE)) as (sim, api):
        at_start = {name: await state(api, name) for name in ("driver-ana", "driver-bruno", "driver-carla")}
        assert at_start == {"driver-ana": "open", "driver-bruno": "connecting", "driver-carla": "connecting"}
        assert await state(api, "driver-eva") == "close"
        assert await state(api, "bulk-00050") == "open"
        assert sim.instances["driver-bruno"].pairing_code is not None
        assert sim.instances["driver-carla"].pairing_code is None

        await until(61, sim)
        assert await state(api, "driver-ana") == "connecting"
        await until(70, sim)
        assert await state(api, "driver-ana") == "open"

        await until(110, sim)
        assert await state(api, "driver-bruno") == "open"
        await until(125, sim)
        assert await state(api, "driver-davi") == "connecting"

        await until(310, sim)
        assert await state(api, "driver-ana") == "close"
        assert sim.instances["driver-ana"].status_reason == 401

        await until(800, sim)
        assert await state(api, "driver-carla") == "connecting"  # stuck never progresses
        assert await state(api, "driver-davi") == "connecting"
        await until(901, sim)
        assert await state(api, "driver-davi") == 404


async def test_groups_create_numbered_instances_with_shared_events() -> None:
    scenario = {
        "groups": [{"prefix": "bulk", "count": 3, "start": "open", "events": [{"at": 5, "action": "disconnect"}]}]
    }
    async with playing(scenario) as (sim, api):
        before = sorted(sim.instances)
        await until(6, sim)
        after = {name: await state(api, name) for name in before}

    assert before == ["bulk-00001", "bulk-00002", "bulk-00003"]
    assert after == dict.fromkeys(before, "close")


async def test_pre_existing_instances_act_like_api_created_ones() -> None:
    scenario = {"instances": [{"name": "a", "start": "pairing", "number": "5511987654321", "token": "tok-a"}]}
    async with playing(scenario) as (sim, api):
        await until(2, sim)
        qr = (await api.get("/instance/connect/a", headers={"apikey": "tok-a"})).json()
        sim.act("a", "pair")
        await until(10, sim)
        row = (await api.get("/instance/fetchInstances", params={"instanceName": "a"})).json()[0]

    assert qr["count"] == 1
    assert len(qr["pairingCode"]) == 8
    assert (row["connectionStatus"], row["ownerJid"], row["number"]) == (
        "open",
        "5511987654321@s.whatsapp.net",
        "5511987654321",
    )


async def test_a_vanished_instance_answers_404_and_its_event_later_is_skipped() -> None:
    scenario = {"instances": [{"name": "a", "start": "open", "events": [{"at": 5, "action": "vanish"}]}]}
    async with playing(scenario) as (sim, api):
        await until(6, sim)
        gone = await state(api, "a")
        with pytest.raises(KeyError):
            sim.act("a", "drop")

    assert gone == 404


# ------------------------------------------------------------------------------------------ faults


async def test_an_errors_fault_answers_5xx_only_inside_its_window() -> None:
    scenario = {"instances": [{"name": "a", "start": "open"}], "faults": [{"from": 10, "to": 20, "kind": "errors"}]}
    async with playing(scenario) as (sim, api):
        before = await api.get("/instance/connectionState/a")
        await until(15, sim)
        during = await api.get("/instance/connectionState/a")
        admin = await api.get("/_sim/instances/a")
        await until(20, sim)
        after = await api.get("/instance/connectionState/a")

    assert (before.status_code, during.status_code, after.status_code) == (200, 500, 200)
    assert during.json() == {
        "status": 500,
        "error": "Internal Server Error",
        "response": {"message": "Simulated failure"},
    }
    assert admin.status_code == 200
    assert [r.fault for r in sim.requests] == [None, "errors", None]


async def test_an_errors_fault_with_a_rate_fails_about_that_share() -> None:
    async with playing({"instances": [{"name": "a"}]}) as (sim, api):
        sim.add_fault("errors", rate=0.3, status=502)
        statuses = [(await api.get("/instance/connectionState/a")).status_code for _ in range(200)]

    assert set(statuses) == {200, 502}
    assert 40 <= statuses.count(502) <= 80


async def test_a_503_outage_answers_service_unavailable_but_not_the_admin_api() -> None:
    async with playing({"instances": [{"name": "a"}]}) as (sim, api):
        sim.add_fault("outage", duration=30, mode="503")
        during = await api.get("/instance/connectionState/a")
        admin = await api.get("/_sim/instances")
        await asyncio.sleep(30)
        after = await api.get("/instance/connectionState/a")

    assert (during.status_code, admin.status_code, after.status_code) == (503, 200, 200)


async def test_a_refuse_outage_refuses_connections_then_listens_again() -> None:
    scenario = {"instances": [{"name": "a"}], "faults": [{"from": 10, "to": 20, "kind": "outage"}]}
    async with playing(scenario) as (sim, api):
        assert await state(api, "a") == "close"  # leaves a kept-alive connection in the pool
        await until(12, sim)
        with pytest.raises(httpx.TransportError):
            await api.get("/instance/connectionState/a")
        async with httpx.AsyncClient(base_url=sim.base_url, headers={"apikey": KEY}) as fresh:
            with pytest.raises(httpx.ConnectError):
                await fresh.get("/instance/connectionState/a")
        await until(21, sim)
        after = await state(api, "a")

    assert after == "close"


async def test_a_timeouts_fault_hangs_requests_past_the_client_timeout() -> None:
    async with playing({"instances": [{"name": "a"}]}) as (sim, api):
        sim.add_fault("timeouts", duration=60, path="/instance/connectionState")
        with pytest.raises(httpx.ReadTimeout):
            await api.get("/instance/connectionState/a", timeout=5)
        fetched = await api.get("/instance/fetchInstances")

    assert fetched.status_code == 200
    assert [(r.path, r.fault, r.status) for r in sim.requests] == [
        ("/instance/connectionState/a", "timeouts", None),
        ("/instance/fetchInstances", None, 200),
    ]


async def test_a_latency_fault_delays_answers(looptime: float) -> None:
    async with playing({"instances": [{"name": "a"}]}) as (sim, api):
        sim.add_fault("latency", ms=250, jitter_ms=100)
        before = float(looptime)
        await api.get("/instance/connectionState/a")
        took = float(looptime) - before

    assert 0.25 <= took <= 0.35


# ------------------------------------------------------------------------------------------ admin API


async def test_the_admin_api_lists_and_steers_instances() -> None:
    async with playing({"instances": [{"name": "a", "start": "open"}, {"name": "b"}]}) as (_sim, api):
        listed = (await api.get("/_sim/instances", params={"state": "open"})).json()
        dropped = await api.post("/_sim/instances/a/disconnect", json={"reason": 403})
        unknown = await api.post("/_sim/instances/zz/drop")
        bad = await api.post("/_sim/instances/a/explode")
        not_now = await api.post("/_sim/instances/b/pair")

    assert [row["name"] for row in listed] == ["a"]
    assert (dropped.status_code, dropped.json()["state"], dropped.json()["status_reason"]) == (200, "close", 403)
    assert (unknown.status_code, bad.status_code, not_now.status_code) == (404, 400, 409)


async def test_the_admin_api_shows_requests_messages_and_deliveries() -> None:
    async with playing({"instances": [{"name": "a", "start": "open"}]}) as (_sim, api):
        await api.get("/instance/connectionState/a")
        await api.post("/message/sendText/a", json={"number": "5511987654321", "text": "oi"})
        requests = (await api.get("/_sim/requests", params={"instance": "a", "limit": 1})).json()
        messages = (await api.get("/_sim/messages")).json()
        deliveries = (await api.get("/_sim/deliveries")).json()

    assert [(r["method"], r["path"], r["status"]) for r in requests] == [("POST", "/message/sendText/a", 201)]
    assert [(m["instance"], m["text"]) for m in messages] == [("a", "oi")]
    assert deliveries == []


async def test_the_admin_api_injects_and_clears_faults() -> None:
    async with playing({"instances": [{"name": "a"}]}) as (_, api):
        added = await api.post("/_sim/faults", json={"kind": "errors", "status": 503})
        failing = await api.get("/instance/connectionState/a")
        listed = (await api.get("/_sim/faults")).json()
        invalid = await api.post("/_sim/faults", json={"kind": "errors", "rate": "often"})
        await api.delete("/_sim/faults")
        healed = await api.get("/instance/connectionState/a")

    assert added.status_code == 201
    assert (failing.status_code, healed.status_code) == (503, 200)
    assert [(f["kind"], f["status"], f["to"]) for f in listed] == [("errors", 503, None)]
    assert invalid.status_code == 400


async def test_the_admin_api_plays_scenarios_from_now_and_resets() -> None:
    async with playing() as (sim, api):
        await asyncio.sleep(100)
        played = await api.post(
            "/_sim/scenario",
            json={"instances": [{"name": "late", "start": "open", "events": [{"at": 5, "action": "disconnect"}]}]},
        )
        await asyncio.sleep(6)
        closed = await state(api, "late")
        again = await api.post("/_sim/scenario", json={"instances": [{"name": "late"}]})
        await api.post("/_sim/reset")
        after_reset = await state(api, "late")

    assert played.status_code == 201
    assert played.json()[0]["name"] == "late"
    assert closed == "close"
    assert again.status_code == 400
    assert after_reset == 404
    assert sim.requests[-1].path == "/instance/connectionState/late"


# ------------------------------------------------------------------------------------------ scale


async def test_ten_thousand_idle_instances_need_no_tasks() -> None:
    tasks_before = len(asyncio.all_tasks())
    async with playing({"groups": [{"prefix": "bulk", "count": 10_000, "start": "open"}]}) as (sim, api):
        extra_tasks = len(asyncio.all_tasks()) - tasks_before
        rows = (await api.get("/instance/fetchInstances")).json()

    assert len(sim.instances) == 10_000
    assert extra_tasks <= 2  # the listener's, not one per instance
    assert len(rows) == 10_000
