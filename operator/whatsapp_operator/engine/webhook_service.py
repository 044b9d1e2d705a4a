"""The webhook path as one part the operator starts and stops: inbox, worker and receiver (whose
routes the operator's HTTP server carries, engine.http_service)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from whatsapp_operator.engine.metrics import Metrics
from whatsapp_operator.webhooks.inbox import Inbox
from whatsapp_operator.webhooks.receiver import WebhookReceiver
from whatsapp_operator.webhooks.worker import Processor, QueuePolicy, WebhookWorker

WORKER_CONNECTIONS = 2  # a claim and a completion at once; jobs are processed off-database


class WebhookService:
    def __init__(
        self,
        database_url: str,
        *,
        secrets: Callable[[], Iterable[str]],
        process: Processor,
        active: Callable[[], bool],
        policy: QueuePolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        # Two pools: in a burst the receiver's INSERTs would take every connection, and the worker,
        # waiting its turn behind them, fell seconds behind (bench.webhooks, performance.md).
        self.inbox = Inbox(database_url)
        self.queue = Inbox(database_url, pool_max_size=WORKER_CONNECTIONS, connection_timeout=5.0)
        metrics = metrics or Metrics()
        self.worker = WebhookWorker(
            self.queue, process, policy, active=active, counted=metrics.webhook, stats=metrics.webhook_queue
        )
        self.receiver = WebhookReceiver(self.inbox, secrets, accepted=self.worker.wake, counted=metrics.webhook)
        self._started = False

    def add_routes(self, app: web.Application) -> None:
        self.receiver.add_routes(app)

    async def start(self) -> None:
        await self.inbox.open()
        await self.queue.open()
        self.worker.start()
        self._started = True

    async def stop(self) -> None:
        """Once the server stopped answering (requests in flight have landed): stop processing."""
        if not self._started:
            return
        self._started = False
        await self.worker.stop()
        await self.queue.close()
        await self.inbox.close()
