"""`POST /webhooks/evolution[/<event>]`: Evolution's webhooks, stored before they are acknowledged.

Answers, and why (Evolution retries timeouts, 5xx and most 4xx, but not 400, 401, 403, 404, 422):
401 without valid credentials, 400 for a body that is not a webhook, 413 past the size limit,
503 while Postgres cannot store it or no server's secret is known yet to check it against
(Evolution retries for about 20 minutes), and 200 once the webhook is in the inbox, or when it is
one the operator does not act on (it is not stored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from aiohttp import web

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.webhooks.auth import BadCredentials, NoSecretYet, authenticate
from whatsapp_operator.webhooks.envelope import InvalidWebhook, parse
from whatsapp_operator.webhooks.inbox import Inbox, InboxUnavailable

log = logging.getLogger(__name__)
PATH = "/webhooks/evolution"
MAX_BODY_BYTES = 1024 * 1024  # connection events are < 1 KiB; a media message with base64 can be MBs
RETRY_AFTER_SECONDS = 5
UNREAD = "unknown"  # the event of a webhook refused before its body was read
WARN_EVERY_SECONDS = 60.0  # a flood of bad requests costs one log line a minute per kind


Counted = Callable[[str, str], None]  # (event, result): what became of one webhook, for the metrics


class WebhookReceiver:
    def __init__(
        self,
        inbox: Inbox,
        secrets: Callable[[], Iterable[str]],
        accepted: Callable[[], None],
        counted: Counted = lambda event, result: None,
    ) -> None:
        """`secrets`: the webhook secrets of the EvolutionServers now running; `accepted` is called
        after each new webhook is stored (it wakes the queue's worker); `counted(event, result)`
        after each answer (result: accepted, duplicate, ignored, refused, unavailable)."""
        self.inbox = inbox
        self.secrets = secrets
        self.accepted = accepted
        self.counted = counted
        self._clock: LoopClock | None = None
        self._warned: dict[int, float] = {}

    def add_routes(self, app: web.Application) -> None:
        """On another server's application: its `client_max_size` must be MAX_BODY_BYTES."""
        app.router.add_post(PATH, self.receive)
        app.router.add_post(PATH + "/{suffix}", self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        try:
            authenticate(request.headers, self.secrets())
        except BadCredentials as exc:
            return self._reject(401, str(exc))
        except NoSecretYet as exc:
            return self._unavailable(str(exc))
        try:
            envelope = parse(await request.read(), request.match_info.get("suffix"))
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
        except InvalidWebhook as exc:
            return self._reject(400, str(exc))
        if not envelope.relevant:
            self.counted(envelope.event, "ignored")
            return web.json_response({"ignored": f"the operator does not act on {envelope.event}"})
        self._clock = self._clock or LoopClock()
        try:
            new = await self.inbox.accept(envelope, self._clock.now())
        except InboxUnavailable:
            return self._unavailable("the webhook cannot be stored now", envelope.event)
        if new:
            self.accepted()
        self.counted(envelope.event, "accepted" if new else "duplicate")
        return web.json_response({"accepted": True, "duplicate": not new})

    def _unavailable(self, message: str, event: str = UNREAD) -> web.Response:
        """Evolution retries a 503 (10 times over about 20 minutes): nothing is lost."""
        self.counted(event, "unavailable")
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return web.json_response({"error": f"{message}; retry"}, status=503, headers=headers)

    def _reject(self, status: int, message: str) -> web.Response:
        self.counted(UNREAD, "refused")
        now = time.monotonic()
        if now - self._warned.get(status, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
            self._warned[status] = now
            log.warning("refused a webhook (%d): %s", status, message)
        return web.json_response({"error": message}, status=status)
