"""Webhooks through the real operator: Evolution's events reach the receiver, are stored, processed,
and pull the instance's next probe forward, so a change lands long before the next tick.

Real time, with a real Postgres (the receiver stores before it answers, which looptime cannot wait
for), and a probe interval of ten minutes: whatever the tests see within their timeouts came by webhook.
"""

from __future__ import annotations

from typing import Any

from tests.support.operator_harness import WEBHOOK_SECRET, environment, instance_manifest, wait_instance, wait_phase
from tests.support.pg import eventually, query
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.simulator import Simulator
from whatsapp_operator.engine.probe import WEBHOOK_EVENTS
from whatsapp_operator.evolution.models import WebhookSettings

INTERVAL = 600  # no probe tick within any test: changes arrive by webhook or not at all
WITHIN = 30  # seconds: generous for a loaded CI machine, and far below the interval


def inbox(url: str, instance: str) -> list[dict[str, Any]]:
    return query(url, "SELECT * FROM whatsapp_operator.webhook_inbox WHERE instance = %s ORDER BY id", (instance,))


async def connected(kube: EmulatedCluster, sim: Simulator, name: str) -> None:
    """Created, shown its first code, paired by the driver: Connected by the `open` webhook."""
    await kube.create(instance_manifest(name))
    await wait_phase(kube, name, "Pairing", within=WITHIN)
    sim.act(name, "pair")
    await wait_phase(kube, name, "Connected", within=WITHIN)


async def test_a_disconnection_lands_by_webhook_in_status_and_database(pg_url: str) -> None:
    query(pg_url, "INSERT INTO usuarios (id, nome) VALUES ('maria', 'Maria')")
    spec = {"probe": {"intervalSeconds": INTERVAL}}
    async with environment(database_url=pg_url, webhooks=True, **spec) as (kube, sim, _):
        await connected(kube, sim, "maria")
        sim.act("maria", "disconnect", 401)
        obj = await wait_phase(kube, "maria", "LoggedOut", within=WITHIN)
        assert obj["status"]["statusReason"] == 401
        disconnected = [{"whatsapp_status": "disconnected"}]
        await eventually(lambda: query(pg_url, "SELECT whatsapp_status FROM usuarios") == disconnected, within=WITHIN)

        # Every event the simulator delivered was stored once, signed by the shared secret, and processed.
        await eventually(lambda: all(row["status"] == "done" for row in inbox(pg_url, "maria")), within=WITHIN)
        rows = inbox(pg_url, "maria")
        delivered = [d for d in sim.deliveries if d.instance == "maria" and d.ok]
        assert len(rows) == len({(d.event, d.payload["date_time"], str(d.payload["data"])) for d in delivered})
        events = {"connection.update", "qrcode.updated", "status.instance", "logout.instance"}
        assert {row["event"] for row in rows} == events
        results = {"probed soon: default/maria", "looked at closely: default/maria"}
        assert {row["result"] for row in rows} == results
        assert {row["attempts"] for row in rows} == {1}
        assert all(d.status == 200 for d in sim.deliveries)  # nothing refused, nothing retried


async def test_an_instance_created_before_the_operator_gets_its_webhook(pg_url: str) -> None:
    """Adopted instances (created by hand, or under another webhook URL) are pointed at our receiver."""
    query(pg_url, "INSERT INTO usuarios (id, nome) VALUES ('joao', 'João')")
    spec = {"probe": {"intervalSeconds": INTERVAL}}
    async with environment(database_url=pg_url, webhooks=True, **spec) as (kube, sim, runtime):
        sim.add_instance("joao", start="open", webhook={"url": "http://elsewhere.invalid/hook", "events": []})
        await kube.create(instance_manifest("joao"))
        await wait_phase(kube, "joao", "Connected", within=WITHIN)
        prober = runtime.probers[("default", "default")]
        stored = WebhookSettings.from_stored(sim.instances["joao"].webhook.row("id"))
        assert stored == WebhookSettings(
            url=prober.spec.webhook_url or "", events=WEBHOOK_EVENTS, headers={"jwt_key": WEBHOOK_SECRET}
        )
        sim.act("joao", "disconnect", 403)
        obj = await wait_phase(kube, "joao", "LoggedOut", within=WITHIN)
        assert obj["status"]["statusReason"] == 403


async def test_events_about_unmanaged_instances_are_stored_and_ignored(pg_url: str) -> None:
    """The notifier's sender instance, or another application's, lives on the same Evolution: its
    events are taken (Evolution would retry a refusal for 20 minutes) and change nothing."""
    spec = {"probe": {"intervalSeconds": INTERVAL}}
    async with environment(database_url=pg_url, webhooks=True, **spec) as (kube, sim, runtime):
        assert runtime.http is not None
        assert runtime.http.url is not None
        hook = {
            "url": f"{runtime.http.url}/webhooks/evolution",
            "events": list(WEBHOOK_EVENTS),
            "headers": {"jwt_key": WEBHOOK_SECRET},
        }
        sim.add_instance("sender", start="open", webhook=hook)
        sim.act("sender", "disconnect", 401)
        await eventually(lambda: {row["status"] for row in inbox(pg_url, "sender")} == {"done"}, within=WITHIN)
        rows = inbox(pg_url, "sender")
        assert {row["result"] for row in rows} == {"ignored: no WhatsAppInstance uses Evolution instance 'sender'"}
        assert await kube.list("whatsappinstances") == []


async def test_the_qr_limit_webhook_leaves_reason_428_in_status_history_and_no_code(pg_url: str) -> None:
    """Evolution's API says `close` without a reason after the QR limit: only its `refused` webhook says 428."""
    query(pg_url, "INSERT INTO usuarios (id, nome) VALUES ('rita', 'Rita')")
    spec = {"probe": {"intervalSeconds": INTERVAL}}
    async with environment(database_url=pg_url, webhooks=True, **spec) as (kube, sim, _):
        await kube.create(instance_manifest("rita"))
        await wait_phase(kube, "rita", "Pairing", within=WITHIN)
        await eventually(lambda: query(pg_url, "SELECT pairing_code FROM usuarios")[0]["pairing_code"], within=WITHIN)
        sim.act("rita", "qr_limit")
        # The QR-limit message's probe may show the close before the refusal's news adds its reason.
        obj = await wait_instance(kube, "rita", lambda o: o.get("status", {}).get("statusReason") == 428, WITHIN)
        assert (obj["status"]["phase"], obj["status"]["state"]) == ("Disconnected", "refused")

        def history() -> list[tuple[str, str, str | None, int | None]]:
            sql = "SELECT from_phase, to_phase, state, status_reason FROM whatsapp_operator.transitions ORDER BY id"
            return [tuple(r.values()) for r in query(pg_url, sql)]

        refusal = ("Disconnected", "refused", 428)
        await eventually(lambda: history()[-1][1:] == refusal, within=WITHIN)
        # A probe that saw the close first made the change without a reason: the reason is then a row of its own.
        assert history()[-1:] == [("Pairing", *refusal)] or history()[-2:] == [
            ("Pairing", "Disconnected", "close", None),
            ("Disconnected", *refusal),
        ]
        (row,) = query(pg_url, "SELECT whatsapp_status, pairing_code, pairing_code_expires_at FROM usuarios")
        assert row == {"whatsapp_status": "disconnected", "pairing_code": None, "pairing_code_expires_at": None}


async def test_a_refusal_delivered_after_the_close_was_seen_is_a_history_row_of_its_own(pg_url: str) -> None:
    """Evolution's deliveries race its API: here the probe the QR-limit message pulled forward sees the
    close first, and the refusal, held back until then, adds its reason to `.status` and the history."""
    query(pg_url, "INSERT INTO usuarios (id, nome) VALUES ('rita', 'Rita')")
    spec = {"probe": {"intervalSeconds": INTERVAL}}
    async with environment(database_url=pg_url, webhooks=True, **spec) as (kube, sim, _):
        held: list[tuple[Any, str, Any]] = []
        emit = sim.emit

        def holding(instance: Any, event: str, data: Any) -> Any:
            if isinstance(data, dict) and data.get("state") == "refused":
                held.append((instance, event, data))
                return None
            return emit(instance, event, data)

        sim.emit = holding  # type: ignore[method-assign]
        await kube.create(instance_manifest("rita"))
        await wait_phase(kube, "rita", "Pairing", within=WITHIN)
        sim.act("rita", "qr_limit")
        obj = await wait_phase(kube, "rita", "Disconnected", within=WITHIN)
        assert (obj["status"]["state"], obj["status"].get("statusReason")) == ("close", None)
        (late,) = held
        emit(*late)
        obj = await wait_instance(kube, "rita", lambda o: o.get("status", {}).get("statusReason") == 428, WITHIN)
        assert (obj["status"]["phase"], obj["status"]["state"]) == ("Disconnected", "refused")
        sql = "SELECT from_phase, to_phase, state, status_reason FROM whatsapp_operator.transitions ORDER BY id"
        await eventually(lambda: query(pg_url, sql)[-1]["status_reason"] == 428, within=WITHIN)
        assert [tuple(r.values()) for r in query(pg_url, sql)][-2:] == [
            ("Pairing", "Disconnected", "close", None),
            ("Disconnected", "Disconnected", "refused", 428),
        ]


async def test_a_removal_lands_by_webhook_although_evolution_removes_after_it_is_delivered(pg_url: str) -> None:
    """REMOVE_INSTANCE arrives while the instance still exists (Evolution removes it once the webhook is
    delivered): the operator looks again seconds later, not at the next tick ten minutes on."""
    query(pg_url, "INSERT INTO usuarios (id, nome) VALUES ('tito', 'Tito')")
    spec = {"probe": {"intervalSeconds": INTERVAL}}
    async with environment(database_url=pg_url, webhooks=True, **spec) as (kube, sim, _):
        await connected(kube, sim, "tito")
        sim.delete(sim.instances["tito"])

        def phases() -> list[str]:
            return [r["to_phase"] for r in query(pg_url, "SELECT to_phase FROM whatsapp_operator.transitions")]

        await eventually(lambda: "NotFound" in phases(), within=WITHIN)
        assert phases()[-3:-1] == ["LoggedOut", "NotFound"] or phases()[-2:] == ["LoggedOut", "NotFound"]
        removals = [r for r in inbox(pg_url, "tito") if r["event"] == "remove.instance"]
        assert [r["result"] for r in removals] == ["looked at closely: default/tito"]
