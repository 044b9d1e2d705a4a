"""WhatsAppInstance: every watch event updates the runtime's map of instances and wakes the owning
prober; deletion removes the Evolution instance (unless `deletionPolicy: Retain`)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import kopf

from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.core.resources import InstanceSpec
from whatsapp_operator.engine.handlers import registry
from whatsapp_operator.engine.runtime import Runtime
from whatsapp_operator.evolution import errors as evo_errors

RESOURCE = (GROUP, VERSION, "whatsappinstances")
logger = logging.getLogger(__name__)


@kopf.on.event(*RESOURCE, registry=registry)
async def instance_event(body: kopf.Body, type: str | None, memo: Runtime, **_: Any) -> None:
    """Every watch event, our own status writes included: cheap, the prober ignores non-news.
    Async on purpose: kopf runs sync handlers in threads, and the prober is not thread-safe."""
    spec = InstanceSpec.parse(body)
    if type == "DELETED" or body.metadata.get("deletionTimestamp"):
        memo.instance_gone(spec.key)
    else:
        memo.instance_seen(spec, body.get("status") or {})


@kopf.on.delete(*RESOURCE, registry=registry, timeout=600)
async def instance_deleted(body: kopf.Body, memo: Runtime, **_: Any) -> None:
    spec = InstanceSpec.parse(body)
    prober = memo.prober(spec.namespace, spec.server)
    if spec.retain:
        logger.info("%s/%s deleted; Evolution instance %s retained", *spec.key, spec.instance_name)
        return
    if prober is None:
        kopf.warn(body, reason="NotCleanedUp", message=f"no EvolutionServer {spec.server!r}; {spec.instance_name} kept")
        return
    prober.forget(spec.key)
    try:
        with contextlib.suppress(evo_errors.InstanceNotFound):
            await prober.client.delete(spec.instance_name)
    except evo_errors.EvolutionUnavailable as exc:
        raise kopf.TemporaryError(f"cannot delete {spec.instance_name} on Evolution yet: {exc}", delay=15) from exc
