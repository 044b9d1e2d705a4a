"""What the simulator's instances go through over time, as a webhook receiver sees it.

Connection life cycle (QR rotation and limit, transient vs terminal disconnects, pairing, logout, delete) and
Evolution's webhook delivery (envelope, headers, jwt_key, byEvents, retries), on looptime's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from whatsapp_operator.devkit.simulator import RetryPolicy, Simulator, WebhookSink

pytestmark = pytest.mark.looptime

KEY = "global-key"
NUMBER = "5511987654321"
JWT_KEY = "a-signing-key-of-at-least-32-bytes!"


@contextlib.asynccontextmanager
async def fleet(
    statuses: tuple[int, ...] = (), default: int = 200, **options: Any
) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient, WebhookSink]]:
    """Simulator, API client and webhook receiver, all started inside the test (on looptime's clock)."""
    async with (
        WebhookSink(statuses, default) as hooks,
        Simulator(KEY, seed=3, **options) as sim,
        httpx.AsyncClient(base_url=sim.base_url, headers={"apikey": KEY}, timeout=30) as api,
    ):
        yield sim, api, hooks


async def create(api: httpx.AsyncClient, hooks: WebhookSink, name: str = "drv-1", **webhook: Any) -> dict[str, Any]:
    response = await api.post(
        "/instance/create",
        json={
            "instanceName": name,
            "integration": "WHATSAPP-BAILEYS",
            "webhook": {"url": hooks.url + "/hook", "events": [], **webhook},
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def data(hooks: WebhookSink, event: str) -> list[Any]:
    return [post.body["data"] for post in hooks.of(event)]


def emitted(sim: Simulator) -> list[str]:
    """Events in the order the simulator emitted them (deliveries run concurrently, so arrival order may differ)."""
    return [delivery.event for delivery in sim.deliveries if delivery.attempt == 1]


# ------------------------------------------------------------------------------------------ delivery


async def test_the_envelope_carries_dotted_events_and_the_configured_destination() -> None:
    async with fleet(server_url="https://evolution.example") as (sim, api, hooks):
        created = await create(api, hooks)
        await asyncio.sleep(1)

    [post] = hooks.posts
    assert post.path == "/hook"
    envelope = post.body
    assert list(envelope) == ["event", "instance", "data", "destination", "date_time", "server_url", "apikey"]
    assert envelope["event"] == "instance.create"
    assert envelope["instance"] == "drv-1"
    assert envelope["data"] == {"instanceName": "drv-1", "instanceId": created["instance"]["instanceId"]}
    assert envelope["destination"] == hooks.url + "/hook"
    assert envelope["date_time"].endswith("Z")
    assert envelope["server_url"] == "https://evolution.example"
    assert envelope["apikey"] is None
    assert [(d.event, d.attempt, d.status) for d in sim.deliveries] == [("instance.create", 1, 200)]


async def test_the_sender_and_the_exposed_token_appear_once_known() -> None:
    async with fleet(expose_token=True) as (sim, api, hooks):
        token = (await create(api, hooks))["hash"]
        await api.get("/instance/connect/drv-1", params={"number": NUMBER})
        sim.act("drv-1", "pair")
        await asyncio.sleep(5)
        sim.act("drv-1", "drop")
        await asyncio.sleep(5)

    first, last = hooks.posts[0].body, hooks.posts[-1].body
    assert "sender" not in first
    assert first["apikey"] == token
    assert last["sender"] == f"{NUMBER}@s.whatsapp.net"


async def test_headers_are_sent_verbatim_and_jwt_key_becomes_a_bearer_token() -> None:
    async with fleet() as (_, api, hooks):
        await create(api, hooks, headers={"x-token": "s3cr3t", "jwt_key": JWT_KEY})
        await asyncio.sleep(1)

    headers = hooks.posts[0].headers
    assert headers["x-token"] == "s3cr3t"
    assert "jwt_key" not in {name.lower() for name in headers}
    scheme, token = headers["Authorization"].split(" ")
    claims = jwt.decode(token, JWT_KEY, algorithms=["HS256"])
    assert scheme == "Bearer"
    assert (claims["app"], claims["action"], claims["exp"] - claims["iat"]) == ("evolution", "webhook", 600)
    assert abs(claims["iat"] - time.time()) < 60


async def test_by_events_appends_the_kebab_event_to_the_url() -> None:
    async with fleet() as (_, api, hooks):
        await create(api, hooks, byEvents=True)
        await api.get("/instance/connect/drv-1")
        await asyncio.sleep(1)

    assert sorted(post.path for post in hooks.posts) == [
        "/hook/connection-update",
        "/hook/instance-create",
        "/hook/qrcode-updated",
    ]
    assert hooks.posts[0].body["destination"] == hooks.url + "/hook"


async def test_only_subscribed_events_are_sent() -> None:
    async with fleet() as (_, api, hooks):
        await create(api, hooks, events=["CONNECTION_UPDATE"])
        await api.get("/instance/connect/drv-1")
        await asyncio.sleep(1)

    assert hooks.events() == ["connection.update"]


async def test_urls_without_http_scheme_are_skipped_silently() -> None:
    async with fleet() as (sim, api, _):
        await api.post(
            "/instance/create",
            json={
                "instanceName": "drv-1",
                "integration": "WHATSAPP-BAILEYS",
                "webhook": {"url": "op.example/hook", "events": []},
            },
        )
        await asyncio.sleep(1)

    assert sim.deliveries == []


async def test_failed_deliveries_retry_ten_times_doubling_from_5s_capped_at_300s() -> None:
    async with fleet(default=503) as (sim, api, hooks):
        await create(api, hooks, events=["INSTANCE_CREATE"])
        await asyncio.sleep(3600)

    attempts = [d for d in sim.deliveries if d.event == "instance.create"]
    assert [d.attempt for d in attempts] == list(range(1, 11))
    assert all(d.status == 503 for d in attempts)
    waits = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    for failures, wait in enumerate(waits, start=1):
        base = min(5 * 2 ** (failures - 1), 300)
        assert max(5, 0.8 * base) - 0.01 <= wait <= 1.2 * base + 0.01, (failures, wait)
    assert len(hooks.posts) == 10


@pytest.mark.parametrize("receiver", ["refusing", "hanging"])
async def test_network_errors_and_timeouts_are_retried(receiver: str) -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=1, timeout=2)
    async with fleet(webhook_retry=policy) as (sim, api, _):
        if receiver == "hanging":  # the simulator itself, told to hang every request but the admin API's
            url = sim.base_url + "/receiver"
            sim.add_fault("timeouts", path="/receiver")
        else:
            url = "http://127.0.0.1:1/nobody-listens"
        await api.post(
            "/instance/create",
            json={
                "instanceName": "drv-1",
                "integration": "WHATSAPP-BAILEYS",
                "webhook": {"url": url, "events": ["INSTANCE_CREATE"]},
            },
        )
        await asyncio.sleep(60)

    assert [d.attempt for d in sim.deliveries] == [1, 2, 3]
    assert all(d.status is None and d.error for d in sim.deliveries)
    if receiver == "hanging":
        assert [d.error for d in sim.deliveries] == ["timeout"] * 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_non_retryable_statuses_abort_at_once(status: int) -> None:
    async with fleet(default=status) as (sim, api, hooks):
        await create(api, hooks, events=["INSTANCE_CREATE"])
        await asyncio.sleep(3600)

    assert [(d.attempt, d.status) for d in sim.deliveries] == [(1, status)]


async def test_a_retry_that_succeeds_stops_retrying() -> None:
    async with fleet(statuses=(500, 502)) as (sim, api, hooks):
        await create(api, hooks, events=["INSTANCE_CREATE"])
        await asyncio.sleep(3600)

    assert [(d.attempt, d.status) for d in sim.deliveries] == [(1, 500), (2, 502), (3, 200)]


async def test_stop_cancels_pending_retries() -> None:
    async with fleet(default=503) as (sim, api, hooks):
        await create(api, hooks, events=["INSTANCE_CREATE"])
        await asyncio.sleep(1)
    await asyncio.sleep(3600)

    assert len(sim.deliveries) == 1


# ------------------------------------------------------------------------------------------ QR codes


async def test_qr_codes_rotate_every_45s_with_a_new_pairing_code_each_time() -> None:
    async with fleet() as (sim, api, hooks):
        await create(api, hooks)
        first = (await api.get("/instance/connect/drv-1", params={"number": NUMBER})).json()
        await asyncio.sleep(45 * 3)
        current = (await api.get("/instance/connect/drv-1")).json()

    updates = hooks.of("qrcode.updated")
    codes = [post.body["data"]["qrcode"]["pairingCode"] for post in updates]
    assert len(updates) == 4
    assert len(set(codes)) == 4
    assert codes[0] == first["pairingCode"]
    assert codes[-1] == current["pairingCode"]
    assert [round(b.at - a.at, 3) for a, b in itertools.pairwise(updates)] == [45, 45, 45]
    assert current["count"] == 4
    assert sim.instances["drv-1"].state == "connecting"


async def test_the_qr_limit_sends_refused_then_closes_and_resets_the_counter() -> None:
    async with fleet(qr_limit=3) as (sim, api, hooks):
        await create(api, hooks)
        await api.get("/instance/connect/drv-1")
        await asyncio.sleep(45 * 3)
        state = (await api.get("/instance/connectionState/drv-1")).json()["instance"]["state"]
        again = (await api.get("/instance/connect/drv-1")).json()

    assert emitted(sim)[-4:] == ["qrcode.updated", "connection.update", "connection.update", "qrcode.updated"]
    limit = data(hooks, "qrcode.updated")[3]
    assert limit == {"message": "QR code limit reached, please login again", "statusCode": 500}
    refused = data(hooks, "connection.update")[1]
    assert refused == {"instance": "drv-1", "state": "refused", "statusReason": 428}
    assert not hooks.of("logout.instance")
    assert not hooks.of("status.instance")
    assert state == "close"
    assert again["count"] == 1


async def test_the_qr_counter_survives_reconnects() -> None:
    async with fleet() as (sim, api, hooks):
        await create(api, hooks)
        await api.get("/instance/connect/drv-1", params={"number": NUMBER})
        await asyncio.sleep(50)
        sim.act("drv-1", "drop", 408)
        await asyncio.sleep(2)

    assert sim.instances["drv-1"].qr_count == 3
    assert sim.instances["drv-1"].phone_number == NUMBER  # the reconnect stays in pairing mode


# ------------------------------------------------------------------------------------------ disconnects


@pytest.mark.parametrize("reason", [408, 428, 440, 500, 503, 515])
async def test_transient_drops_reconnect_by_themselves_without_a_close_webhook(reason: int) -> None:
    async with fleet() as (sim, api, hooks):
        sim.add_instance("drv-1", "open", webhook={"url": hooks.url, "events": []})
        sim.act("drv-1", "drop", reason)
        during = (await api.get("/instance/connectionState/drv-1")).json()["instance"]["state"]
        await asyncio.sleep(10)
        row = (await api.get("/instance/fetchInstances")).json()[0]

    assert during == "connecting"
    assert [(d["state"], d["statusReason"]) for d in data(hooks, "connection.update")] == [
        ("connecting", 200),
        ("open", 200),
    ]
    assert emitted(sim) == ["connection.update", "connection.update"]
    assert sim.instances["drv-1"].state == "open"
    assert row["connectionStatus"] == "open"


@pytest.mark.parametrize("reason", [401, 402, 403, 406])
async def test_terminal_disconnects_send_status_logout_and_close(reason: int) -> None:
    async with fleet() as (sim, api, hooks):
        sim.add_instance("drv-1", "open", webhook={"url": hooks.url, "events": []})
        sim.act("drv-1", "disconnect", reason)
        await asyncio.sleep(60)
        state = (await api.get("/instance/connectionState/drv-1")).json()["instance"]["state"]

    assert emitted(sim) == ["status.instance", "logout.instance", "connection.update"]
    status = data(hooks, "status.instance")[0]
    assert (status["status"], status["disconnectionReasonCode"]) == ("closed", reason)
    assert set(status) == {"instance", "status", "disconnectionAt", "disconnectionReasonCode", "disconnectionObject"}
    assert data(hooks, "logout.instance") == [None]
    assert data(hooks, "connection.update") == [{"instance": "drv-1", "state": "close", "statusReason": reason}]
    assert state == "close"


async def test_logout_sends_the_401_close_sequence_after_answering() -> None:
    async with fleet() as (sim, api, hooks):
        sim.add_instance("drv-1", "open", webhook={"url": hooks.url, "events": []})
        await api.delete("/instance/logout/drv-1")
        await asyncio.sleep(1)

    assert emitted(sim) == ["status.instance", "logout.instance", "connection.update"]
    assert data(hooks, "connection.update")[0]["statusReason"] == 401
    assert not sim.instances["drv-1"].paired


async def test_pairing_completes_with_a_silent_515_then_open() -> None:
    async with fleet() as (sim, api, hooks):
        await create(api, hooks)
        await api.get("/instance/connect/drv-1", params={"number": NUMBER})
        sim.act("drv-1", "pair")
        await asyncio.sleep(10)

    updates = data(hooks, "connection.update")
    assert [d["state"] for d in updates] == ["connecting", "connecting", "open"]
    assert updates[-1] == {
        "instance": "drv-1",
        "wuid": f"{NUMBER}@s.whatsapp.net",
        "profileName": "Sim drv-1",
        "profilePictureUrl": updates[-1]["profilePictureUrl"],
        "state": "open",
        "statusReason": 200,
    }
    assert sim.instances["drv-1"].state == "open"


async def test_a_stuck_instance_stays_connecting_until_logged_out_then_pairs_normally() -> None:
    async with fleet() as (sim, api, hooks):
        sim.add_instance("drv-1", "open", webhook={"url": hooks.url, "events": []})
        sim.act("drv-1", "stick")
        await asyncio.sleep(600)
        stuck = (await api.get("/instance/connect/drv-1")).json()
        while_stuck = emitted(sim)
        await api.delete("/instance/logout/drv-1")
        await asyncio.sleep(1)
        fresh = (await api.get("/instance/connect/drv-1", params={"number": NUMBER})).json()

    assert stuck == {"count": 0}
    assert while_stuck == ["connection.update"]
    assert data(hooks, "connection.update")[0] == {"instance": "drv-1", "state": "connecting", "statusReason": 200}
    assert fresh["count"] == 1
    assert fresh["pairingCode"]


async def test_delete_logs_out_then_removes_after_the_remove_webhook() -> None:
    async with fleet() as (sim, api, hooks):
        sim.add_instance("drv-1", "open", webhook={"url": hooks.url, "events": []})
        await api.delete("/instance/delete/drv-1")
        await asyncio.sleep(1)

    assert emitted(sim) == [
        "status.instance",
        "logout.instance",
        "connection.update",
        "instance.delete",
        "remove.instance",
    ]
    assert "drv-1" not in sim.instances


async def test_a_failing_receiver_keeps_a_deleted_name_taken_while_remove_retries() -> None:
    async with fleet(default=503, webhook_retry=RetryPolicy(max_attempts=3)) as (_sim, api, hooks):
        await create(api, hooks)
        await api.delete("/instance/delete/drv-1")
        await asyncio.sleep(1)
        taken = await api.post("/instance/create", json={"instanceName": "drv-1", "integration": "WHATSAPP-BAILEYS"})
        await asyncio.sleep(60)
        free = await api.post("/instance/create", json={"instanceName": "drv-1", "integration": "WHATSAPP-BAILEYS"})

    assert taken.status_code == 403
    assert free.status_code == 201
