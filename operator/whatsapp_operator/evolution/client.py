"""Async client for the Evolution API v2.3.6 calls the operator makes."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from whatsapp_operator.core.breaker import CircuitBreaker, CircuitOpenError
from whatsapp_operator.core.phone import InvalidPhoneNumber
from whatsapp_operator.evolution.aiohttp_transport import AiohttpTransport
from whatsapp_operator.evolution.errors import CircuitOpen, EvolutionUnavailable, interpret, transport_error
from whatsapp_operator.evolution.models import (
    ConnectResult,
    CreatedInstance,
    InstanceInfo,
    LiveState,
    NumberCheck,
    SentMessage,
    WebhookSettings,
    connect_result,
    instance_list,
    number_checks,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A TCP connect inside a cluster takes milliseconds; one that takes seconds is a dropped SYN (node down,
# network policy), and waiting the whole read timeout for it only delays the retry.
CONNECT_TIMEOUT = 2.0
# Evolution runs on Node, whose HTTP server closes idle keep-alive connections after 5 s; reusing one
# just as the server closes it fails the request, so the client lets idle connections go first.
KEEPALIVE_EXPIRY = 4.0
# Server-side waits before Evolution answers (contract 2.1, 2.2, 2.6), added to the read timeout.
CREATE_WITH_QR_WAIT = 5.0
CONNECT_WAIT = 2.0
USER_AGENT = "whatsapp-operator"

_DIGITS = re.compile(r"[1-9]\d{7,14}")


def _digits(number: str) -> str:
    """Evolution pastes the number into a WhatsApp JID as it is: a '+' or a space silently breaks pairing."""
    if not _DIGITS.fullmatch(number):
        raise InvalidPhoneNumber(number, "Evolution needs digits only, country code first (see evolution_number)")
    return number


def _path(template: str, name: str) -> str:
    return template.format(quote(name, safe=""))


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.debug("%s; attempt %d failed, retrying in %.2fs", error, state.attempt_number, delay)


class EvolutionClient:
    """One Evolution server: pooled HTTP connections, retries and a circuit breaker around every call.

    Timeouts: `timeout` bounds reading an answer (the probe's timeoutSeconds), plus the time Evolution
    deliberately waits on create with a QR code, connect, restart and a sendText with a typing delay;
    connecting is capped at `CONNECT_TIMEOUT` so that an unreachable server fails fast into a retry.
    `max_connections` should match the concurrency of calls to this server (the probe concurrency),
    so that no call waits for a pooled connection; every one of them is kept alive between calls.
    The connections are aiohttp's (`AiohttpTransport`: httpx's own pool costs more per request the
    more connections it holds); `transport` replaces them, as tests do with `httpx.MockTransport`.

    Each call is attempted up to `attempts` times when the server is unavailable (refused, timed
    out, 5xx, garbage), waiting `backoff_base` x 1, 2, 4... seconds plus up to `backoff_base` of
    jitter in between; any other answer is final. The breaker sees each call once, after its retries:
    an exhausted `EvolutionUnavailable` is a failure, any answer from the server (even a 404) a success.
    While it is open, calls raise `CircuitOpen` without a request. Without a `breaker` the client
    makes its own with the default thresholds, timed by the running event loop.

    Phone numbers are taken in Evolution's form, digits with the country code (`phone.evolution_number`);
    sendText is at-least-once (a timed-out send is retried and may have been delivered).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff_base: float = 0.1,
        breaker: CircuitBreaker | None = None,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.base_url = base_url.rstrip("/")
        self.breaker = breaker or CircuitBreaker(clock=_loop_time)
        self._timeout = timeout
        self._attempts = attempts
        # Built once: tenacity copies it for each call that needs a second attempt.
        self._retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=backoff_base) + wait_random(0, backoff_base),
            retry=retry_if_exception_type(EvolutionUnavailable),
            sleep=asyncio.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        self._headers = httpx.Headers({"apikey": api_key, "accept": "application/json", "user-agent": USER_AGENT})
        self._transport = transport or AiohttpTransport(
            max_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY
        )

    def __repr__(self) -> str:
        return f"<EvolutionClient {self.base_url} breaker={self.breaker.state}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def create_instance(
        self,
        name: str,
        *,
        token: str,
        webhook: WebhookSettings | None = None,
        number: str | None = None,
        qrcode: bool = False,
    ) -> CreatedInstance:
        """Create a Baileys instance whose own API key is `token`; `number` only pairs with
        ``qrcode=True``, which also starts connecting and returns the first code."""
        body: dict[str, Any] = {
            "instanceName": name,
            "integration": "WHATSAPP-BAILEYS",
            "token": token,
            "qrcode": qrcode,
        }
        if number is not None:
            body["number"] = _digits(number)
        if webhook is not None:
            body["webhook"] = webhook.to_json()
        return await self._call(
            "create_instance",
            name,
            CreatedInstance.from_json,
            "POST",
            "/instance/create",
            payload=body,
            server_wait=CREATE_WITH_QR_WAIT if qrcode else 0.0,
        )

    async def connect(self, name: str, *, number: str | None = None) -> ConnectResult:
        """Start connecting a closed instance (pairing-code mode with `number`) or read the
        current code of a connecting one; an open instance answers `LiveState`."""
        params = None if number is None else {"number": _digits(number)}
        return await self._call(
            "connect",
            name,
            connect_result,
            "GET",
            _path("/instance/connect/{}", name),
            params=params,
            server_wait=CONNECT_WAIT,
        )

    async def connection_state(self, name: str) -> LiveState:
        return await self._call(
            "connection_state", name, LiveState.from_json, "GET", _path("/instance/connectionState/{}", name)
        )

    async def logout(self, name: str) -> None:
        """Unlink the device; the instance stays and needs a fresh pairing. `NotConnected` if closed."""
        await self._call("logout", name, _ignore, "DELETE", _path("/instance/logout/{}", name))

    async def delete(self, name: str) -> None:
        """Logs out and removes the instance; Evolution finishes the cleanup after answering."""
        await self._call("delete", name, _ignore, "DELETE", _path("/instance/delete/{}", name))

    async def restart(self, name: str) -> ConnectResult:
        """Reconnect an open or connecting instance; a closed one answers `OperationFailed`."""
        return await self._call(
            "restart", name, connect_result, "POST", _path("/instance/restart/{}", name), server_wait=CONNECT_WAIT
        )

    async def on_whatsapp(self, name: str, jid: str, *, answer_within: float) -> list[NumberCheck]:
        """Ask WhatsApp, over the instance's own socket, whether `jid` has an account: an uncached
        round trip, so any answer proves the socket alive (docs/liveness.md). A dead socket answers
        `NotConnected`; one that does not answer within `answer_within` seconds, `SocketTimeout`.
        Neither is retried: the liveness rules count failed checks themselves."""
        return await self._call(
            "on_whatsapp",
            name,
            number_checks,
            "POST",
            _path("/baileys/onWhatsapp/{}", name),
            payload={"jid": jid},
            read_timeout=answer_within,
            socket_bound=True,
        )

    async def fetch_instances(self, name: str | None = None) -> list[InstanceInfo]:
        """All instances of this server, or the one named (`InstanceNotFound` if it is not loaded)."""
        params = None if name is None else {"instanceName": name}
        return await self._call(
            "fetch_instances", name, instance_list, "GET", "/instance/fetchInstances", params=params
        )

    async def fetch_instance(self, name: str) -> InstanceInfo | None:
        """The named instance's row (None if the answer holds no row of that name)."""
        return next((row for row in await self.fetch_instances(name) if row.name == name), None)

    async def send_text(
        self,
        name: str,
        number: str,
        text: str,
        *,
        delay: float | None = None,
        link_preview: bool | None = None,
    ) -> SentMessage:
        """Send `text` from instance `name` to `number`. `delay` is in seconds: Evolution shows
        "typing..." that long before sending, and answers only afterwards."""
        body: dict[str, Any] = {"number": _digits(number), "text": text}
        if delay is not None:
            body["delay"] = round(delay * 1000)
        if link_preview is not None:
            body["linkPreview"] = link_preview
        return await self._call(
            "send_text",
            name,
            SentMessage.from_json,
            "POST",
            _path("/message/sendText/{}", name),
            payload=body,
            server_wait=delay or 0.0,
        )

    async def set_webhook(self, name: str, webhook: WebhookSettings) -> WebhookSettings:
        """Replace the instance's webhook; returns it as Evolution stored it."""
        return await self._call(
            "set_webhook",
            name,
            WebhookSettings.from_stored,
            "POST",
            _path("/webhook/set/{}", name),
            payload={"webhook": webhook.to_json()},
        )

    async def find_webhook(self, name: str) -> WebhookSettings | None:
        return await self._call(
            "find_webhook",
            name,
            lambda body: None if body is None else WebhookSettings.from_stored(body),
            "GET",
            _path("/webhook/find/{}", name),
        )

    def _timeouts(self, server_wait: float, timeout: float) -> dict[str, float]:
        """httpx's per-request timeout extension (what `httpx.Timeout.as_dict()` gives)."""
        read = timeout + server_wait
        return {"connect": min(CONNECT_TIMEOUT, timeout), "read": read, "write": read, "pool": timeout}

    async def _call(
        self,
        operation: str,
        instance: str | None,
        parse: Callable[[Any], T],
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        payload: Any = None,
        server_wait: float = 0.0,
        read_timeout: float | None = None,
        socket_bound: bool = False,
    ) -> T:
        """`read_timeout` replaces the client's timeout for this call; `socket_bound`: the answer waits for the
        instance's WhatsApp socket, so a late answer is the socket's silence (errors.transport_error)."""
        timeouts = self._timeouts(server_wait, self._timeout if read_timeout is None else read_timeout)

        async def attempt() -> T:
            request = httpx.Request(
                method,
                self.base_url + path,
                params=params,
                json=payload,
                headers=self._headers,
                extensions={"timeout": timeouts},
            )
            try:
                response = await self._transport.handle_async_request(request)
                await response.aread()
            except httpx.TransportError as exc:
                raise transport_error(exc, operation, instance, socket_bound=socket_bound) from exc
            # The path only: a query string may carry a phone number.
            logger.debug("%s %s: %d", method, path, response.status_code)
            return interpret(response, operation, instance, parse)

        try:
            with self.breaker.guard(failures=(EvolutionUnavailable,)):
                return await self._attempted(attempt)
        except CircuitOpenError as exc:
            raise CircuitOpen(str(exc), operation=operation, instance=instance, retry_after=exc.retry_after) from None

    async def _attempted(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """The first attempt made directly (nearly every call succeeds at once, and a tenacity loop
        costs more than the request's own Python work); from a failed one on, tenacity's policy,
        which is given that failure as its first attempt, so that waits and counts are unchanged."""
        try:
            return await attempt()
        except EvolutionUnavailable as exc:
            if self._attempts == 1:
                raise
            first: list[EvolutionUnavailable] = [exc]

        async def again() -> T:
            if first:
                raise first.pop()
            return await attempt()

        return await self._retrying.copy()(again)


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _ignore(body: Any) -> None:
    """For calls whose answer carries nothing beyond success."""
