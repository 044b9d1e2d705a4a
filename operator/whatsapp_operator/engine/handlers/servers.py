"""EvolutionServer: one daemon each, running the prober for the instances that point at it."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import kopf

from whatsapp_operator import GROUP, VERSION, callbacks
from whatsapp_operator.core.resources import ServerSpec
from whatsapp_operator.engine.handlers import registry
from whatsapp_operator.engine.prober import ServerProber
from whatsapp_operator.engine.runtime import Runtime
from whatsapp_operator.kube import KubeError

RESOURCE = (GROUP, VERSION, "evolutionservers")
SPEC_CHECK_SECONDS = 5.0
logger = logging.getLogger(__name__)


async def _secrets(memo: Runtime, namespace: str, spec: ServerSpec) -> tuple[str, str | None]:
    api_key = await memo.kube.read_secret(namespace, spec.api_key_ref.name, spec.api_key_ref.key)
    webhook_secret = None
    if spec.webhook_auth_ref is not None:
        ref = spec.webhook_auth_ref
        webhook_secret = await memo.kube.read_secret(namespace, ref.name, ref.key)
    return api_key, webhook_secret


async def _callback(memo: Runtime, namespace: str, spec: ServerSpec, body: kopf.Body) -> tuple[str, bytes] | None:
    """The application's callback URL and signing key; a missing or malformed secret leaves the
    channel off (with an Event) rather than stopping the probes."""
    ref = spec.callback_secret_ref
    if spec.callback_url is None or ref is None:
        return None
    try:
        return spec.callback_url, callbacks.signing_key(await memo.kube.read_secret(namespace, ref.name, ref.key))
    except (KubeError, callbacks.CallbackSecretInvalid) as exc:
        kopf.warn(body, reason="CallbackSecretUnavailable", message=f"notification callback off: {exc}")
        return None


# The backoff gives the daemon time to stop its prober and close its client by itself when asked,
# before kopf cancels it (and warns that it had to).
@kopf.daemon(*RESOURCE, registry=registry, cancellation_backoff=5, cancellation_timeout=10)
async def run_server(
    namespace: str,
    name: str,
    spec: kopf.Spec,
    body: kopf.Body,
    memo: Runtime,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """Runs until the server is deleted. kopf keeps `spec` live: a changed spec restarts the prober
    (a new URL, key or breaker needs a new client); the instances' state survives in their status."""
    try:
        await _serve(namespace, name, spec, body, memo, stopped)
    finally:
        memo.server_secret((namespace, name), None)


async def _serve(
    namespace: str, name: str, spec: kopf.Spec, body: kopf.Body, memo: Runtime, stopped: kopf.DaemonStopped
) -> None:
    while not stopped:
        server_spec = ServerSpec.parse(spec)
        try:
            api_key, webhook_secret = await _secrets(memo, namespace, server_spec)
        except KubeError as exc:
            kopf.warn(body, reason="SecretUnavailable", message=str(exc))
            await stopped.wait(30)
            continue
        memo.server_secret((namespace, name), webhook_secret)
        prober = ServerProber(
            namespace=namespace,
            name=name,
            spec=server_spec,
            api_key=api_key,
            kube=memo.kube,
            mirror=memo.mirror,
            webhook_secret=webhook_secret,
            notify_cooldown=datetime.timedelta(seconds=memo.config.notify_cooldown),
            callback=await _callback(memo, namespace, server_spec, body),
            decided=memo.notification_decided,
            notify_deadline=datetime.timedelta(seconds=memo.config.notify_deadline),
            metrics=memo.metrics.server(f"{namespace}/{name}"),
        )
        memo.prober_started(prober)
        task = asyncio.create_task(prober.run(), name=f"prober-{namespace}-{name}")
        try:
            while not stopped and not task.done() and ServerSpec.parse(spec) == server_spec:
                await stopped.wait(SPEC_CHECK_SECONDS)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            memo.prober_stopped(prober)
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("prober of %s/%s crashed: %r; restarting", namespace, name, task.exception())
            await stopped.wait(SPEC_CHECK_SECONDS)
