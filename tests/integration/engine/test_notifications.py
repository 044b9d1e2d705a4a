"""Driver notifications end to end: the real operator, the simulator, the strict API emulator and a
real embedded Postgres (looptime, as test_operator_database.py explains), and a callback receiver.

Each notification goes out once per disconnection episode on each channel: a WhatsApp text from the
sender instance (the simulator's sent messages), a DriverNotified Event, a signed callback that the
`standardwebhooks` package verifies. One test runs `whatsapp-operator run` as a process, to SIGKILL it;
another an active/standby pair through kopf's peering, the standby taking over.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import standardwebhooks
from psycopg.rows import dict_row

from tests.support.loop_thread import LoopThread
from tests.support.metrics import scrape
from tests.support.operator_harness import (
    RUN,
    IssuedCodes,
    backends,
    environment,
    instance_manifest,
    operator_runtime,
    outside_a_cluster,
    wait_event,
    wait_instance,
    wait_phase,
)
from tests.support.peering import announced, create_peering, replica, started
from tests.support.pg import StoppableDatabase, eventually, query
from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.cli import main
from whatsapp_operator.core.notifications import DeliveryPolicy
from whatsapp_operator.core.phone import normalize_phone
from whatsapp_operator.core.status import rfc3339
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.manifests import NAMESPACE, SERVER, notifier_spec
from whatsapp_operator.devkit.simulator import Simulator
from whatsapp_operator.devkit.simulator.receiver import WebhookSink
from whatsapp_operator.engine.notifier import NotifierSettings
from whatsapp_operator.engine.runner import running

pytestmark = pytest.mark.looptime

SENDER = "platform-sender"
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"the application's callback secret").decode()
PHONE = "+5511987654321"
FAST = {"probe": {"intervalSeconds": 5}}  # a disconnection is seen within 5 s, in real time


def outbox(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT n.name, n.kind, n.episode, n.decided_at,"
            " d.channel, d.state, d.attempts, d.last_error, d.delivered_at"
            " FROM whatsapp_operator.notifications n JOIN whatsapp_operator.notification_deliveries d"
            " ON d.notification_id = n.id ORDER BY n.id, d.channel"
        ).fetchall()


def texts(sim: Simulator, number: str = PHONE) -> list[Any]:
    return [m for m in sim.messages if m.number == number.lstrip("+")]


async def connected(kube: EmulatedCluster, sim: Simulator, name: str, phone: str = PHONE) -> None:
    sim.add_instance(name, "open", number=normalize_phone(phone).lstrip("+"))
    await kube.create(instance_manifest(name, phone=phone, driverName="Maria Souza"))
    await wait_phase(kube, name, "Connected")


async def logged_out_with_its_text_waiting(kube: EmulatedCluster, sim: Simulator, name: str, url: str) -> None:
    """A connected driver logged out while the sender is `close`: the Event went out, the text waits
    for the sender in the outbox."""
    await connected(kube, sim, name)
    sim.act(name, "disconnect", 401)
    await wait_phase(kube, name, "LoggedOut")
    await eventually(lambda: [(r["channel"], r["state"]) for r in outbox(url)] == WAITING, within=60)


WAITING = [("event", "delivered"), ("whatsapp", "pending")]


async def test_a_logout_notifies_once_on_each_channel(pg_url: str) -> None:
    async with WebhookSink() as sink:
        spec = notifier_spec(SENDER, f"{sink.url}/whatsapp-events")
        async with environment(database_url=pg_url, callback_secret=CALLBACK_SECRET, notifier=spec) as (kube, sim, _):
            sim.add_instance(SENDER, "open")
            await connected(kube, sim, "driver-a")
            sim.act("driver-a", "disconnect", 401)
            await wait_phase(kube, "driver-a", "LoggedOut")
            await eventually(lambda: len(texts(sim)) == 1 and len(sink.posts) == 1, within=60)
            events = await wait_event(kube, "driver-a", "DriverNotified")
            await asyncio.sleep(600)  # ten minutes more: nothing is sent again
            obj = kube.emulator.read("whatsappinstances", "driver-a")

    (text,) = texts(sim)
    assert text.instance == SENDER, "sent by the sender instance, never the driver's own"
    assert "Maria" in text.text
    assert "pareie o WhatsApp novamente" in text.text
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "DriverNotified")]
    assert PHONE.lstrip("+") not in events[0]["message"]
    (post,) = sink.posts
    payload = standardwebhooks.Webhook(CALLBACK_SECRET).verify(post.raw, post.headers)
    assert payload == json.loads(post.raw)
    assert {k: payload[k] for k in ("type", "driverId", "instance", "phase", "reason")} == {
        "type": "whatsapp.logged_out",
        "driverId": "driver-a",
        "instance": "driver-a",
        "phase": "LoggedOut",
        "reason": 401,
    }
    assert post.headers["webhook-id"] == f"notification-{payload['notificationId']}"
    rows = outbox(pg_url)
    assert [(r["channel"], r["state"], r["attempts"]) for r in rows] == [
        ("callback", "delivered", 1),
        ("event", "delivered", 1),
        ("whatsapp", "delivered", 1),
    ]
    assert obj is not None
    status = obj["status"]
    assert status["notifyKind"] == "logged_out"
    assert status["lastNotifiedTime"] >= status["notifyDecisionTime"]
    assert payload["occurredAt"] == status["notifyDecisionTime"], "the callback says when the link broke"


async def test_an_instance_never_connected_is_not_notified_and_a_stuck_one_is_once(pg_url: str) -> None:
    async with WebhookSink() as sink:
        spec = notifier_spec(SENDER, f"{sink.url}/whatsapp-events")
        async with environment(database_url=pg_url, callback_secret=CALLBACK_SECRET, notifier=spec) as (kube, sim, _):
            codes = IssuedCodes(sim)
            sim.add_instance(SENDER, "open")
            sim.add_instance("never", "pairing", number="5511911111111")
            await kube.create(instance_manifest("never", phone="+5511911111111"))
            await wait_phase(kube, "never", "Pairing")
            sim.act("never", "disconnect", 401)
            await wait_phase(kube, "never", "LoggedOut")

            await connected(kube, sim, "stuck")
            sim.act("stuck", "stick")  # connecting without a code: the operator logs it out after 30 s
            await wait_event(kube, "stuck", "ForcedLogout", within=120)
            await wait_phase(kube, "stuck", "Pairing")  # with a fresh code
            await eventually(lambda: len(texts(sim)) == 1 and len(sink.posts) == 1, within=60)
            await asyncio.sleep(600)

    (text,) = texts(sim)
    assert "pareie o WhatsApp novamente" in text.text, "a forced logout ended the session: pair again"
    assert [(r["name"], r["kind"], r["channel"], r["state"]) for r in outbox(pg_url)] == [
        ("stuck", "logged_out", "callback", "delivered"),
        ("stuck", "logged_out", "event", "delivered"),
        ("stuck", "logged_out", "whatsapp", "delivered"),
    ]
    assert [post.body["type"] for post in sink.posts] == ["whatsapp.logged_out"]
    assert not texts(sim, "+5511911111111")
    # Credentials stay out of every channel: the codes the simulator issued (the fresh pairing's too).
    assert codes.pairing_codes("stuck"), "the forced logout ended in a fresh pairing code"
    events = kube.emulator.events(reason="DriverNotified")
    said = [m.text for m in sim.messages] + [e["message"] for e in events] + [p.raw.decode() for p in sink.posts]
    assert len(events) == 1
    assert not [secret for secret in codes.secrets() for words in said if secret in words]


async def test_a_sender_not_connected_delays_the_message_without_losing_or_repeating_it(pg_url: str) -> None:
    async with environment(database_url=pg_url, notifier=notifier_spec(SENDER)) as (kube, sim, _):
        sender = sim.add_instance(SENDER, "close")
        await connected(kube, sim, "driver-b")
        sim.act("driver-b", "disconnect", 401)
        await wait_phase(kube, "driver-b", "LoggedOut")
        await asyncio.sleep(600)  # the sender stays closed for ten minutes
        server = kube.emulator.read("evolutionservers", "default")
        assert server is not None
        (sender_ready,) = [c for c in server["status"]["conditions"] if c["type"] == "SenderReady"]
        assert (sender_ready["status"], sender_ready["reason"]) == ("False", "SenderNotConnected")
        assert not texts(sim)
        assert [r["state"] for r in outbox(pg_url) if r["channel"] == "whatsapp"] == ["pending"]

        sender.begin("open")
        await eventually(lambda: len(texts(sim)) == 1, within=120)
        await asyncio.sleep(300)
        server = kube.emulator.read("evolutionservers", "default")

    assert len(texts(sim)) == 1
    assert server is not None
    (sender_ready,) = [c for c in server["status"]["conditions"] if c["type"] == "SenderReady"]
    assert sender_ready["status"] == "True"
    reasons = [e["reason"] for e in kube.emulator.events(kind="EvolutionServer")]
    assert reasons.count("SenderNotConnected") == 1
    assert reasons.count("SenderConnected") == 1
    (whatsapp,) = [r for r in outbox(pg_url) if r["channel"] == "whatsapp"]
    assert (whatsapp["state"], whatsapp["attempts"]) == ("delivered", 1), "waiting for the sender is no attempt"


async def test_last_notified_time_waits_for_a_channel_to_deliver() -> None:
    async with WebhookSink(default=503) as sink:  # the application does not take the callback
        spec = notifier_spec(SENDER, f"{sink.url}/whatsapp-events")
        async with environment(callback_secret=CALLBACK_SECRET, notifier=spec) as (kube, sim, _):
            refusing = True  # the API server refuses Events for now
            kube.emulator["post", kube.emulator.resource("", "v1", "events")][lambda: refusing] << 503
            sender = sim.add_instance(SENDER, "close")
            await connected(kube, sim, "driver-n")
            sim.act("driver-n", "disconnect", 401)
            await wait_phase(kube, "driver-n", "LoggedOut")
            await eventually(lambda: len(sink.posts) >= 3, within=600)  # the callback was retried
            waiting = kube.emulator.read("whatsappinstances", "driver-n")
            refusing = False
            done = await wait_instance(kube, "driver-n", lambda o: "lastNotifiedTime" in o["status"], within=600)
            sender.begin("open")
            await eventually(lambda: len(texts(sim)) == 1, within=120)

    assert waiting is not None
    assert waiting["status"]["notifyKind"] == "logged_out"
    assert "notifyDecisionTime" in waiting["status"]
    assert "lastNotifiedTime" not in waiting["status"], "decided, but no channel delivered yet"
    assert done["status"]["lastNotifiedTime"] > done["status"]["notifyDecisionTime"], "when the Event went out"
    assert len(kube.emulator.events(name="driver-n", reason="DriverNotified")) == 1


async def test_the_text_goes_to_the_normalised_number_of_a_national_format_spec() -> None:
    async with environment(notifier=notifier_spec(SENDER)) as (kube, sim, _):
        sim.add_instance(SENDER, "open")
        await connected(kube, sim, "driver-p", phone="(11) 98765-4321")  # as docs/phone-numbers.md accepts
        sim.act("driver-p", "disconnect", 401)
        await eventually(lambda: len(sim.messages) == 1, within=120)

    assert [(m.instance, m.number) for m in sim.messages] == [(SENDER, "5511987654321")]


async def test_a_restart_between_the_outbox_row_and_the_delivery_delivers_once(pg_url: str) -> None:
    async with backends(notifier=notifier_spec(SENDER)) as (kube, sim):
        sender = sim.add_instance(SENDER, "close")
        async with running(operator_runtime(kube, pg_url)):
            await logged_out_with_its_text_waiting(kube, sim, "driver-c", pg_url)  # when the operator stops
        sender.begin("open")
        async with running(operator_runtime(kube, pg_url)):
            # The new operator's wall clock starts from real time, minutes behind the first one's
            # fast-forwarded clock, which set the retry: it comes due within that many minutes.
            await eventually(lambda: len(texts(sim)) == 1, within=900)
            await asyncio.sleep(300)

    assert len(texts(sim)) == 1
    assert len(kube.emulator.events(name="driver-c", reason="DriverNotified")) == 1
    assert [(r["channel"], r["state"]) for r in outbox(pg_url)] == [("event", "delivered"), ("whatsapp", "delivered")]


async def test_a_decision_is_re_derived_for_an_instance_seen_after_its_prober_started(pg_url: str) -> None:
    async with backends(notifier=notifier_spec(SENDER)) as (kube, sim):
        sender = sim.add_instance(SENDER, "close")
        async with running(operator_runtime(kube, pg_url)):
            await logged_out_with_its_text_waiting(kube, sim, "driver-l", pg_url)
        # As if the operator had stopped before the row was written: `.status` holds the decision.
        query(pg_url, "DELETE FROM whatsapp_operator.notifications")
        sender.begin("open")
        # The API server refuses the instances' list at first, so the server's prober starts before
        # it has seen the instance (as in a large fleet, whose list comes after the server's).
        refusing = True
        kube.emulator["get", kube.emulator.resource(GROUP, VERSION, "whatsappinstances")][lambda: refusing] << 503
        runtime = operator_runtime(kube, pg_url)
        async with running(runtime):
            await eventually(runtime.serving, within=60)
            assert not runtime.fleet.of_server(NAMESPACE, SERVER), "the prober started before the instance came"
            refusing = False
            await eventually(lambda: len(texts(sim)) == 1, within=600)
            await asyncio.sleep(300)

    assert len(texts(sim)) == 1
    assert len(kube.emulator.events(name="driver-l", reason="DriverNotified")) == 1, "the re-derived Event was there"
    assert [(r["channel"], r["state"]) for r in outbox(pg_url)] == [("event", "delivered"), ("whatsapp", "delivered")]


@pytest.mark.looptime(False)  # real time: Postgres stops for real (test_operator_database.py explains)
async def test_decisions_made_while_postgres_is_down_are_delivered_once_even_across_a_restart(
    pg_stoppable: StoppableDatabase,
) -> None:
    url, other = pg_stoppable.url, "+5521998765432"
    async with backends(notifier=notifier_spec(SENDER), **FAST) as (kube, sim):
        sim.add_instance(SENDER, "open")
        async with running(operator_runtime(kube, url)):
            await connected(kube, sim, "driver-d")
            await connected(kube, sim, "driver-e", phone=other)
            # driver-e: Postgres is down at the decision and comes back while the operator runs.
            await asyncio.to_thread(pg_stoppable.server.stop)
            sim.act("driver-e", "disconnect", 401)
            await wait_phase(kube, "driver-e", "LoggedOut", within=30)
            await asyncio.to_thread(pg_stoppable.server.start)
            await eventually(lambda: len(texts(sim, other)) == 1, within=90)
            # Marked delivered before Postgres stops again: an operator that stops with the mark still
            # queued sends again after the lease (the one exception, docs/notifications.md).
            settled = {("driver-e", "whatsapp", "delivered"), ("driver-e", "event", "delivered")}
            await eventually(lambda: {(r["name"], r["channel"], r["state"]) for r in outbox(url)} == settled, within=30)
            # driver-d: Postgres is down at the decision, and the operator stops before it is back.
            await asyncio.to_thread(pg_stoppable.server.stop)
            sim.act("driver-d", "disconnect", 401)
            obj = await wait_phase(kube, "driver-d", "LoggedOut", within=30)
            assert obj["status"]["notifyKind"] == "logged_out", "the decision is in .status"
        # The operator stopped with driver-d's outbox row still queued in memory, and lost it.
        assert not texts(sim)
        await asyncio.to_thread(pg_stoppable.server.start)
        async with running(operator_runtime(kube, url)):
            await eventually(lambda: len(texts(sim)) == 1, within=60)
            # A delivery the first run claimed but could not settle comes back when its 2 min lease ends,
            # counted on this run's clock, which starts behind the first run's fast-forwarded one.
            await eventually(lambda: {r["state"] for r in outbox(url)} == {"delivered"}, within=600)
            await asyncio.sleep(5)

    assert len(texts(sim)) == 1
    assert len(texts(sim, other)) == 1, "driver-e's decision was re-derived at the restart, and not sent again"
    for name in ("driver-d", "driver-e"):
        assert len(kube.emulator.events(name=name, reason="DriverNotified")) == 1
    assert [(r["name"], r["channel"], r["state"]) for r in outbox(url)] == [
        ("driver-e", "event", "delivered"),
        ("driver-e", "whatsapp", "delivered"),
        ("driver-d", "event", "delivered"),
        ("driver-d", "whatsapp", "delivered"),
    ]


async def test_outages_drops_pairing_and_flaps_within_the_cooldown_notify_once(pg_url: str) -> None:
    async with environment(database_url=pg_url, notifier=notifier_spec(SENDER)) as (kube, sim, _):
        sim.add_instance(SENDER, "open")
        sim.add_instance("pairing", "pairing", number="5511922222222")
        await kube.create(instance_manifest("pairing", phone="+5511922222222"))
        await connected(kube, sim, "flappy")
        sim.add_fault("outage", 120, mode="503")
        await asyncio.sleep(300)  # Unknown for the outage, then Connected again
        await wait_phase(kube, "flappy", "Connected")
        for reason in (428, 440, 515):  # transient: Evolution reconnects by itself
            sim.act("flappy", "drop", reason)
            await asyncio.sleep(60)
            await wait_phase(kube, "flappy", "Connected")
        sim.act("pairing", "pair")
        await wait_phase(kube, "pairing", "Connected")
        flapper = sim.instances["flappy"]
        for _ in range(10):  # ten terminal disconnects within the 30 min cooldown, each reconnected
            sim.act("flappy", "disconnect", 401)
            await wait_phase(kube, "flappy", "LoggedOut")
            flapper.begin("open")
            await wait_phase(kube, "flappy", "Connected")
        await asyncio.sleep(300)

    assert len(texts(sim)) == 1, "one message: the first flap's; the cooldown holds back the nine others"
    assert not texts(sim, "+5511922222222")
    assert len(kube.emulator.events(name="flappy", reason="DriverNotified")) == 1
    assert [(r["name"], r["channel"], r["state"]) for r in outbox(pg_url)] == [
        ("flappy", "event", "delivered"),
        ("flappy", "whatsapp", "delivered"),
    ]


async def test_without_a_database_the_configmaps_texts_go_once_and_a_bad_one_is_reported() -> None:
    spec = notifier_spec(SENDER) | {"messagesConfigMapRef": {"name": "driver-texts"}}
    texts_map = {"logged_out": "{greeting} entre no app e conecte o WhatsApp de novo.", "disconnected": "{code}"}
    async with environment(notifier=spec) as (kube, sim, runtime):
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "driver-texts"}, "data": texts_map}
        await kube.create(configmap)
        sim.add_instance(SENDER, "open")
        await connected(kube, sim, "driver-f")
        sim.act("driver-f", "disconnect", 401)
        await wait_phase(kube, "driver-f", "LoggedOut")
        await eventually(lambda: len(texts(sim)) == 1, within=60)
        await asyncio.sleep(600)
        assert runtime.memory_outbox is not None
        outbox_rows = runtime.memory_outbox.listing()

    (text,) = texts(sim)
    assert text.text == "Olá, Maria, entre no app e conecte o WhatsApp de novo."
    (invalid,) = kube.emulator.events(kind="EvolutionServer", reason="MessagesInvalid")
    assert "'disconnected' is not a valid template" in invalid["message"]
    delivered = sorted((r["channel"], r["state"]) for r in outbox_rows)
    assert delivered == [("event", "delivered"), ("whatsapp", "delivered")]
    assert len(kube.emulator.events(name="driver-f", reason="DriverNotified")) == 1


async def test_a_server_that_asks_for_it_tells_the_driver_once_that_the_link_is_back(pg_url: str) -> None:
    spec = notifier_spec(SENDER) | {"reconnected": True}
    async with environment(database_url=pg_url, notifier=spec) as (kube, sim, _):
        sim.add_instance(SENDER, "open")
        await connected(kube, sim, "driver-h")
        sim.act("driver-h", "disconnect", 401)
        await wait_phase(kube, "driver-h", "LoggedOut")
        await eventually(lambda: len(texts(sim)) == 1, within=60)
        sim.instances["driver-h"].begin("open")
        await wait_phase(kube, "driver-h", "Connected")
        await eventually(lambda: len(texts(sim)) == 2, within=60)
        await asyncio.sleep(600)

    back = "Olá, Maria, o WhatsApp do seu app de motorista está conectado de novo. Boas corridas!"
    assert [t.text for t in texts(sim)][1] == back
    events = kube.emulator.events(name="driver-h", reason="DriverNotified")
    assert [e["type"] for e in events] == ["Warning", "Normal"]
    assert [(r["kind"], r["channel"], r["state"]) for r in outbox(pg_url)] == [
        ("logged_out", "event", "delivered"),
        ("logged_out", "whatsapp", "delivered"),
        ("reconnected", "event", "delivered"),
        ("reconnected", "whatsapp", "delivered"),
    ]


async def test_a_reconnected_message_rebuilt_at_a_restart_keeps_the_time_it_was_decided(pg_url: str) -> None:
    async with backends(notifier=notifier_spec(SENDER) | {"reconnected": True}) as (kube, sim):
        sim.add_instance(SENDER, "open")
        async with running(operator_runtime(kube, pg_url)):
            await connected(kube, sim, "driver-r")
            sim.act("driver-r", "disconnect", 401)
            await wait_phase(kube, "driver-r", "LoggedOut")
            await asyncio.sleep(120)
            sim.instances["driver-r"].begin("open")
            await eventually(lambda: len(texts(sim)) == 2, within=120)
        # As if the operator had stopped before the "reconnected" row was written: `.status` holds it.
        query(pg_url, "DELETE FROM whatsapp_operator.notifications WHERE kind = 'reconnected'")
        async with running(operator_runtime(kube, pg_url)):
            await eventually(lambda: [r["kind"] for r in outbox(pg_url)].count("reconnected") == 2, within=60)
        obj = kube.emulator.read("whatsappinstances", "driver-r")

    assert obj is not None
    status = obj["status"]
    (decided,) = {rfc3339(r["decided_at"]) for r in outbox(pg_url) if r["kind"] == "reconnected"}
    assert decided == status["lastConnectedTime"], "when the link came back"
    assert decided != status["notifyDecisionTime"], "not the disconnection's time"


async def test_a_number_not_on_whatsapp_fails_at_once_and_a_dead_text_is_sent_once_when_replayed(pg_url: str) -> None:
    async with backends(notifier=notifier_spec(SENDER)) as (kube, sim):
        sim.add_instance(SENDER, "open")
        async with running(operator_runtime(kube, pg_url, notify_deadline=600)):
            sim.unregistered.add("5511911112222")
            await connected(kube, sim, "no-account", phone="+5511911112222")
            await connected(kube, sim, "unlucky", phone="+5511933334444")
            sim.act("no-account", "disconnect", 401)
            await eventually(lambda: ("no-account", "whatsapp", "failed") in states(pg_url), within=60)
            sim.add_fault("errors", None, rate=1, status=503, path="/message/sendText")
            sim.act("unlucky", "disconnect", 401)
            await asyncio.sleep(900)  # past the 10-minute deadline
            rows = {(r["name"], r["channel"]): r for r in outbox(pg_url)}
            # Evolution is back: the operator's people replay the dead text, the running operator sends it.
            sim.clear_faults()
            replay = ["notifications", "--database-url", pg_url, "replay", "--all-dead"]
            assert await asyncio.to_thread(main, replay) == 0
            await eventually(lambda: len(texts(sim, "+5511933334444")) == 1, within=60)
            await asyncio.sleep(300)

    assert len(texts(sim, "+5511933334444")) == 1, "the replayed text is sent once"
    assert states(pg_url) == {
        ("no-account", "event", "delivered"),
        ("no-account", "whatsapp", "failed"),  # refused for good: not replayed
        ("unlucky", "event", "delivered"),
        ("unlucky", "whatsapp", "delivered"),
    }
    failed, dead = rows["no-account", "whatsapp"], rows["unlucky", "whatsapp"]
    assert (failed["state"], failed["attempts"], failed["last_error"]) == (
        "failed",
        1,
        "the driver's number is not on WhatsApp",
    )
    assert dead["state"] == "dead"
    assert dead["attempts"] >= 4, "retried with backoff until the deadline"
    assert dead["last_error"].startswith("sendText: ")
    assert rows["unlucky", "event"]["state"] == "delivered", "the other channels are not held back"


@contextlib.asynccontextmanager
async def operator_process(kube: EmulatedCluster, database_url: str, log: Path) -> AsyncIterator[None]:
    """`whatsapp-operator run` in a process of its own, SIGKILLed when the block ends: no cleanup
    handler runs, so what it held only in memory (the mirror's queue) is lost as in a crash."""
    command = [*RUN, "--kube-server", kube.url, "--database-url", database_url]
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(*command, env=outside_a_cluster(), stdout=output, stderr=output)
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


@pytest.mark.looptime(False)  # real time: a real process, and Postgres stops for real
async def test_an_operator_killed_before_the_outbox_row_and_after_it_delivers_once(
    pg_stoppable: StoppableDatabase, tmp_path: Path
) -> None:
    url, log, other = pg_stoppable.url, tmp_path / "operator.log", "+5521998765432"
    async with (
        WebhookSink() as sink,
        backends(
            CALLBACK_SECRET, notifier=notifier_spec(SENDER, f"{sink.url}/whatsapp-events"), **FAST
        ) as (kube, sim),
    ):
        sim.add_instance(SENDER, "open")
        async with operator_process(kube, url, log):
            await connected(kube, sim, "driver-m")
            await connected(kube, sim, "driver-k", phone=other)
            # driver-m: its row is written, its Event and callback delivered; the text waits for the sender.
            sim.act(SENDER, "disconnect", 401)
            sim.act("driver-m", "disconnect", 401)
            waiting = {("callback", "delivered"), ("event", "delivered"), ("whatsapp", "pending")}
            await eventually(lambda: {(r["channel"], r["state"]) for r in outbox(url)} == waiting, within=30)
            # driver-k: decided while Postgres is down, so its row is only in the mirror's queue.
            await asyncio.to_thread(pg_stoppable.server.stop)
            sim.act("driver-k", "disconnect", 401)
            obj = await wait_phase(kube, "driver-k", "LoggedOut", within=30)
            assert obj["status"]["notifyKind"] == "logged_out", "the decision is in .status"
        await asyncio.to_thread(pg_stoppable.server.start)
        assert not sim.messages
        async with operator_process(kube, url, log):
            await eventually(lambda: len(outbox(url)) == 6 and len(sink.posts) == 2, within=30)
            sim.instances[SENDER].begin("open")
            await eventually(lambda: {r["state"] for r in outbox(url)} == {"delivered"}, within=45)
            await asyncio.sleep(3)

    assert "Traceback" not in log.read_text(), log.read_text()
    assert len(texts(sim)) == len(texts(sim, other)) == 1
    assert sorted(post.body["instance"] for post in sink.posts) == ["driver-k", "driver-m"]
    for name in ("driver-k", "driver-m"):
        assert len(kube.emulator.events(name=name, reason="DriverNotified")) == 1
    assert sorted((r["name"], r["channel"]) for r in outbox(url)) == [
        (name, channel) for name in ("driver-k", "driver-m") for channel in ("callback", "event", "whatsapp")
    ]


def states(url: str) -> set[tuple[str, str, str]]:
    return {(r["name"], r["channel"], r["state"]) for r in outbox(url)}


async def test_without_a_database_a_restarted_operators_event_is_not_taken_for_an_earlier_one() -> None:
    async with backends(notifier=notifier_spec(SENDER)) as (kube, sim):
        sim.add_instance(SENDER, "open")
        async with running(operator_runtime(kube, notify_cooldown=60)):
            await connected(kube, sim, "driver-g")
            sim.act("driver-g", "disconnect", 401)
            await wait_event(kube, "driver-g", "DriverNotified", within=60)
        async with running(operator_runtime(kube, notify_cooldown=60)):
            # This run's clock starts from real time, behind the first run's fast-forwarded one: let
            # it pass the first run's decision before the driver's next episode.
            await asyncio.sleep(600)
            sim.instances["driver-g"].begin("open")
            await wait_phase(kube, "driver-g", "Connected")
            sim.act("driver-g", "disconnect", 401)
            await eventually(lambda: len(texts(sim)) == 2, within=60)
            await asyncio.sleep(60)

    # One Event per episode, each named after its own (`event_name`), whatever a restart did to ids.
    assert len(kube.emulator.events(name="driver-g", reason="DriverNotified")) == 2


@pytest.mark.looptime(False)  # real time: the standby runs on an event loop of its own (tests/support/peering.py)
async def test_a_standby_taking_over_delivers_the_waiting_text_once(pg_url: str) -> None:
    async with (
        WebhookSink() as sink,
        backends(CALLBACK_SECRET, notifier=notifier_spec(SENDER, f"{sink.url}/whatsapp-events"), **FAST) as (kube, sim),
    ):
        await create_peering(kube)
        sender = sim.add_instance(SENDER, "close")
        standby = replica(kube, priority=0, database_url=pg_url)
        standby.notifier_settings = SENDER_LOOKS
        thread: LoopThread | None = None
        try:
            active = replica(kube, priority=100, database_url=pg_url)
            active.notifier_settings = SENDER_LOOKS
            async with running(active):
                await connected(kube, sim, "driver-s")
                thread = await started(standby)
                await announced(kube, replicas=2)
                sim.act("driver-s", "disconnect", 401)
                await wait_phase(kube, "driver-s", "LoggedOut", within=30)
                # The Event and the callback go out; the text waits for the sender (the active looked).
                await eventually(lambda: states(pg_url) == WAITING_FOR_SENDER and sender_looked_at(pg_url), within=30)
                by_active, by_standby = await scrape(active), await scrape(standby)
            # The active replica left the peering as it stopped: the standby takes over, re-derives the
            # decision from `.status` (a no-op: the row exists) and takes the pending text.
            sender.begin("open")
            await eventually(lambda: len(texts(sim)) == 1, within=90)
            await asyncio.sleep(3)  # nothing more comes
            after = await scrape(standby)
        finally:
            if thread is not None:
                await thread.stop_async()

    (text,) = texts(sim)
    assert text.instance == SENDER
    assert len(kube.emulator.events(name="driver-s", reason="DriverNotified")) == 1
    (post,) = sink.posts
    assert standardwebhooks.Webhook(CALLBACK_SECRET).verify(post.raw, post.headers)["instance"] == "driver-s"
    assert [(r["channel"], r["state"], r["attempts"]) for r in outbox(pg_url)] == [
        ("callback", "delivered", 1),
        ("event", "delivered", 1),
        ("whatsapp", "delivered", 1),
    ], "one notification, one row per channel"
    total = f"{PREFIX}_notifications_total"
    # The standby neither attempted a delivery nor looked at the outbox while it stood by.
    assert by_standby.value(total) == by_standby.value(f"{PREFIX}_notifications_pending") == 0
    assert by_active.by(total, "channel", result="delivered") == {"callback": 1, "event": 1, "whatsapp": 0}
    assert after.by(total, "channel", result="delivered") == {"callback": 0, "event": 0, "whatsapp": 1}


WAITING_FOR_SENDER = {
    ("driver-s", "callback", "delivered"),
    ("driver-s", "event", "delivered"),
    ("driver-s", "whatsapp", "pending"),
}
PREFIX = "whatsapp_operator"
# A sender not open is looked at again every 2 s, not 30: real time, here.
SENDER_LOOKS = NotifierSettings(policy=DeliveryPolicy(wait=datetime.timedelta(seconds=2)))


def sender_looked_at(url: str) -> bool:
    """The notifier found the sender not open (a look, not an attempt): the text waits."""
    return any(r["channel"] == "whatsapp" and r["last_error"] for r in outbox(url))
