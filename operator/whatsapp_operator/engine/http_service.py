"""The operator's HTTP server on `--webhook-listen`: the status API always, and Evolution's webhooks
when there is a database (a webhook is stored in Postgres before it is acknowledged); the server
and the webhook path started and stopped as one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from whatsapp_operator import openapi
from whatsapp_operator.bearer import BearerToken
from whatsapp_operator.http_server import HttpServer
from whatsapp_operator.status_api import StatusApi
from whatsapp_operator.webhooks.receiver import MAX_BODY_BYTES

if TYPE_CHECKING:
    from whatsapp_operator.engine.runtime import Runtime
    from whatsapp_operator.engine.webhook_service import WebhookService

logger = logging.getLogger(__name__)


class HttpService:
    def __init__(self, listen: str, status: StatusApi, webhooks: WebhookService | None) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)  # the status API's GETs read no body
        status.add_routes(app)
        if webhooks is not None:
            webhooks.add_routes(app)
        self.status = status
        self.webhooks = webhooks
        self.server = HttpServer(listen, app)
        self.url: str | None = None  # the server's base URL once started

    async def start(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.start()
        self.url = await self.server.start()

    async def stop(self) -> None:
        """Stop answering first (requests in flight still land), then stop processing webhooks."""
        if self.url is not None:
            self.url = None
            await self.server.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()


def http_service(runtime: Runtime) -> HttpService | None:
    """The server `runtime.config` asks for (None with `--webhook-listen off`)."""
    config = runtime.config
    if config.webhook_listen is None:
        return None
    webhooks = None
    if config.database_url:
        from whatsapp_operator.engine.webhook_service import WebhookService

        webhooks = WebhookService(
            config.database_url,
            secrets=runtime.webhook_secrets,
            process=runtime.process_webhook,
            active=runtime.serving,  # a replica still starting stores, and processes later
            metrics=runtime.metrics,
        )
    else:
        logger.warning("webhook receiver off: webhooks are stored in Postgres first, and no database is set")
    token = None
    if config.status_api_secret is not None:
        token = BearerToken(runtime.kube, *config.status_api_secret)
    else:
        logger.info("status API not configured (--status-api-secret): it answers 503")
    status = StatusApi(
        lookup=runtime.driver_status,
        serving=runtime.serving,
        token=token,
        document=openapi.document(webhooks=webhooks is not None),
    )
    return HttpService(config.webhook_listen, status, webhooks)
