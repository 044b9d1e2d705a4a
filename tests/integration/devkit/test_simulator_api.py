"""The simulator answers every route the way Evolution API v2.3.6 does (shared/evolution-api-contract.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from whatsapp_operator.devkit.simulator import Simulator

pytestmark = pytest.mark.looptime

KEY = "global-key"
NUMBER = "5511987654321"
PAIRING_CODE = re.compile(r"^[1-9A-HJ-NP-TV-Z]{8}$")  # Crockford base32 as Baileys writes it


@contextlib.asynccontextmanager
async def evolution(**options: Any) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    """A simulator started inside the test (so on looptime's clock) and a client holding the global key."""
    async with (
        Simulator(KEY, seed=7, **options) as sim,
        httpx.AsyncClient(base_url=sim.base_url, headers={"apikey": KEY}, timeout=30) as api,
    ):
        yield sim, api


async def create(api: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    response = await api.post(
        "/instance/create", json={"instanceName": name, "integration": "WHATSAPP-BAILEYS", **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()


def error(status: int, message: str | list[Any]) -> dict[str, Any]:
    phrases = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        500: "Internal Server Error",
    }
    return {"status": status, "error": phrases[status], "response": {"message": message}}


async def test_create_answers_the_v2_body_with_the_token_as_hash() -> None:
    async with evolution() as (sim, api):
        body = await create(api, "drv-1", token="tok-1", number=NUMBER)

    assert body == {
        "instance": {
            "instanceName": "drv-1",
            "instanceId": sim.instances["drv-1"].id,
            "integration": "WHATSAPP-BAILEYS",
            "webhookWaBusiness": None,
            "accessTokenWaBusiness": "",
            "status": "close",
        },
        "hash": "tok-1",
        "webhook": {},
        "websocket": {},
        "rabbitmq": {},
        "nats": {},
        "sqs": {},
        "settings": {
            "rejectCall": False,
            "msgCall": "",
            "groupsIgnore": False,
            "alwaysOnline": False,
            "readMessages": False,
            "readStatus": False,
            "syncFullHistory": False,
            "wavoipToken": "",
        },
    }


async def test_create_generates_an_upper_case_uuid_token_per_instance() -> None:
    async with evolution() as (_, api):
        first, second = (await create(api, "a"))["hash"], (await create(api, "b"))["hash"]

    assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}", first)
    assert first != second


async def test_create_with_qrcode_waits_and_includes_the_first_qr(looptime: float) -> None:
    async with evolution() as (_, api):
        before = float(looptime)
        body = await create(api, "drv-1", qrcode=True, number=NUMBER)
        waited = float(looptime) - before

    assert waited == pytest.approx(5.0)
    assert body["instance"]["status"] == "connecting"
    assert body["qrcode"]["count"] == 1
    assert PAIRING_CODE.match(body["qrcode"]["pairingCode"])


async def test_create_forces_an_inline_webhook_on_and_stores_every_event_for_an_empty_list() -> None:
    async with evolution() as (_, api):
        body = await create(api, "drv-1", webhook={"url": "http://127.0.0.1:9/hook", "enabled": False, "events": []})
        stored = (await api.get("/webhook/find/drv-1")).json()

    assert body["webhook"] == {"webhookUrl": "http://127.0.0.1:9/hook"}
    assert stored["enabled"] is True
    assert "CONNECTION_UPDATE" in stored["events"]
    assert "REMOVE_INSTANCE" in stored["events"]


async def test_create_without_webhook_events_fails_and_removes_the_instance() -> None:
    async with evolution() as (sim, api):
        response = await api.post(
            "/instance/create",
            json={"instanceName": "drv-1", "integration": "WHATSAPP-BAILEYS", "webhook": {"url": "http://x/y"}},
        )
        state = await api.get("/instance/connectionState/drv-1")

    assert response.status_code == 400
    assert response.json() == error(400, ["Cannot read properties of undefined (reading 'length')"])
    assert state.status_code == 404
    assert "drv-1" not in sim.instances


@pytest.mark.parametrize("integration", [None, "BAILEYS"])
async def test_create_requires_a_known_integration(integration: str | None) -> None:
    async with evolution() as (_, api):
        response = await api.post("/instance/create", json={"instanceName": "x", "integration": integration})

    assert (response.status_code, response.json()) == (400, error(400, ["Invalid integration"]))


async def test_create_reports_schema_errors_as_an_array() -> None:
    async with evolution() as (_, api):
        response = await api.post(
            "/instance/create",
            json={"instanceName": "x", "integration": "WHATSAPP-BAILEYS", "qrcode": "yes", "number": "+55 11"},
        )

    assert response.status_code == 400
    assert response.json()["response"]["message"] == [
        'number does not match pattern "^\\\\d+[\\\\.@\\\\w-]+"',
        "qrcode is not of a type(s) boolean",
    ]


async def test_a_name_in_use_is_403_before_the_key_is_checked() -> None:
    async with evolution() as (_, api):
        await create(api, "drv-1")
        response = await api.post("/instance/create", json={"instanceName": "drv-1"}, headers={"apikey": "wrong"})

    assert (response.status_code, response.json()) == (403, error(403, ['This name "drv-1" is already in use.']))


async def test_a_missing_or_wrong_key_is_401_with_a_string_message() -> None:
    async with evolution() as (_, api):
        await create(api, "drv-1")
        missing = await api.get("/instance/connectionState/drv-1", headers={"apikey": ""})
        wrong = await api.get("/instance/fetchInstances", headers={"apikey": "wrong"})

    assert (missing.status_code, missing.json()) == (401, error(401, "Unauthorized"))
    assert (wrong.status_code, wrong.json()) == (401, error(401, "Unauthorized"))


async def test_an_unknown_instance_is_404_even_with_a_wrong_key() -> None:
    async with evolution() as (_, api):
        response = await api.get("/instance/connect/ghost", headers={"apikey": "wrong"})

    assert response.status_code == 404
    assert response.json() == error(404, ['The "ghost" instance does not exist'])


async def test_an_instance_token_works_for_its_own_instance_only() -> None:
    async with evolution() as (_, api):
        token = (await create(api, "a"))["hash"]
        await create(api, "b")
        own = await api.get("/instance/connectionState/a", headers={"apikey": token})
        other = await api.get("/instance/connectionState/b", headers={"apikey": token})
        create_with_token = await api.post(
            "/instance/create", json={"instanceName": "c", "integration": "WHATSAPP-BAILEYS"}, headers={"apikey": token}
        )

    assert own.json() == {"instance": {"instanceName": "a", "state": "close"}}
    assert other.status_code == 401
    assert create_with_token.status_code == 401


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/instance/connect/pairing/drv-1"),
        ("POST", "/instance/connect/drv-1"),
        ("GET", "/instance/nothing?x=1&y=2"),
    ],
)
async def test_unmatched_routes_get_expresss_catch_all_404(method: str, url: str) -> None:
    async with evolution() as (_, api):
        await create(api, "drv-1")
        response = await api.request(method, url)

    assert response.status_code == 404
    assert response.json() == error(404, [f"Cannot {method} {url}"])


async def test_connect_on_a_closed_instance_waits_2s_and_returns_the_flat_qr_object(looptime: float) -> None:
    async with evolution() as (_, api):
        await create(api, "drv-1")
        before = float(looptime)
        body = (await api.get("/instance/connect/drv-1", params={"number": NUMBER})).json()
        waited = float(looptime) - before

    assert waited == pytest.approx(2.0)
    assert list(body) == ["pairingCode", "code", "base64", "count"]
    assert PAIRING_CODE.match(body["pairingCode"])
    assert body["code"] != body["pairingCode"]
    assert body["code"].count(",") == 3
    assert body["base64"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert body["count"] == 1


async def test_connect_without_a_number_is_qr_mode_with_a_null_pairing_code() -> None:
    async with evolution() as (_, api):
        await create(api, "drv-1")
        body = (await api.get("/instance/connect/drv-1")).json()

    assert body["pairingCode"] is None
    assert body["count"] == 1


async def test_connect_while_connecting_returns_the_current_qr_and_ignores_the_number() -> None:
    async with evolution() as (sim, api):
        await create(api, "drv-1")
        first = (await api.get("/instance/connect/drv-1")).json()
        again = (await api.get("/instance/connect/drv-1", params={"number": NUMBER})).json()

    assert again == first
    assert sim.instances["drv-1"].phone_number is None


async def test_connect_on_an_open_instance_returns_its_state() -> None:
    async with evolution() as (sim, api):
        sim.add_instance("drv-1", "open")
        response = await api.get("/instance/connect/drv-1")

    assert response.json() == {"instance": {"instanceName": "drv-1", "state": "open"}}


async def test_connect_during_a_reconnect_returns_the_stale_qr_of_the_last_pairing() -> None:
    async with evolution() as (sim, api):
        await create(api, "drv-1")
        first = (await api.get("/instance/connect/drv-1", params={"number": NUMBER})).json()
        sim.act("drv-1", "pair")
        await asyncio.sleep(5)
        sim.act("drv-1", "drop")  # a paired reconnect shows no QR, so the old fields are still there
        stale = (await api.get("/instance/connect/drv-1")).json()

    assert sim.instances["drv-1"].state == "connecting"
    assert stale == first


async def test_connection_state_reads_memory() -> None:
    async with evolution() as (sim, api):
        sim.add_instance("drv-1", "pairing")
        body = (await api.get("/instance/connectionState/drv-1")).json()

    assert body == {"instance": {"instanceName": "drv-1", "state": "connecting"}}


async def test_logout_answers_success_then_closes_and_keeps_the_instance() -> None:
    async with evolution() as (sim, api):
        sim.add_instance("drv-1", "open")
        response = await api.delete("/instance/logout/drv-1")
        await asyncio.sleep(1)
        state = (await api.get("/instance/connectionState/drv-1")).json()
        again = await api.delete("/instance/logout/drv-1")

    assert response.json() == {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
    assert state == {"instance": {"instanceName": "drv-1", "state": "close"}}
    assert again.status_code == 400
    assert again.json() == error(400, ['The "drv-1" instance is not connected'])


async def test_delete_removes_the_instance_and_frees_its_name() -> None:
    async with evolution() as (sim, api):
        sim.add_instance("drv-1", "open")
        response = await api.delete("/instance/delete/drv-1")
        gone = await api.get("/instance/connectionState/drv-1")
        recreated = await create(api, "drv-1")

    assert response.json() == {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}
    assert gone.status_code == 404
    assert recreated["instance"]["status"] == "close"


async def test_restart_of_a_closed_instance_is_http_200_with_an_error_flag() -> None:
    async with evolution() as (_, api):
        await create(api, "drv-1")
        response = await api.post("/instance/restart/drv-1")

    assert (response.status_code, response.json()) == (200, {"error": True, "message": "[object Object]"})


async def test_restart_of_an_open_instance_answers_open_then_reconnects() -> None:
    async with evolution() as (sim, api):
        sim.add_instance("drv-1", "open")
        response = await api.post("/instance/restart/drv-1")
        await asyncio.sleep(0.1)
        during = sim.instances["drv-1"].state
        await asyncio.sleep(5)
        after = sim.instances["drv-1"].state

    assert response.json() == {"instance": {"instanceName": "drv-1", "state": "open"}}
    assert (during, after) == ("connecting", "open")


async def test_fetch_instances_returns_flat_rows() -> None:
    async with evolution() as (sim, api):
        token = (await create(api, "drv-1", number=NUMBER))["hash"]
        rows = (await api.get("/instance/fetchInstances")).json()

    assert len(rows) == 1
    row = rows[0]
    assert {key: row[key] for key in ("id", "name", "connectionStatus", "integration", "number", "token")} == {
        "id": sim.instances["drv-1"].id,
        "name": "drv-1",
        "connectionStatus": "close",
        "integration": "WHATSAPP-BAILEYS",
        "number": NUMBER,
        "token": token,
    }
    assert row["clientName"] == "evolution"
    assert row["_count"] == {"Message": 0, "Contact": 0, "Chat": 0}
    assert row["Setting"]["rejectCall"] is False
    assert "Webhook" not in row


async def test_fetch_instances_filters_and_not_found_messages() -> None:
    async with evolution() as (_, api):
        await create(api, "a", number=NUMBER)
        await create(api, "b")
        by_name = (await api.get("/instance/fetchInstances", params={"instanceName": "b"})).json()
        by_number = (await api.get("/instance/fetchInstances", params={"number": NUMBER})).json()
        unknown = await api.get("/instance/fetchInstances", params={"instanceName": "zz"})

    assert [row["name"] for row in by_name] == ["b"]
    assert [row["name"] for row in by_number] == ["a"]
    assert (unknown.status_code, unknown.json()) == (404, error(404, ['Instance "zz" not found']))


async def test_fetch_instances_with_an_instance_token_sees_only_that_instance() -> None:
    async with evolution() as (_, api):
        token = (await create(api, "a"))["hash"]
        await create(api, "b")
        rows = (await api.get("/instance/fetchInstances", headers={"apikey": token})).json()

    assert [row["name"] for row in rows] == ["a"]


async def test_fetch_instances_status_is_the_db_value_that_lags_memory() -> None:
    async with evolution(qr_limit=1) as (sim, api):
        await create(api, "drv-1")
        await api.get("/instance/connect/drv-1")
        await asyncio.sleep(45)  # the second QR hits the limit of 1: refused, close in memory
        rows = (await api.get("/instance/fetchInstances")).json()

    assert sim.instances["drv-1"].state == "close"
    assert rows[0]["connectionStatus"] == "connecting"


async def test_fetch_instances_records_a_terminal_disconnection() -> None:
    async with evolution() as (sim, api):
        sim.add_instance("drv-1", "open")
        sim.act("drv-1", "disconnect", 403)
        row = (await api.get("/instance/fetchInstances")).json()[0]

    assert row["connectionStatus"] == "close"
    assert row["disconnectionReasonCode"] == 403
    assert json.loads(row["disconnectionObject"])["error"]["output"]["statusCode"] == 403
    assert row["ownerJid"].endswith("@s.whatsapp.net")


async def test_send_text_answers_201_with_the_stored_message() -> None:
    async with evolution() as (sim, api):
        instance = sim.add_instance("drv-1", "open")
        response = await api.post("/message/sendText/drv-1", json={"number": "+55 (11) 98765-4321", "text": "olá"})

    assert response.status_code == 201
    body = response.json()
    assert body["key"]["remoteJid"] == "5511987654321@s.whatsapp.net"
    assert body["key"]["fromMe"] is True
    assert re.fullmatch(r"3EB0[0-9A-F]{18}", body["key"]["id"])
    assert body["message"] == {"conversation": "olá"}
    assert (body["status"], body["messageType"], body["instanceId"]) == ("PENDING", "conversation", instance.id)
    assert [(m.instance, m.remote_jid, m.text) for m in sim.messages] == [
        ("drv-1", "5511987654321@s.whatsapp.net", "olá")
    ]


async def test_send_text_errors() -> None:
    async with evolution() as (sim, api):
        sim.add_instance("up", "open")
        sim.add_instance("down", "close")
        blank = await api.post("/message/sendText/up", json={"number": NUMBER, "text": "  "})
        missing = await api.post("/message/sendText/up", json={"number": NUMBER})
        closed = await api.post("/message/sendText/down", json={"number": NUMBER, "text": "hi"})
        not_on_whatsapp = await api.post("/message/sendText/up", json={"number": "123", "text": "hi"})

    assert (blank.status_code, blank.json()) == (400, error(400, ["Text is required"]))
    assert missing.json() == error(400, ['instance requires property "text"'])
    assert (closed.status_code, closed.json()) == (500, error(500, "Connection Closed"))
    assert not_on_whatsapp.json() == error(400, [{"jid": "123@s.whatsapp.net", "exists": False, "number": "123"}])
    assert sim.messages == []


async def test_send_text_blocks_for_the_typing_delay(looptime: float) -> None:
    async with evolution() as (sim, api):
        sim.add_instance("drv-1", "open")
        before = float(looptime)
        await api.post("/message/sendText/drv-1", json={"number": NUMBER, "text": "hi", "delay": 1500})

    assert float(looptime) - before == pytest.approx(1.5)


async def test_webhook_set_upserts_and_find_returns_the_stored_row() -> None:
    async with evolution() as (sim, api):
        await create(api, "drv-1")
        none = await api.get("/webhook/find/drv-1")
        webhook = {"enabled": True, "url": "http://op/hook", "events": ["CONNECTION_UPDATE"], "byEvents": True}
        first = await api.post("/webhook/set/drv-1", json={"webhook": webhook})
        second = await api.post(
            "/webhook/set/drv-1", json={"webhook": {"enabled": True, "url": "http://op/hook2", "events": []}}
        )
        found = (await api.get("/webhook/find/drv-1")).json()

    assert (none.status_code, none.text) == (200, "null")
    assert first.status_code == 201
    row = first.json()
    assert set(row) == {
        "id", "url", "headers", "enabled", "events", "webhookByEvents", "webhookBase64",
        "createdAt", "updatedAt", "instanceId",
    }  # fmt: skip
    assert (row["events"], row["webhookByEvents"], row["instanceId"]) == (
        ["CONNECTION_UPDATE"],
        True,
        sim.instances["drv-1"].id,
    )
    assert second.json()["id"] == row["id"]
    assert found["url"] == "http://op/hook2"
    assert found["webhookByEvents"] is True  # not in the second request: kept
    assert len(found["events"]) == 31


async def test_webhook_set_errors() -> None:
    async with evolution() as (_, api):
        await create(api, "drv-1")
        no_events = await api.post("/webhook/set/drv-1", json={"webhook": {"enabled": True, "url": "http://op"}})
        no_url = await api.post("/webhook/set/drv-1", json={"webhook": {"enabled": True}})
        flat = await api.post("/webhook/set/drv-1", json={"url": "http://op", "enabled": True})
        bad_event = await api.post(
            "/webhook/set/drv-1", json={"webhook": {"enabled": True, "url": "http://op", "events": ["NOPE"]}}
        )
        disabled = await api.post(
            "/webhook/set/drv-1", json={"webhook": {"enabled": False, "url": "http://op", "events": ["CALL"]}}
        )

    assert (no_events.status_code, no_events.json()) == (
        500,
        error(500, "Cannot read properties of undefined (reading 'length')"),
    )
    assert no_url.json() == error(400, ['webhook requires property "url"'])
    assert flat.json() == error(400, ['instance requires property "webhook"'])
    assert bad_event.json()["response"]["message"][0].startswith("webhook.events[0] is not one of enum values: ")
    assert disabled.json()["events"] == []


async def test_requests_are_recorded_without_the_api_key() -> None:
    async with evolution() as (sim, api):
        await create(api, "drv-1", token="secret-token")
        await api.get("/instance/connectionState/drv-1", headers={"apikey": "secret-token"})
        await api.get("/instance/connectionState/ghost")

    assert [(r.method, r.path, r.status, r.auth) for r in sim.requests] == [
        ("POST", "/instance/create", 201, "global"),
        ("GET", "/instance/connectionState/drv-1", 200, "token"),
        ("GET", "/instance/connectionState/ghost", 404, "global"),
    ]
    assert sim.requests[0].body["token"] == "***"
    assert KEY not in repr(sim.requests)
    assert "secret-token" not in repr(sim.requests)


async def test_root_describes_the_server() -> None:
    async with evolution() as (_, api):
        body = (await api.get("/", headers={"apikey": ""})).json()

    assert (body["status"], body["version"], body["clientName"]) == (200, "2.3.6", "evolution")
