"""Evolution's HTTP surface: routes, guards in Evolution's order, its error envelopes, and injected faults."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from whatsapp_operator.devkit.simulator import schema
from whatsapp_operator.devkit.simulator.admin import ADMIN_PREFIX, admin_routes
from whatsapp_operator.devkit.simulator.instance import DEFAULT_SETTINGS, SimInstance
from whatsapp_operator.devkit.simulator.records import RecordedRequest, SentRecord
from whatsapp_operator.devkit.simulator.webhooks import WebhookConfig

if TYPE_CHECKING:
    from whatsapp_operator.devkit.simulator.core import Simulator

log = logging.getLogger(__name__)

VERSION = "2.3.6"
INTEGRATIONS = ("WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION")
HANG_SECONDS = 3600.0  # a `timeouts` fault holds the request this long (or until stop), past any client timeout
STRINGIFIED_ERROR = "[object Object]"  # what connect/restart's catch-all makes of the exception it caught

_SUCCESS = {"status": "SUCCESS", "error": False}

# Express sends compact JSON.
json_response = functools.partial(web.json_response, dumps=functools.partial(json.dumps, separators=(",", ":")))


class ApiError(Exception):
    """An answer in Evolution's error envelope; `message` is a list for explicit exceptions, a str otherwise."""

    def __init__(self, status: int, message: str | list[Any]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        body = {"status": self.status, "error": HTTPStatus(self.status).phrase, "response": {"message": self.message}}
        return json_response(body, status=self.status)


def build_app(sim: Simulator) -> web.Application:
    api = EvolutionApi(sim)
    app = web.Application(middlewares=[api.middleware], client_max_size=136 * 1024 * 1024)
    app.add_routes(admin_routes(sim))
    app.add_routes(api.routes())
    app.router.add_route("*", "/{tail:.*}", api.not_found)  # Express' catch-all, also for wrong methods
    return app


class EvolutionApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.info),
            web.post("/instance/create", self.create),
            web.get("/instance/connect/{instanceName}", self.connect),
            web.get("/instance/connectionState/{instanceName}", self.connection_state),
            web.delete("/instance/logout/{instanceName}", self.logout),
            web.delete("/instance/delete/{instanceName}", self.delete),
            web.post("/instance/restart/{instanceName}", self.restart),
            web.get("/instance/fetchInstances", self.fetch_instances),
            web.post("/message/sendText/{instanceName}", self.send_text),
            web.post("/baileys/onWhatsapp/{instanceName}", self.on_whatsapp),
            web.post("/webhook/set/{instanceName}", self.webhook_set),
            web.get("/webhook/find/{instanceName}", self.webhook_find),
        ]

    # -------------------------------------------------------------------------------------- middleware

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record the request, apply the faults active for it, turn ApiError into Evolution's envelope."""
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        record = RecordedRequest(
            at=self.sim.elapsed(),
            method=request.method,
            path=request.path,
            query=dict(request.query),
            body=None,
            auth=self._auth_kind(request),
            instance=request.match_info.get("instanceName"),
        )
        self.sim.remember(self.sim.requests, record)
        try:
            record.body = _redacted(await _read_json(request))
            response = await self._faulty(request, record) or await handler(request)
        except ApiError as exc:
            response = exc.response()
        except Exception as exc:  # Express answers any other error with 500 and its message string
            log.exception("simulator bug answering %s %s", request.method, request.path)
            response = ApiError(500, str(exc)).response()
        record.status = None if isinstance(response, _NoAnswer) else response.status
        return response

    async def _faulty(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse | None:
        """The answer an active fault imposes, or None to let the handler answer (possibly late)."""
        faults = self.sim.active_faults(request.path)
        rng = self.sim.rng
        for fault in faults:
            if fault.kind == "outage":
                record.fault = "outage"
                if fault.mode == "503":
                    return web.Response(status=503, text="Service Unavailable")
                return _drop(request)  # the listener is closed too; a kept-alive connection dies with it
        delay = sum(f.ms + rng.uniform(0, f.jitter_ms) for f in faults if f.kind == "latency") / 1000
        if delay:
            record.fault = "latency"
            await asyncio.sleep(delay)
        for fault in faults:
            if fault.kind == "timeouts" and rng.random() < fault.rate:
                record.fault = "timeouts"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.sim.stopping.wait(), HANG_SECONDS)
                return _drop(request)
            if fault.kind == "errors" and rng.random() < fault.rate:
                record.fault = "errors"
                raise ApiError(fault.status, "Simulated failure")
        return None

    def _auth_kind(self, request: web.Request) -> str:
        key = request.headers.get("apikey")
        if not key:
            return "missing"
        if key == self.sim.api_key:
            return "global"
        instance = self.sim.instances.get(request.match_info.get("instanceName", ""))
        if instance is not None and instance.token == key:
            return "token"
        if request.path == "/instance/fetchInstances" and any(i.token == key for i in self.sim.instances.values()):
            return "token"
        return "invalid"

    # -------------------------------------------------------------------------------------- guards

    def _instance(self, request: web.Request) -> SimInstance:
        """instanceExistsGuard then authGuard: an unknown name is a 404 whatever the key."""
        name = request.match_info["instanceName"]
        instance = self.sim.instances.get(name)
        if instance is None:
            raise ApiError(404, [f'The "{name}" instance does not exist'])
        if request.headers.get("apikey") not in (self.sim.api_key, instance.token):
            raise ApiError(401, "Unauthorized")
        return instance

    def _require_global_key(self, request: web.Request) -> None:
        if request.headers.get("apikey") != self.sim.api_key:
            raise ApiError(401, "Unauthorized")

    # -------------------------------------------------------------------------------------- routes

    async def not_found(self, request: web.Request) -> web.Response:
        raise ApiError(404, [f"Cannot {request.method.upper()} {request.raw_path}"])

    async def info(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "status": 200,
                "message": "Welcome to the Evolution API, it is working!",
                "version": VERSION,
                "clientName": "evolution",
                "manager": f"{self.sim.base_url}/manager",
                "documentation": "https://doc.evolution-api.com",
                "whatsappWebVersion": "2.3000.1028950425",
            }
        )

    async def create(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name = body.get("instanceName")
        if isinstance(name, str) and name in self.sim.instances:
            raise ApiError(403, [f'This name "{name}" is already in use.'])
        self._require_global_key(request)
        messages = schema.validate(body, schema.CREATE)
        if messages:
            raise ApiError(400, messages)
        if not name:
            raise ApiError(400, ['The "instanceName" cannot be empty'])
        integration = body.get("integration")
        if integration not in INTEGRATIONS:
            raise ApiError(400, ["Invalid integration"])
        if integration != "WHATSAPP-BAILEYS":
            raise ApiError(400, [f"The simulator only implements WHATSAPP-BAILEYS, not {integration}"])
        instance = self.sim.new_instance(name, token=body.get("token"), number=body.get("number"))
        for key, default in DEFAULT_SETTINGS.items():
            instance.settings[key] = body.get(key) is True if isinstance(default, bool) else body.get(key) or ""
        webhook = body.get("webhook")
        if isinstance(webhook, dict | list) or webhook:  # JavaScript truthiness: {} counts
            try:
                instance.webhook = _inline_webhook(webhook)
            except ApiError:
                self.sim.forget(instance)  # Evolution's cleanup of a half-created instance
                raise
        self.sim.emit(instance, "instance.create", {"instanceName": name, "instanceId": instance.id})
        result: dict[str, Any] = {
            "instance": {
                "instanceName": name,
                "instanceId": instance.id,
                "integration": integration,
                "webhookWaBusiness": None,
                "accessTokenWaBusiness": "",
                "status": instance.state,
            },
            "hash": instance.token,
            "webhook": _defined(
                {
                    "webhookUrl": webhook.get("url"),
                    "webhookHeaders": webhook.get("headers"),
                    "webhookByEvents": webhook.get("byEvents"),
                    "webhookBase64": webhook.get("base64"),
                }
                if isinstance(webhook, dict)
                else {}
            ),
            **{
                key: _defined({"enabled": body[key].get("enabled")} if isinstance(body.get(key), dict) else {})
                for key in ("websocket", "rabbitmq", "nats", "sqs")
            },
            "settings": dict(instance.settings),
        }
        if body.get("qrcode") is True:
            instance.start_socket(instance.number)
            await asyncio.sleep(self.sim.timings.create_qr_wait)
            result["instance"]["status"] = instance.state
            result["qrcode"] = instance.qr_object()
        return json_response(result, status=201)

    async def connect(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        if instance.state == "open":
            return json_response(_state(instance))
        if instance.state == "connecting":
            return json_response(instance.qr_object())
        instance.start_socket(request.query.get("number") or None)
        await asyncio.sleep(self.sim.timings.connect_wait)
        return json_response(instance.qr_object())

    async def connection_state(self, request: web.Request) -> web.Response:
        return json_response(_state(self._instance(request)))

    async def logout(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        if instance.state == "close":
            raise ApiError(400, [f'The "{instance.name}" instance is not connected'])
        instance.logout()
        return json_response({**_SUCCESS, "response": {"message": "Instance logged out"}})

    async def delete(self, request: web.Request) -> web.Response:
        self.sim.delete(self._instance(request))
        return json_response({**_SUCCESS, "response": {"message": "Instance deleted"}})

    async def restart(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        if instance.state == "close":
            return json_response({"error": True, "message": STRINGIFIED_ERROR})
        answer = _state(instance) if instance.state == "open" else instance.qr_object()
        instance.restart()
        return json_response(answer)

    async def fetch_instances(self, request: web.Request) -> web.Response:
        key = request.headers.get("apikey")
        name, instance_id, number = (request.query.get(k) for k in ("instanceName", "instanceId", "number"))
        instances = list(self.sim.instances.values())
        if key != self.sim.api_key:
            # An instance token sees its own instances only (DATABASE_SAVE_DATA_INSTANCE=true).
            found = [
                i
                for i in instances
                if key and i.token == key and name in (None, i.name) and instance_id in (None, i.id)
            ]
            if not found:
                raise ApiError(401, "Unauthorized")
        elif instance_id or number:
            found = [i for i in instances if (i.id == instance_id if instance_id else i.number == number)][:1]
            if not found:
                raise ApiError(404, [f'Instance "{instance_id or number}" not found'])
        elif name:
            if name not in self.sim.instances:
                raise ApiError(404, [f'Instance "{name}" not found'])
            found = [self.sim.instances[name]]
        else:
            found = instances
        return json_response([_row(instance) for instance in found])

    async def send_text(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        body = await _body(request)
        messages = schema.validate(body, schema.SEND_TEXT)
        if messages:
            raise ApiError(400, messages)
        number, text = body["number"], body["text"]
        if not text.strip():
            raise ApiError(400, ["Text is required"])
        if instance.state != "open" or instance.zombie:
            raise ApiError(500, "Connection Closed")
        jid = _jid(number)
        digits = jid.split("@")[0]
        if jid.endswith("@s.whatsapp.net") and (not 10 <= len(digits) <= 15 or digits in self.sim.unregistered):
            raise ApiError(400, [{"jid": jid, "exists": False, "number": number}])
        if body.get("delay"):
            await asyncio.sleep(body["delay"] / 1000)  # "composing" first, the HTTP call blocks meanwhile
        message_id = "3EB0" + self.sim.rng.randbytes(9).hex().upper()
        now = int(time.time())
        message = {
            "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
            "pushName": "Você",
            "status": "PENDING",
            "message": {"conversation": text},
            "contextInfo": {
                "mentionedJid": [],
                "groupMentions": [],
                "ephemeralSettingTimestamp": {"low": now - 172800, "high": 0, "unsigned": False},
                "disappearingMode": {"initiator": 0},
            },
            "messageType": "conversation",
            "messageTimestamp": now,
            "instanceId": instance.id,
            "source": "web",
        }
        self.sim.remember(
            self.sim.messages, SentRecord(self.sim.elapsed(), instance.name, number, jid, text, message_id)
        )
        self.sim.emit(instance, "send.message", message)
        return json_response(message, status=201)

    async def on_whatsapp(self, request: web.Request) -> web.Response:
        """Baileys' onWhatsApp over the instance's socket (contract 2.13): no schema beyond the name, a
        dead socket's Boom has no status (500 "Connection Closed"), a fleet-wide `liveness` fault
        fails every socket at once."""
        instance = self._instance(request)
        jid = (await _body(request)).get("jid")
        if not isinstance(jid, str):
            raise ApiError(500, "Cannot read properties of undefined (reading 'replace')")
        rng = self.sim.rng
        fault = next((f for f in self.sim.active_faults(request.path) if f.kind == "liveness"), None)
        if fault is not None and rng.random() < fault.rate:
            if fault.mode == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.sim.stopping.wait(), HANG_SECONDS)
                return _drop(request)
            raise ApiError(500, "Connection Closed")
        if instance.state != "open" or instance.zombie:
            raise ApiError(500, "Connection Closed")
        jid = _jid(jid)
        return json_response([{"jid": jid, "exists": jid.split("@")[0] not in self.sim.unregistered}])

    async def webhook_set(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        body = await _body(request)
        messages = schema.validate(body, schema.WEBHOOK_SET)
        if messages:
            raise ApiError(400, messages)
        data = body["webhook"]
        if data["enabled"] and data.get("events") is None:
            raise ApiError(500, "Cannot read properties of undefined (reading 'length')")
        old = instance.webhook
        # An upsert: fields the request leaves out keep their stored (or default) values.
        merged = {"headers": None, "byEvents": False, "base64": False}
        kept: dict[str, Any] = {}
        if old:
            merged.update(headers=old.headers, byEvents=old.by_events, base64=old.base64)
            kept.update(id=old.id, created_at=old.created_at)
        merged.update(data)
        instance.webhook = WebhookConfig.stored(
            url=data["url"],
            enabled=data["enabled"],
            events=data.get("events") or [],
            headers=merged["headers"],
            by_events=merged["byEvents"],
            base64=merged["base64"],
            **kept,
        )
        return json_response(instance.webhook.row(instance.id), status=201)

    async def webhook_find(self, request: web.Request) -> web.Response:
        instance = self._instance(request)
        return json_response(instance.webhook.row(instance.id) if instance.webhook else None)


# ------------------------------------------------------------------------------------------ helpers


async def _read_json(request: web.Request) -> Any:
    """Express' json() parser: JSON bodies only, anything else reads as {}."""
    if not request.body_exists or request.content_type != "application/json":
        return {}
    try:
        return json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object sent (the middleware already rejected unparsable bodies)."""
    body = await _read_json(request)
    return body if isinstance(body, dict) else {}


def _redacted(body: Any) -> Any:
    """Instance tokens are credentials: keep them out of the request log."""
    if isinstance(body, dict) and "token" in body:
        return {**body, "token": "***"}
    return body


class _NoAnswer(web.Response):
    """Stands for an answer never sent: the connection was aborted instead."""


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering (the client sees a reset, like a crashed server)."""
    if request.transport is not None:
        request.transport.abort()
    return _NoAnswer(status=503)


def _inline_webhook(webhook: Any) -> WebhookConfig:
    """Create's inline webhook, failing the way Evolution fails (the caller then removes the instance)."""
    if not isinstance(webhook, dict) or webhook.get("events") is None:
        raise ApiError(400, ["Cannot read properties of undefined (reading 'length')"])
    if not isinstance(webhook.get("url"), str):
        raise ApiError(400, ["Argument `url` is missing."])
    return WebhookConfig.inline(webhook)


def _defined(data: dict[str, Any]) -> dict[str, Any]:
    """JSON.stringify drops undefined fields."""
    return {key: value for key, value in data.items() if value is not None}


def _state(instance: SimInstance) -> dict[str, Any]:
    return {"instance": {"instanceName": instance.name, "state": instance.state}}


def _jid(number: str) -> str:
    """Evolution's createJid, minus the group and Mexican/Argentinian special cases."""
    if any(suffix in number for suffix in ("@g.us", "@s.whatsapp.net", "@lid", "@broadcast")):
        return number
    digits = re.sub(r"\D", "", number.split(":")[0].split("@")[0])
    brazil = re.fullmatch(r"(55)(\d{2})\d(\d{8})", digits)
    if brazil and int(brazil[3][0]) >= 7 and int(brazil[2]) >= 31:
        digits = brazil[1] + brazil[2] + brazil[3]  # Evolution drops the 9th digit for these numbers
    return f"{digits}@s.whatsapp.net"


def _row(instance: SimInstance) -> dict[str, Any]:
    """fetchInstances' flat DB row: the DB status lags memory (not written on reconnects or the QR limit)."""
    setting_id = "c" + instance.id.replace("-", "")[:24]
    return {
        "id": instance.id,
        "name": instance.name,
        "connectionStatus": instance.db_status,
        "ownerJid": instance.wuid,
        "profileName": instance.profile_name,
        "profilePicUrl": instance.profile_picture_url,
        "integration": instance.integration,
        "number": instance.number,
        "businessId": None,
        "token": instance.token,
        "clientName": "evolution",
        "disconnectionReasonCode": instance.disconnection_reason_code,
        "disconnectionObject": instance.disconnection_object,
        "disconnectionAt": instance.disconnection_at,
        "createdAt": instance.created_at,
        "updatedAt": instance.updated_at,
        "Chatwoot": None,
        "Proxy": None,
        "Rabbitmq": None,
        "Nats": None,
        "Sqs": None,
        "Websocket": None,
        "Setting": {
            "id": setting_id,
            **instance.settings,
            "createdAt": instance.created_at,
            "updatedAt": instance.created_at,
            "instanceId": instance.id,
        },
        "_count": {"Message": 0, "Contact": 0, "Chat": 0},
    }
