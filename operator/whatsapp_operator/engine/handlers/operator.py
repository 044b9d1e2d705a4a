"""Process-wide handlers: login, and the settings that make kopf ours (finalizer, annotations)."""

from __future__ import annotations

import logging
import socket
from typing import Any

import kopf

from whatsapp_operator import GROUP, kube
from whatsapp_operator.core.resources import FINALIZER
from whatsapp_operator.engine.handlers import registry
from whatsapp_operator.engine.runtime import Runtime
from whatsapp_operator.kube import COMPONENT


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # kopf would post an Event for every handler's INFO log line; ours are posted explicitly.
    settings.posting.level = logging.WARNING
    # Events say who wrote them: `kubectl describe`'s From column, and the pod (its hostname).
    settings.posting.reporting_component = COMPONENT
    settings.posting.reporting_instance = socket.gethostname()
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


@kopf.on.login(registry=registry)
async def login(memo: Runtime, logger: kopf.Logger, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials and our client's, one login (`kube.login`); kopf calls it again on a 401,
    our client too (the same call)."""

    async def again() -> kopf.ConnectionInfo:
        return await kube.login(memo.config.kube_server, logger=logger, settings=settings)

    info = await again()
    await memo.kube.use(info, again)
    return info


@kopf.on.cleanup(registry=registry)
async def shutdown(memo: Runtime, **_: Any) -> None:
    """Stop the webhook receiver and land the mirror's queued writes while kopf still lets us: once
    its own tasks are done, kopf cancels every task it did not start with, ours and our pools' too."""
    await memo.shutdown()
