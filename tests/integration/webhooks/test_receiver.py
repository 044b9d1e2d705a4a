"""`POST /webhooks/evolution` over real HTTP into a real Postgres: who gets which answer, what is stored,
and that the simulator's deliveries (signed like Evolution's) land in the inbox."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.pg import StoppableDatabase, eventually, execute, inbox_rows
from tests.support.webhook_samples import (
    INSTANCE_TOKEN,
    NUMBER,
    PAIRING_CODE,
    QR_IMAGE,
    QR_PAYLOAD,
    SECRET,
    envelope,
    qrcode_updated,
    token,
)
from whatsapp_operator.devkit.simulator import RetryPolicy, Simulator, Timings
from whatsapp_operator.http_server import HttpServer
from whatsapp_operator.webhooks.auth import HEADER
from whatsapp_operator.webhooks.inbox import Inbox
from whatsapp_operator.webhooks.receiver import MAX_BODY_BYTES, PATH, RETRY_AFTER_SECONDS, WebhookReceiver

SIGNED = {"Authorization": f"Bearer {token()}"}


async def table_text(url: str) -> str:
    """Every stored row as Postgres prints it: whatever a reader of the table could see."""
    found = await execute(url, "SELECT t::text AS text FROM whatsapp_operator.webhook_inbox AS t ORDER BY id")
    return "\n".join(r["text"] for r in found)


@dataclass
class Running:
    """A receiver on a real port, its inbox's database, and how often it reported a new webhook."""

    url: str
    database: str
    server: HttpServer
    accepted: list[float] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.url + PATH

    async def post(self, body: Any, headers: dict[str, str] | None = None, suffix: str | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        target = self.endpoint + (f"/{suffix}" if suffix else "")
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(
                target, content=content, headers={"Content-Type": "application/json", **(headers or {})}
            )


StartReceiver = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_receiver() -> AsyncIterator[StartReceiver]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(
        database: str, secrets: tuple[str, ...] = (SECRET,), listen: str = "127.0.0.1:0", **inbox_options: Any
    ) -> Running:
        inbox = Inbox(database, **inbox_options)
        await inbox.open()
        cleanups.append(inbox.close)
        calls: list[float] = []
        receiver = WebhookReceiver(inbox, lambda: secrets, lambda: calls.append(time.monotonic()))
        app = web.Application(client_max_size=MAX_BODY_BYTES)  # as the operator's HTTP server has it
        receiver.add_routes(app)
        server = HttpServer(listen, app)
        url = await server.start()
        cleanups.append(server.stop)
        return Running(url, database, server, calls)

    yield start
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture
async def running(pg_url: str, start_receiver: StartReceiver) -> Running:
    return await start_receiver(pg_url)


# ------------------------------------------------------------------------------------------ refused


async def test_without_credentials_the_webhook_is_refused_and_not_stored(running: Running) -> None:
    response = await running.post(envelope())

    assert response.status_code == 401
    assert "no credentials" in response.json()["error"]
    assert await inbox_rows(running.database) == []
    assert running.accepted == []


@pytest.mark.parametrize(
    "bad",
    [
        token("a-key-that-is-not-the-webhook-secret"),
        token(iat=int(time.time()) - 900, exp=int(time.time()) - 300),
        token(action="login"),
        "not-a-jwt",
    ],
    ids=["wrong-key", "expired", "wrong-action", "garbage"],
)
async def test_a_bad_bearer_token_is_refused_and_not_stored(running: Running, bad: str) -> None:
    response = await running.post(envelope(), {"Authorization": f"Bearer {bad}"})

    assert response.status_code == 401
    assert bad not in response.text
    assert await inbox_rows(running.database) == []


async def test_a_wrong_header_secret_is_refused(running: Running) -> None:
    response = await running.post(envelope(), {HEADER: "guess"})

    assert response.status_code == 401
    assert "guess" not in response.text
    assert await inbox_rows(running.database) == []


async def test_header_bytes_that_are_not_utf8_get_a_401_not_a_500(running: Running) -> None:
    body = json.dumps(envelope()).encode()

    async def raw_post(header: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
        writer.write(
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n"
            + header + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        return answer.split(b"\r\n", 1)[0]

    assert await raw_post(HEADER.encode() + b": \xff\xfe") == b"HTTP/1.1 401 Unauthorized"
    assert await raw_post(b"Authorization: Bearer \xff.\xfe.x") == b"HTTP/1.1 401 Unauthorized"
    assert await inbox_rows(running.database) == []


async def test_before_any_webhook_secret_is_known_webhooks_are_deferred_not_refused(
    pg_url: str, start_receiver: StartReceiver
) -> None:
    """The operator starting (no server's Secret read yet): a 401 would lose the event for good."""
    running = await start_receiver(pg_url, secrets=())

    response = await running.post(envelope(), {**SIGNED, HEADER: SECRET})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert await inbox_rows(pg_url) == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", json.dumps({"event": "connection.update"}).encode()])
async def test_a_body_that_is_not_a_webhook_gets_a_400_and_is_not_stored(running: Running, body: bytes) -> None:
    response = await running.post(body, SIGNED)

    assert response.status_code == 400
    assert response.json()["error"]
    assert await inbox_rows(running.database) == []


async def test_a_path_suffix_naming_another_event_gets_a_400(running: Running) -> None:
    response = await running.post(qrcode_updated(), SIGNED, suffix="connection-update")

    assert response.status_code == 400
    assert "connection-update" in response.json()["error"]
    assert PAIRING_CODE not in response.text
    assert await inbox_rows(running.database) == []


async def test_a_webhook_postgres_cannot_hold_gets_a_400_not_a_503(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    # A 503 would have Evolution retry it for 20 minutes, failing the same way every time.
    data = {"instance": "drv-1", "state": "open", "statusReason": 200, "profileName": "Ana\u0000"}

    response = await running.post(envelope(data=data), SIGNED)

    assert response.status_code == 400
    assert await inbox_rows(running.database) == []
    assert "webhook inbox unavailable" not in caplog.text


async def test_a_body_over_one_mebibyte_gets_a_413_and_is_not_stored(running: Running) -> None:
    data = {"instance": "drv-1", "state": "open", "statusReason": 200, "padding": "x" * MAX_BODY_BYTES}

    response = await running.post(envelope(data=data), SIGNED)

    assert response.status_code == 413
    assert await inbox_rows(running.database) == []


async def test_a_large_body_within_the_limit_is_taken(running: Running) -> None:
    data = {"instance": "drv-1", "state": "open", "statusReason": 200, "padding": "x" * (MAX_BODY_BYTES - 1000)}

    response = await running.post(envelope(data=data), SIGNED)

    assert response.status_code == 200
    assert len(await inbox_rows(running.database)) == 1


# ------------------------------------------------------------------------------------------ accepted


async def test_an_event_the_operator_does_not_act_on_is_acknowledged_and_dropped(running: Running) -> None:
    message = {"key": {"remoteJid": f"{NUMBER}@s.whatsapp.net", "id": "ABC"}, "message": {"conversation": "oi"}}

    response = await running.post(envelope("messages.upsert", message), SIGNED, suffix="messages-upsert")

    assert response.status_code == 200
    assert "messages.upsert" in response.json()["ignored"]
    assert await inbox_rows(running.database) == []
    assert running.accepted == []


async def test_a_webhook_is_stored_once_and_a_repeat_is_acknowledged_as_a_duplicate(running: Running) -> None:
    first = await running.post(envelope(state="close", status_reason=401), SIGNED)
    # The same event through the global webhook: another destination, by-events path, header secret.
    again = await running.post(
        envelope(
            state="close",
            status_reason=401,
            destination="http://operator:8081/webhooks/evolution/connection-update",
            apikey=None,
        ),
        {HEADER: SECRET},
        suffix="connection-update",
    )

    assert (first.status_code, first.json()) == (200, {"accepted": True, "duplicate": False})
    assert (again.status_code, again.json()) == (200, {"accepted": True, "duplicate": True})
    [stored] = await inbox_rows(running.database)
    assert (stored["event"], stored["instance"], stored["status"]) == ("connection.update", "drv-1", "queued")
    assert stored["payload"]["data"] == {"instance": "drv-1", "state": "close", "statusReason": 401}
    assert len(running.accepted) == 1


async def test_pairing_codes_qr_codes_and_the_instance_token_never_reach_the_table(running: Running) -> None:
    response = await running.post(qrcode_updated(), SIGNED, suffix="qrcode-updated")

    assert response.json() == {"accepted": True, "duplicate": False}
    text = await table_text(running.database)
    assert "qrcode.updated" in text
    for secret in (PAIRING_CODE, QR_PAYLOAD, QR_IMAGE, "iVBORw0KGgo", INSTANCE_TOKEN):
        assert secret not in text


async def test_while_postgres_is_down_webhooks_get_a_503_to_retry_and_none_is_lost(
    pg_stoppable: StoppableDatabase, start_receiver: StartReceiver
) -> None:
    running = await start_receiver(pg_stoppable.url, connection_timeout=0.3)
    before = envelope(date_time="2025-10-21T10:00:00.000Z", state="close", status_reason=401)
    during = envelope(date_time="2025-10-21T10:00:01.000Z", data={"instance": "drv-1", "state": "open"})
    assert (await running.post(before, SIGNED)).status_code == 200

    await asyncio.to_thread(pg_stoppable.server.stop)
    refused = await running.post(during, SIGNED)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert len(running.accepted) == 1

    await asyncio.to_thread(pg_stoppable.server.start)
    retried: list[httpx.Response] = []

    async def evolution_retries() -> bool:
        retried.append(await running.post(during, SIGNED))
        return retried[-1].status_code != 503

    await eventually(evolution_retries, within=20)
    assert retried[-1].json() == {"accepted": True, "duplicate": False}
    stored = await inbox_rows(pg_stoppable.url)
    assert [r["payload"]["data"]["state"] for r in stored] == ["close", "open"]
    assert len(running.accepted) == 2


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
async def test_the_server_url_on_an_ipv6_address_is_usable() -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    server = HttpServer("[::1]:0", app)
    url = await server.start()
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(url + "/")
    finally:
        await server.stop()

    assert url == f"http://[::1]:{server.port}"
    assert response.text == "hello"


# ------------------------------------------------------------------------------------------ end to end


async def test_the_simulators_signed_deliveries_land_in_the_inbox(running: Running) -> None:
    async with Simulator(
        "global-key",
        timings=Timings(reconnect_delay=0.05),
        webhook_retry=RetryPolicy(initial_delay=0.2),
        expose_token=True,
        seed=7,
    ) as sim:
        webhook = {"url": running.endpoint, "events": [], "headers": {"jwt_key": SECRET}, "byEvents": True}
        instance = sim.add_instance("drv-1", "pairing", number=NUMBER, webhook=webhook)

        def answered(count: int) -> Callable[[], bool]:
            return lambda: sum(1 for d in sim.deliveries if d.status is not None) >= count

        await eventually(answered(2))  # connecting, then the first pairing code
        sim.act("drv-1", "pair")
        await eventually(answered(4))  # connecting (the 515 restart), then open
        sim.act("drv-1", "disconnect", 401)
        await eventually(answered(7))  # status.instance, logout.instance, connection.update close

    assert [(d.event, d.status) for d in sim.deliveries if d.status != 200] == []
    assert all(d.url.startswith(running.endpoint + "/") for d in sim.deliveries)  # by-events paths
    stored = await inbox_rows(running.database)
    assert sorted(r["event"] for r in stored) == sorted(
        ["connection.update"] * 4 + ["qrcode.updated", "status.instance", "logout.instance"]
    )
    assert [r["payload"]["data"]["state"] for r in stored if r["event"] == "connection.update"] == [
        "connecting",
        "connecting",
        "open",
        "close",
    ]
    assert len(running.accepted) == 7
    [qr_delivery] = [d for d in sim.deliveries if d.event == "qrcode.updated"]
    sent = qr_delivery.payload["data"]["qrcode"]
    text = await table_text(running.database)
    assert sent["pairingCode"]
    for secret in (sent["pairingCode"], sent["code"], sent["base64"], instance.token):
        assert secret not in text
