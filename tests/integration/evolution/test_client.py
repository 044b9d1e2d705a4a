"""The Evolution client against canned answers copied from the contract (httpx.MockTransport)."""

import asyncio
import json
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from whatsapp_operator.core.breaker import BreakerState, CircuitBreaker
from whatsapp_operator.core.phone import InvalidPhoneNumber
from whatsapp_operator.evolution import (
    BadRequest,
    CircuitOpen,
    ConnectionState,
    EvolutionClient,
    EvolutionError,
    EvolutionTimeout,
    EvolutionUnavailable,
    InstanceInfo,
    InstanceNotFound,
    LiveState,
    MalformedResponse,
    NameInUse,
    NotConnected,
    NumberNotOnWhatsApp,
    OperationFailed,
    QRCode,
    SentMessage,
    Unauthorized,
    UnexpectedResponse,
    WebhookSettings,
)

pytestmark = pytest.mark.looptime

API_KEY = "global-key-5f0c2a9e"
NAME = "drv-42"
PAIRING_CODE = "WZYEH1YY"
QR_PAYLOAD = "2@y8eK+bjtEjUWy9/FOM,Fh7VxGrvmbLkMk6Aw=,8BfWmGL+UY=,lT4QX+vlM="
QR_IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg"
INSTANCE_TOKEN = "8C6D2E0A-7B4F-4D1E-9A3C-0F1E2D3C4B5A"


def envelope(status: int, error: str, message: Any) -> httpx.Response:
    """Evolution's error body (contract section 1)."""
    return httpx.Response(status, json={"status": status, "error": error, "response": {"message": message}})


UNAUTHORIZED = envelope(401, "Unauthorized", "Unauthorized")
INSTANCE_MISSING = envelope(404, "Not Found", [f'The "{NAME}" instance does not exist'])
SERVER_ERROR = envelope(500, "Internal Server Error", "Cannot read properties of undefined (reading 'id')")
UNAVAILABLE = httpx.Response(503, text="upstream connect error", headers={"content-type": "text/plain"})
OK_STATE = httpx.Response(200, json={"instance": {"instanceName": NAME, "state": "open"}})


class FakeEvolution:
    """Answers requests in turn (the last answer repeats) and records them with their loop time."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(asyncio.get_running_loop().time())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)  # fresh each time

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self) -> Any:
        return json.loads(self.last.content)


def client_for(fake: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> EvolutionClient:
    return EvolutionClient("http://evolution.test:8080/", API_KEY, transport=httpx.MockTransport(fake), **kwargs)


# -- requests and typed answers --------------------------------------------------------------------


async def test_create_instance_sends_baileys_integration_token_and_inline_webhook() -> None:
    fake = FakeEvolution(
        httpx.Response(
            201,
            json={
                "instance": {
                    "instanceName": NAME,
                    "instanceId": "af5c3d1e-0000-4000-8000-000000000001",
                    "integration": "WHATSAPP-BAILEYS",
                    "webhookWaBusiness": None,
                    "accessTokenWaBusiness": "",
                    "status": "close",
                },
                "hash": INSTANCE_TOKEN,
                "webhook": {"webhookUrl": "http://op/hook", "webhookHeaders": {}, "webhookByEvents": False},
                "websocket": {},
                "settings": {"rejectCall": False},
            },
        )
    )
    webhook = WebhookSettings(url="http://op/hook", events=("CONNECTION_UPDATE",), headers={"jwt_key": "hush"})
    async with client_for(fake) as client:
        created = await client.create_instance(NAME, token=INSTANCE_TOKEN, webhook=webhook, number="5511987654321")

    assert (fake.last.method, fake.last.url.path) == ("POST", "/instance/create")
    assert fake.last.headers["apikey"] == API_KEY
    assert fake.body() == {
        "instanceName": NAME,
        "integration": "WHATSAPP-BAILEYS",
        "token": INSTANCE_TOKEN,
        "qrcode": False,
        "number": "5511987654321",
        "webhook": {
            "enabled": True,
            "url": "http://op/hook",
            "events": ["CONNECTION_UPDATE"],
            "headers": {"jwt_key": "hush"},
            "byEvents": False,
            "base64": False,
        },
    }
    assert created.name == NAME
    assert created.instance_id == "af5c3d1e-0000-4000-8000-000000000001"
    assert created.status is ConnectionState.CLOSE
    assert created.token == INSTANCE_TOKEN
    assert created.qrcode is None
    assert INSTANCE_TOKEN not in repr(created)


async def test_inline_webhook_without_events_still_sends_an_array() -> None:
    fake = FakeEvolution(UNAUTHORIZED)
    async with client_for(fake) as client:
        with pytest.raises(Unauthorized):
            await client.create_instance(NAME, token="t", webhook=WebhookSettings(url="http://op/hook"))
    assert fake.body()["webhook"]["events"] == []
    assert "number" not in fake.body()


async def test_create_with_qrcode_returns_the_first_code_without_showing_it() -> None:
    fake = FakeEvolution(
        httpx.Response(
            201,
            json={
                "instance": {"instanceName": NAME, "instanceId": "id-1", "status": "connecting"},
                "hash": INSTANCE_TOKEN,
                "qrcode": {"pairingCode": PAIRING_CODE, "code": QR_PAYLOAD, "base64": QR_IMAGE, "count": 1},
            },
        )
    )
    async with client_for(fake) as client:
        created = await client.create_instance(NAME, token=INSTANCE_TOKEN, qrcode=True)
    assert fake.body()["qrcode"] is True
    assert created.qrcode == QRCode(count=1, pairing_code=PAIRING_CODE, code=QR_PAYLOAD, base64=QR_IMAGE)
    for secret in (PAIRING_CODE, QR_PAYLOAD, QR_IMAGE, INSTANCE_TOKEN):
        assert secret not in repr(created)


async def test_connect_with_number_asks_for_a_pairing_code() -> None:
    fake = FakeEvolution(
        httpx.Response(200, json={"pairingCode": PAIRING_CODE, "code": QR_PAYLOAD, "base64": QR_IMAGE, "count": 1})
    )
    async with client_for(fake) as client:
        answer = await client.connect(NAME, number="5511987654321")
    assert fake.last.method == "GET"
    assert str(fake.last.url) == f"http://evolution.test:8080/instance/connect/{NAME}?number=5511987654321"
    assert answer == QRCode(count=1, pairing_code=PAIRING_CODE, code=QR_PAYLOAD, base64=QR_IMAGE)
    assert repr(answer) == "QRCode(count=1)"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"instance": {"instanceName": NAME, "state": "open"}}, LiveState(NAME, ConnectionState.OPEN)),
        ({"count": 3}, QRCode(count=3)),  # Evolution answered before the socket produced a code
        (
            {"pairingCode": None, "code": QR_PAYLOAD, "base64": QR_IMAGE, "count": 2},
            QRCode(2, None, QR_PAYLOAD, QR_IMAGE),
        ),
    ],
)
async def test_connect_answers_open_or_the_current_code(body: dict[str, Any], expected: object) -> None:
    fake = FakeEvolution(httpx.Response(200, json=body))
    async with client_for(fake) as client:
        assert await client.connect(NAME) == expected
    assert fake.last.url.query == b""


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        ({"instanceName": NAME, "state": "connecting"}, ConnectionState.CONNECTING),
        ({"instanceName": NAME}, None),  # in the database but not loaded in memory
    ],
)
async def test_connection_state(instance: dict[str, str], expected: ConnectionState | None) -> None:
    fake = FakeEvolution(httpx.Response(200, json={"instance": instance}))
    async with client_for(fake) as client:
        assert await client.connection_state(NAME) == LiveState(NAME, expected)
    assert (fake.last.method, fake.last.url.path) == ("GET", f"/instance/connectionState/{NAME}")


async def test_logout_and_delete() -> None:
    fake = FakeEvolution(
        httpx.Response(200, json={"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}),
        httpx.Response(200, json={"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}),
    )
    async with client_for(fake) as client:
        assert await client.logout(NAME) is None
        assert await client.delete(NAME) is None
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("DELETE", f"/instance/logout/{NAME}"),
        ("DELETE", f"/instance/delete/{NAME}"),
    ]


async def test_restart_answers_like_connect() -> None:
    fake = FakeEvolution(OK_STATE)
    async with client_for(fake) as client:
        assert await client.restart(NAME) == LiveState(NAME, ConnectionState.OPEN)
    assert (fake.last.method, fake.last.url.path) == ("POST", f"/instance/restart/{NAME}")


async def test_fetch_instances_reads_flat_rows() -> None:
    row = {
        "id": "af5c3d1e",
        "name": NAME,
        "connectionStatus": "close",
        "ownerJid": "5511987654321@s.whatsapp.net",
        "profileName": "Motorista",
        "profilePicUrl": None,
        "integration": "WHATSAPP-BAILEYS",
        "number": "5511987654321",
        "businessId": None,
        "token": INSTANCE_TOKEN,
        "clientName": "evolution",
        "disconnectionReasonCode": 401,
        "disconnectionObject": '{"error":{}}',
        "disconnectionAt": "2025-10-21T10:00:00.000Z",
        "Setting": {},
        "_count": {"Message": 0},
    }
    fake = FakeEvolution(httpx.Response(200, json=[row]))
    async with client_for(fake) as client:
        rows = await client.fetch_instances(NAME)
    assert fake.last.url.path == "/instance/fetchInstances"
    assert fake.last.url.params["instanceName"] == NAME
    assert rows == [
        InstanceInfo(
            id="af5c3d1e",
            name=NAME,
            connection_status=ConnectionState.CLOSE,
            owner_jid="5511987654321@s.whatsapp.net",
            profile_name="Motorista",
            number="5511987654321",
            integration="WHATSAPP-BAILEYS",
            disconnection_reason_code=401,
            disconnection_at=datetime(2025, 10, 21, 10, 0, tzinfo=UTC),
        )
    ]
    assert INSTANCE_TOKEN not in repr(rows)


async def test_fetch_all_instances_has_no_filter() -> None:
    fake = FakeEvolution(httpx.Response(200, json=[]))
    async with client_for(fake) as client:
        assert await client.fetch_instances() == []
    assert fake.last.url.query == b""


async def test_send_text_sends_digits_and_delay_in_milliseconds() -> None:
    fake = FakeEvolution(
        httpx.Response(
            201,
            json={
                "key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": True, "id": "3EB0A1B2C3"},
                "pushName": "",
                "status": "PENDING",
                "message": {"conversation": "Olá"},
                "messageType": "conversation",
                "messageTimestamp": 1730000000,
            },
        )
    )
    async with client_for(fake) as client:
        sent = await client.send_text("sender", "5511987654321", "Olá", delay=1.2, link_preview=False)
    assert (fake.last.method, fake.last.url.path) == ("POST", "/message/sendText/sender")
    assert fake.body() == {"number": "5511987654321", "text": "Olá", "delay": 1200, "linkPreview": False}
    assert sent == SentMessage(id="3EB0A1B2C3", remote_jid="5511987654321@s.whatsapp.net", status="PENDING")


async def test_set_webhook_sends_the_nested_form_and_reads_the_stored_names() -> None:
    stored = {
        "id": "wh-1",
        "url": "http://op/hook",
        "headers": {"x-token": "s3cr3t"},
        "enabled": True,
        "events": ["CONNECTION_UPDATE", "QRCODE_UPDATED"],
        "webhookByEvents": True,
        "webhookBase64": False,
        "createdAt": "2025-10-21T10:00:00.000Z",
        "updatedAt": "2025-10-21T10:00:00.000Z",
        "instanceId": "af5c3d1e",
    }
    settings = WebhookSettings(
        url="http://op/hook",
        events=("CONNECTION_UPDATE", "QRCODE_UPDATED"),
        headers={"x-token": "s3cr3t"},
        by_events=True,
    )
    fake = FakeEvolution(
        httpx.Response(201, json=stored),
        httpx.Response(200, json=stored),
        httpx.Response(200, content=b"null", headers={"content-type": "application/json"}),
    )
    async with client_for(fake) as client:
        assert await client.set_webhook(NAME, settings) == settings
        assert fake.body() == {
            "webhook": {
                "enabled": True,
                "url": "http://op/hook",
                "events": ["CONNECTION_UPDATE", "QRCODE_UPDATED"],
                "headers": {"x-token": "s3cr3t"},
                "byEvents": True,
                "base64": False,
            }
        }
        assert await client.find_webhook(NAME) == settings
        assert await client.find_webhook("never-configured") is None
    assert [r.url.path for r in fake.requests] == [
        f"/webhook/set/{NAME}",
        f"/webhook/find/{NAME}",
        "/webhook/find/never-configured",
    ]
    assert "s3cr3t" not in repr(settings)


async def test_instance_names_are_escaped_in_paths() -> None:
    fake = FakeEvolution(OK_STATE)
    async with client_for(fake) as client:
        await client.connection_state("a/b c")
    assert fake.last.url.raw_path == b"/instance/connectionState/a%2Fb%20c"


@pytest.mark.parametrize("number", ["+5511987654321", "55 11 98765-4321", "5511987654321@s.whatsapp.net", "0119876"])
async def test_numbers_not_in_evolution_form_are_refused_before_any_request(number: str) -> None:
    fake = FakeEvolution(OK_STATE)
    async with client_for(fake) as client:
        with pytest.raises(InvalidPhoneNumber, match="digits only"):
            await client.connect(NAME, number=number)
        with pytest.raises(InvalidPhoneNumber, match="digits only"):
            await client.send_text(NAME, number, "hi")
    assert fake.requests == []


async def test_calls_where_evolution_waits_get_that_long_on_top_of_the_read_timeout() -> None:
    fake = FakeEvolution(OK_STATE)
    async with client_for(fake, timeout=5.0) as client:
        await client.connection_state(NAME)
        probe_timeouts = fake.last.extensions["timeout"]
        await client.connect(NAME)
        connect_timeouts = fake.last.extensions["timeout"]
    assert probe_timeouts == {"connect": 2.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    assert connect_timeouts["read"] == 7.0


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (UNAUTHORIZED, Unauthorized, "connection_state 'drv-42': API key refused (HTTP 401)"),
        (INSTANCE_MISSING, InstanceNotFound, "connection_state 'drv-42': instance does not exist (HTTP 404)"),
        (
            envelope(404, "Not Found", [f"Cannot GET /instance/connectionState/{NAME}"]),
            UnexpectedResponse,
            f"connection_state 'drv-42': unexpected answer: Cannot GET /instance/connectionState/{NAME} (HTTP 404)",
        ),
        (
            httpx.Response(404, text="<html>404 Not Found</html>", headers={"content-type": "text/html"}),
            UnexpectedResponse,
            "connection_state 'drv-42': unexpected answer: Not Found (HTTP 404)",
        ),
        (
            envelope(400, "Bad Request", ["instanceName is required", "Invalid integration"]),
            BadRequest,
            "connection_state 'drv-42': instanceName is required; Invalid integration (HTTP 400)",
        ),
        (envelope(400, "Bad Request", 42), BadRequest, "connection_state 'drv-42': bad request (HTTP 400)"),
        (
            httpx.Response(200, json={"error": True, "message": "[object Object]"}),
            OperationFailed,
            "connection_state 'drv-42': Evolution reported an error: [object Object] (HTTP 200)",
        ),
        (
            httpx.Response(405, text=""),
            UnexpectedResponse,
            "connection_state 'drv-42': unexpected answer: Method Not Allowed (HTTP 405)",
        ),
    ],
)
async def test_answers_from_a_working_server_are_final(answer: httpx.Response, error: type, text: str) -> None:
    fake = FakeEvolution(answer)
    async with client_for(fake) as client:
        with pytest.raises(error) as info:
            await client.connection_state(NAME)
    assert type(info.value) is error
    assert str(info.value) == text
    assert (info.value.operation, info.value.instance) == ("connection_state", NAME)
    assert len(fake.requests) == 1


async def test_create_with_a_taken_name_is_name_in_use() -> None:
    fake = FakeEvolution(envelope(403, "Forbidden", [f'This name "{NAME}" is already in use.']))
    async with client_for(fake) as client:
        with pytest.raises(NameInUse) as info:
            await client.create_instance(NAME, token="t")
    assert info.value.status_code == 403
    assert len(fake.requests) == 1


async def test_logout_of_a_closed_instance_is_not_connected() -> None:
    fake = FakeEvolution(envelope(400, "Bad Request", [f'The "{NAME}" instance is not connected']))
    async with client_for(fake) as client:
        with pytest.raises(NotConnected):
            await client.logout(NAME)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        envelope(500, "Internal Server Error", "Connection Closed"),
        envelope(400, "Bad Request", ["Error: Connection Closed"]),
    ],
)
async def test_send_text_from_a_disconnected_instance_is_not_a_server_failure(answer: httpx.Response) -> None:
    fake = FakeEvolution(answer)
    breaker = CircuitBreaker(failure_threshold=1, clock=asyncio.get_running_loop().time)
    async with client_for(fake, breaker=breaker) as client:
        with pytest.raises(NotConnected):
            await client.send_text("sender", "5511987654321", "Olá")
    assert len(fake.requests) == 1
    assert breaker.state is BreakerState.CLOSED


async def test_send_text_to_a_number_without_whatsapp() -> None:
    fake = FakeEvolution(
        envelope(
            400, "Bad Request", [{"jid": "5511900000000@s.whatsapp.net", "exists": False, "number": "5511900000000"}]
        )
    )
    async with client_for(fake) as client:
        with pytest.raises(NumberNotOnWhatsApp) as info:
            await client.send_text("sender", "5511900000000", "Olá")
    assert isinstance(info.value, BadRequest)
    assert info.value.messages == (
        '{"exists": false, "jid": "5511900000000@s.whatsapp.net", "number": "5511900000000"}',
    )


async def test_restart_of_a_closed_instance_is_operation_failed() -> None:
    fake = FakeEvolution(httpx.Response(200, json={"error": True, "message": "[object Object]"}))
    async with client_for(fake) as client:
        with pytest.raises(OperationFailed):
            await client.restart(NAME)
    assert len(fake.requests) == 1


async def test_three_attempts_on_503_with_exponential_backoff_and_jitter() -> None:
    fake = FakeEvolution(UNAVAILABLE)
    async with client_for(fake) as client:
        with pytest.raises(EvolutionUnavailable) as info:
            await client.connection_state(NAME)
    assert type(info.value) is EvolutionUnavailable
    assert str(info.value) == "connection_state 'drv-42': server error: Service Unavailable (HTTP 503)"
    assert len(fake.requests) == 3
    first_wait, second_wait = fake.times[1] - fake.times[0], fake.times[2] - fake.times[1]
    assert 0.1 <= first_wait <= 0.2
    assert 0.2 <= second_wait <= 0.3


async def test_a_retry_that_succeeds_is_invisible() -> None:
    fake = FakeEvolution(SERVER_ERROR, OK_STATE)
    async with client_for(fake) as client:
        assert await client.connection_state(NAME) == LiveState(NAME, ConnectionState.OPEN)
    assert len(fake.requests) == 2


async def test_attempts_and_backoff_are_configurable() -> None:
    fake = FakeEvolution(SERVER_ERROR)
    async with client_for(fake, attempts=5, backoff_base=1.0) as client:
        with pytest.raises(EvolutionUnavailable):
            await client.connection_state(NAME)
    waits = [later - earlier for earlier, later in zip(fake.times, fake.times[1:], strict=False)]
    assert len(waits) == 4
    for wait, base in zip(waits, [1, 2, 4, 8], strict=True):
        assert base <= wait <= base + 1


@pytest.mark.parametrize(
    ("failure", "error", "text"),
    [
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            EvolutionUnavailable,
            "connection_state 'drv-42': cannot reach the server (ConnectError: [Errno 111] Connection refused)",
        ),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            EvolutionUnavailable,
            "connection_state 'drv-42': cannot reach the server"
            " (RemoteProtocolError: Server disconnected without sending a response.)",
        ),
        (
            httpx.ReadTimeout("timed out"),
            EvolutionTimeout,
            "connection_state 'drv-42': no answer in time (ReadTimeout)",
        ),
        (
            httpx.ConnectTimeout("timed out"),
            EvolutionTimeout,
            "connection_state 'drv-42': no answer in time (ConnectTimeout)",
        ),
    ],
)
async def test_transport_failures_are_retried_then_unavailable(failure: Exception, error: type, text: str) -> None:
    fake = FakeEvolution(failure)
    async with client_for(fake) as client:
        with pytest.raises(error) as info:
            await client.connection_state(NAME)
    assert type(info.value) is error
    assert str(info.value) == text
    assert info.value.status_code is None
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, json={"instance": {"instanceName": NAME, "state": "refused"}}),
        httpx.Response(200, json=[]),
    ],
)
async def test_a_success_status_with_a_body_that_is_not_evolutions_is_malformed(answer: httpx.Response) -> None:
    fake = FakeEvolution(answer)
    async with client_for(fake) as client:
        with pytest.raises(MalformedResponse) as info:
            await client.connection_state(NAME)
    assert isinstance(info.value, EvolutionUnavailable)
    assert len(fake.requests) == 3


# -- circuit breaker ------------------------------------------------------------------------------


async def test_breaker_opens_after_five_failed_calls_and_then_sends_nothing(looptime: float) -> None:
    fake = FakeEvolution(UNAVAILABLE)
    breaker = CircuitBreaker(clock=asyncio.get_running_loop().time)
    async with client_for(fake, breaker=breaker) as client:
        for _ in range(4):
            with pytest.raises(EvolutionUnavailable):
                await client.connection_state(NAME)
        assert breaker.state is BreakerState.CLOSED
        with pytest.raises(EvolutionUnavailable):
            await client.connection_state(NAME)
        assert breaker.state is BreakerState.OPEN
        assert len(fake.requests) == 15  # five calls of three attempts each
        opened_at = float(looptime)

        with pytest.raises(CircuitOpen) as info:
            await client.logout(NAME)
        assert len(fake.requests) == 15
        assert info.value.retry_after == 60.0
        assert str(info.value) == "logout 'drv-42': circuit breaker is open: retry in 60.0s"

        fake.answers = [OK_STATE]
        await asyncio.sleep(opened_at + 60 - float(looptime))
        assert await client.connection_state(NAME) == LiveState(NAME, ConnectionState.OPEN)
        assert breaker.state is BreakerState.CLOSED
        assert len(fake.requests) == 16


async def test_any_http_answer_proves_the_server_is_up() -> None:
    fake = FakeEvolution(UNAVAILABLE)
    breaker = CircuitBreaker(clock=asyncio.get_running_loop().time)
    async with client_for(fake, breaker=breaker) as client:
        for answer, calls in ((UNAVAILABLE, 4), (INSTANCE_MISSING, 1), (UNAVAILABLE, 4)):
            fake.answers = [answer]
            for _ in range(calls):
                with pytest.raises(EvolutionError):
                    await client.connection_state(NAME)
    assert breaker.state is BreakerState.CLOSED
    assert len(fake.requests) == 8 * 3 + 1


async def test_the_client_has_a_breaker_even_when_none_is_given() -> None:
    fake = FakeEvolution(httpx.ConnectError("refused"))
    async with client_for(fake) as client:
        for _ in range(5):
            with pytest.raises(EvolutionUnavailable):
                await client.connection_state(NAME)
        with pytest.raises(CircuitOpen):
            await client.connection_state(NAME)
    assert client.breaker.state is BreakerState.OPEN


# -- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ConnectError("All connection attempts failed"),
        httpx.ReadTimeout("timed out"),
        UNAUTHORIZED,
        SERVER_ERROR,
        INSTANCE_MISSING,
        httpx.Response(200, text="not json"),
    ],
)
async def test_the_api_key_appears_in_no_error_text(answer: httpx.Response | Exception) -> None:
    fake = FakeEvolution(answer)
    async with client_for(fake) as client:
        with pytest.raises(EvolutionError) as info:
            await client.connection_state(NAME)
        assert API_KEY not in repr(client)
    error = info.value
    rendered = "".join(traceback.format_exception(error))  # includes any chained httpx exception
    for text in (str(error), repr(error), rendered):
        assert API_KEY not in text
    assert fake.last.headers["apikey"] == API_KEY  # the key was sent, just never shown
