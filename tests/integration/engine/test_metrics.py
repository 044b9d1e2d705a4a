"""The values and label sets of the operator's metrics (docs/observability.md) and the heartbeat counts
of the EvolutionServer's `.status`, scraped from the real operator's /metrics during scripted
scenarios: the simulator, the strict Kubernetes emulator and, where the figures come from Postgres,
embedded Postgres. Under looptime, except the Postgres outage (real time: test_operator_database.py
explains)."""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.metrics import Scrape, scrape
from tests.support.operator_harness import (
    backends,
    environment,
    exhaust_remediation,
    instance_manifest,
    operator_runtime,
    requests_to,
    wait_phase,
)
from tests.support.pg import StoppableDatabase, eventually, execute
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.status import HEALTH
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.manifests import notifier_spec
from whatsapp_operator.devkit.simulator import Simulator
from whatsapp_operator.engine.runner import running
from whatsapp_operator.engine.runtime import Runtime

pytestmark = pytest.mark.looptime

SERVER = "default/default"  # the harness's EvolutionServer, as the `server` label names it
SENDER = "platform-sender"
M = "whatsapp_operator_"


async def agree(read: Callable[[], Awaitable[tuple[Any, Any]]], within: float = 120) -> None:
    """Wait until `read()` gives two equal things; fail showing the last two. Looks every second of
    the loop's clock: a scrape is real I/O, and polling it faster would hold looptime's clock back."""
    deadline = asyncio.get_running_loop().time() + within
    while (last := await read())[0] != last[1] and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(1)  # nothing to wait on: the figures change inside the operator
    assert last[0] == last[1]


async def becomes(read: Callable[[], Awaitable[Any]], expected: Any, within: float = 120) -> None:
    """Wait until `read()` gives `expected`; fail showing what it gave last."""

    async def pair() -> tuple[Any, Any]:
        return await read(), expected

    await agree(pair, within)


def heartbeat_reader(kube: EmulatedCluster) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The EvolutionServer's heartbeat counts, as its `.status` shows them."""

    async def read() -> dict[str, Any]:
        status = (kube.emulator.read("evolutionservers", "default") or {}).get("status", {})
        return {bucket: status.get(bucket) for bucket in HEALTH}

    return read


def health_metric(runtime: Runtime) -> Callable[[], Awaitable[dict[str, float]]]:
    async def read() -> dict[str, float]:
        return (await scrape(runtime)).by(f"{M}instances_health", "health", server=SERVER)

    return read


def phases(**counts: int) -> dict[str, float]:
    """Instances by phase as the gauge has them: every phase, those not named at 0."""
    return {str(phase): float(counts.get(str(phase), 0)) for phase in Phase}


def breaker(metrics: Scrape) -> dict[str, float]:
    return metrics.by(f"{M}breaker_state", "state", server=SERVER)


def assert_every_probe_timed(metrics: Scrape) -> None:
    """One histogram observation per probe, whatever its outcome; only the three outcomes exist."""
    assert metrics.label_values(f"{M}probes_total", "outcome") == {"state", "missing", "failed"}
    probes = metrics.value(f"{M}probes_total", server=SERVER)
    assert metrics.value(f"{M}probe_duration_seconds_count", server=SERVER) == probes
    assert metrics.value(f"{M}probe_duration_seconds_bucket", server=SERVER, le="+Inf") == probes


async def test_the_heartbeat_counts_phases_and_an_outage_moves_everyone_to_unknown_never_unhealthy() -> None:
    async with environment() as (kube, sim, runtime):
        await exhaust_remediation(kube, sim, "carla")  # stuck connecting, no logout left: unhealthy
        for name, start in (("ana", "open"), ("bia", "open"), ("dani", "pairing"), ("eva", "open")):
            sim.add_instance(name, start)
            await kube.create(instance_manifest(name))
        await wait_phase(kube, "bia", "Connected")
        sim.act("bia", "disconnect", 401)
        await wait_phase(kube, "eva", "Connected")
        sim.act("eva", "vanish")  # a 404: the operator recreates it, and it waits for a new pairing
        for name, phase in (("ana", "Connected"), ("bia", "LoggedOut"), ("dani", "Pairing"), ("eva", "Pairing")):
            await wait_phase(kube, name, phase)

        steady = {"healthy": 1, "unhealthy": 2, "unknown": 0, "pairing": 2}
        await becomes(heartbeat_reader(kube), steady)
        await becomes(health_metric(runtime), steady)
        server = kube.emulator.read("evolutionservers", "default")
        assert server is not None
        assert (server["status"]["instances"], server["status"]["connected"]) == (5, 1)
        metrics = await scrape(runtime)
        assert metrics.by(f"{M}instances", "phase", server=SERVER) == phases(
            Connected=1, LoggedOut=1, Connecting=1, Pairing=2
        ), "every phase, 0 included"
        assert breaker(metrics) == {"Closed": 1, "Open": 0, "HalfOpen": 0}
        assert metrics.value(f"{M}remediation_exhausted", server=SERVER) == 1, "carla"
        assert metrics.value(f"{M}forced_logouts_total", server=SERVER) == 3, "carla's three"
        missing = [r for r in requests_to(sim, "GET", "/instance/connectionState/eva") if r.status == 404]
        assert metrics.value(f"{M}probes_total", server=SERVER, outcome="missing") == len(missing) == 1
        assert metrics.value(f"{M}probes_total", server=SERVER, outcome="failed") == 0
        assert_every_probe_timed(metrics)
        probes_before = metrics.value(f"{M}probes_total", server=SERVER)

        sim.add_fault("outage", 300, mode="503")
        outage = {"healthy": 0, "unhealthy": 0, "unknown": 5, "pairing": 0}  # Unknown is never unhealthy
        await becomes(heartbeat_reader(kube), outage)
        await becomes(health_metric(runtime), outage)
        server = kube.emulator.read("evolutionservers", "default")
        assert server is not None
        assert (server["status"]["instances"], server["status"]["breaker"]) == (5, "Open")
        metrics = await scrape(runtime)
        assert metrics.by(f"{M}instances", "phase", server=SERVER) == phases(Unknown=5)
        assert breaker(metrics) == {"Closed": 0, "Open": 1, "HalfOpen": 0}
        assert metrics.value(f"{M}probes_total", server=SERVER, outcome="failed") >= 5, "each instance's"
        assert metrics.value(f"{M}probes_total", server=SERVER) > probes_before
        assert_every_probe_timed(metrics)


async def test_liveness_checks_and_restarts_are_counted_as_the_simulator_saw_them() -> None:
    async with environment(probe={"livenessIntervalSeconds": 60}) as (kube, sim, runtime):
        sim.add_instance("zombie", "open")
        await kube.create(instance_manifest("zombie"))
        await wait_phase(kube, "zombie", "Connected")
        alive_before = len(checks_answered(sim, 200))
        sim.act("zombie", "zombie")
        await wait_phase(kube, "zombie", "Unresponsive", within=180)
        obj = await wait_phase(kube, "zombie", "Connected", within=60)  # healed by its restart
        assert obj["status"]["restarts"] == 1
        checked_before = len(checks_answered(sim))
        await asyncio.sleep(120)  # two intervals: checked again since
        assert len(checks_answered(sim, 200)) > alive_before, "a check after the restart found it alive"
        assert len(checks_answered(sim)) > checked_before

        metrics = await scrape(runtime)
        assert metrics.value(f"{M}restarts_total", server=SERVER) == 1

        async def counted_and_answered() -> tuple[dict[str, float], dict[str, float]]:
            """The checks by result: counted by the operator, and as the simulator answered them (a
            check may be in flight between the two, hence `agree`)."""
            metrics = await scrape(runtime)
            answers = [c.status for c in checks_answered(sim)]
            answered = collections.Counter({200: "alive", 500: "failed"}.get(a, "inconclusive") for a in answers)
            counted = metrics.by(f"{M}liveness_checks_total", "result", server=SERVER)
            return counted, {result: float(answered[result]) for result in counted}

        await agree(counted_and_answered)
        results, _ = await counted_and_answered()
        assert results["failed"] >= 2, "a run of failures made it Unresponsive"
        assert results["alive"] > alive_before, "the checks after the restart"


def checks_answered(sim: Simulator, status: int | None = None) -> list[Any]:
    """The zombie's liveness checks the simulator answered (with `status`, if given)."""
    checks = requests_to(sim, "POST", "/baileys/onWhatsapp/zombie")
    return [c for c in checks if status is None or c.status == status]


async def test_notifications_are_counted_by_result_and_pending_ones_shown(pg_url: str) -> None:
    """A delivery that dies waiting for the sender is `dead` (WhatsAppNotificationsFailing fires for
    it); a refusal is `failed`; each failed attempt before the deadline `retried`."""
    async with backends(notifier=notifier_spec(SENDER)) as (kube, sim):
        sender = sim.add_instance(SENDER, "close")
        runtime = operator_runtime(kube, pg_url, notify_deadline=600)
        async with running(runtime):
            await logged_out(kube, sim, "waits")  # its text waits for the sender, past the deadline
            await becomes(pending(runtime), {"whatsapp": 1, "event": 0, "callback": 0})
            assert (await scrape(runtime)).value(f"{M}sender_ready", server=SERVER) == 0, "the sender is close"
            await asyncio.sleep(900)
            await becomes(pending(runtime), {"whatsapp": 0, "event": 0, "callback": 0})
            metrics = await scrape(runtime)
            assert notified(metrics, "whatsapp") == {"delivered": 0, "retried": 0, "failed": 0, "dead": 1}

            sender.begin("open")
            sim.unregistered.add("5511922220000")
            await logged_out(kube, sim, "no-account", "5511922220000")
            await becomes(lambda: texts(pg_url), {"waits": "dead", "no-account": "failed"})
            # The sender is looked at when a text is due: open since no-account's.
            assert (await scrape(runtime)).value(f"{M}sender_ready", server=SERVER) == 1
            sim.add_fault("errors", None, rate=1, status=503, path="/message/sendText")
            await logged_out(kube, sim, "unlucky", "5511933330000")
            await becomes(lambda: texts(pg_url), {"waits": "dead", "no-account": "failed", "unlucky": "dead"}, 900)
            metrics = await scrape(runtime)

    (unlucky,) = [row for row in await outbox(pg_url) if row["name"] == "unlucky" and row["channel"] == "whatsapp"]
    assert notified(metrics, "whatsapp") == {
        "delivered": 0,
        "retried": unlucky["attempts"] - 1,  # every attempt but the last one, which ended it
        "failed": 1,
        "dead": 2,
    }
    assert unlucky["attempts"] >= 3
    assert notified(metrics, "event") == {"delivered": 3, "retried": 0, "failed": 0, "dead": 0}
    assert sum(notified(metrics, "callback").values()) == 0, "no callback configured"


async def logged_out(kube: EmulatedCluster, sim: Simulator, name: str, number: str = "5511911110000") -> None:
    sim.add_instance(name, "open", number=number)
    await kube.create(instance_manifest(name, phone=f"+{number}"))
    await wait_phase(kube, name, "Connected")
    sim.act(name, "disconnect", 401)
    await wait_phase(kube, name, "LoggedOut")


def pending(runtime: Runtime) -> Callable[[], Awaitable[dict[str, float]]]:
    async def read() -> dict[str, float]:
        return (await scrape(runtime)).by(f"{M}notifications_pending", "channel")

    return read


def notified(metrics: Scrape, channel: str) -> dict[str, float]:
    return metrics.by(f"{M}notifications_total", "result", channel=channel)


async def outbox(url: str) -> list[dict[str, Any]]:
    return await execute(
        url,
        "SELECT n.name, d.channel, d.state, d.attempts FROM whatsapp_operator.notifications n"
        " JOIN whatsapp_operator.notification_deliveries d ON d.notification_id = n.id",
    )


async def texts(url: str) -> dict[str, str]:
    """The state of each driver's text (the whatsapp channel's delivery)."""
    return {row["name"]: row["state"] for row in await outbox(url) if row["channel"] == "whatsapp"}


async def test_the_webhook_queue_depth_and_oldest_age_follow_the_inbox(pg_url: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    async with environment(database_url=pg_url) as (_kube, _sim, runtime):
        # A row in each state of the inbox; the queued one came ten minutes ago and its next attempt is
        # an hour away, so that the worker leaves it queued.
        for key, status, due in (("done", "done", now), ("dead", "dead", now), ("queued", "queued", now + HOUR)):
            await execute(
                pg_url,
                "INSERT INTO whatsapp_operator.webhook_inbox"
                " (dedup_key, event, instance, payload, status, next_attempt_at, received_at)"
                " VALUES (%s, 'connection.update', 'nobody', '{}', %s, %s, %s)",
                (key, status, due, now - datetime.timedelta(minutes=10)),
            )
        await becomes(queue(runtime), ({"queued": 1, "done": 1, "dead": 1}, True))
        await execute(pg_url, "UPDATE whatsapp_operator.webhook_inbox SET status = 'done' WHERE status = 'queued'")
        await becomes(queue(runtime), ({"queued": 0, "done": 2, "dead": 1}, False))
        metrics = await scrape(runtime)
        assert metrics.value(f"{M}webhook_queue_oldest_age_seconds") == 0, "0 when none is queued"


HOUR = datetime.timedelta(hours=1)


def queue(runtime: Runtime) -> Callable[[], Awaitable[tuple[dict[str, float], bool]]]:
    """The queue's depth by state, and whether its oldest queued row is at least 10 minutes old."""

    async def read() -> tuple[dict[str, float], bool]:
        metrics = await scrape(runtime)
        old = metrics.value(f"{M}webhook_queue_oldest_age_seconds") >= 600
        return metrics.by(f"{M}webhook_queue_depth", "state"), old

    return read


@pytest.mark.looptime(False)  # real time: Postgres stops for real (test_operator_database.py explains)
async def test_the_mirror_backlog_and_lag_grow_while_postgres_is_away_and_return_to_zero(
    pg_stoppable: StoppableDatabase,
) -> None:
    fast = {"probe": {"intervalSeconds": 5}}  # the CRD's minimum
    async with environment(database_url=pg_stoppable.url, **fast) as (kube, sim, runtime):
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        await wait_phase(kube, "ana", "Connected", within=30)
        await becomes(mirror(runtime), (0, 0), within=30)

        pg_stoppable.server.stop()
        sim.act("ana", "disconnect", 401)
        await wait_phase(kube, "ana", "LoggedOut", within=30)
        await eventually(lambda: mirror_lag(runtime, above=0), within=30)
        backlog, lag = await mirror(runtime)()
        assert backlog >= 1, "ana's LoggedOut"
        await eventually(lambda: mirror_lag(runtime, above=lag), within=30)  # the oldest write ages

        pg_stoppable.server.start()
        await becomes(mirror(runtime), (0, 0), within=90)  # the mirror retries with backoff up to 30 s


def mirror(runtime: Runtime) -> Callable[[], Awaitable[tuple[float, float]]]:
    async def read() -> tuple[float, float]:
        metrics = await scrape(runtime)
        return metrics.value(f"{M}db_mirror_pending_writes"), metrics.value(f"{M}db_mirror_lag_seconds")

    return read


async def mirror_lag(runtime: Runtime, above: float) -> bool:
    return (await mirror(runtime)())[1] > above
