"""A webhook receiver on loopback that records every POST and answers scripted statuses.

For tests and demos of what the simulator (or a real Evolution) sends; the operator has its own receiver.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(slots=True)
class ReceivedWebhook:
    at: float  # event-loop time of arrival
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes = b""  # as sent, for checking a signature over it

    @property
    def event(self) -> str | None:
        return self.body.get("event") if isinstance(self.body, dict) else None

    @property
    def instance(self) -> str | None:
        return self.body.get("instance") if isinstance(self.body, dict) else None


class WebhookSink:
    """Answers the scripted `statuses` in turn, then `default` for ever."""

    def __init__(self, statuses: Iterable[int] = (), default: int = 200) -> None:
        self.statuses = list(statuses)
        self.default = default
        self.posts: list[ReceivedWebhook] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookSink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def events(self, instance: str | None = None) -> list[str | None]:
        """Event names in arrival order, optionally for one instance."""
        return [post.event for post in self.posts if instance in (None, post.instance)]

    def of(self, event: str) -> list[ReceivedWebhook]:
        return [post for post in self.posts if post.event == event]

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        arrival = asyncio.get_running_loop().time()
        self.posts.append(ReceivedWebhook(arrival, request.path, dict(request.headers), body, raw))
        return web.Response(status=self.statuses.pop(0) if self.statuses else self.default)
