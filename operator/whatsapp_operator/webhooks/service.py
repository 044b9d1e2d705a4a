"""The webhook path as one part the operator starts and stops: inbox, worker, receiver, server."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from whatsapp_operator.http_server import HttpServer
from whatsapp_operator.webhooks.inbox import Inbox
from whatsapp_operator.webhooks.receiver import WebhookReceiver
from whatsapp_operator.webhooks.worker import Processor, QueuePolicy, WebhookWorker


class WebhookService:
    def __init__(
        self,
        database_url: str,
        listen: str,
        *,
        secrets: Callable[[], Iterable[str]],
        process: Processor,
        active: Callable[[], bool],
        policy: QueuePolicy | None = None,
    ) -> None:
        self.inbox = Inbox(database_url)
        self.worker = WebhookWorker(self.inbox, process, policy, active=active)
        receiver = WebhookReceiver(self.inbox, secrets, accepted=self.worker.wake)
        self.server = HttpServer(listen, receiver.app())
        self.url: str | None = None  # the server's base URL once started
        self._started = False

    async def start(self) -> None:
        await self.inbox.open()
        self.worker.start()
        self._started = True
        self.url = await self.server.start()

    async def stop(self) -> None:
        """Stop answering first (requests in flight still land), then stop processing."""
        if not self._started:
            return
        self._started = False
        await self.server.stop()
        await self.worker.stop()
        await self.inbox.close()
