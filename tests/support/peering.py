"""An active/standby pair of operators through kopf's peering, as the prod overlay runs them
(docs/deploy.md). The standby runs on an event loop of its own, in a thread: kopf cancels, when it
stops, every task of its loop that it did not start with, so two operators cannot share one loop.
Real time, then: looptime fast-forwards only the test's own loop."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.loop_thread import LoopThread
from tests.support.operator_harness import operator_runtime
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.manifests import peering_manifest
from whatsapp_operator.engine.runner import operate
from whatsapp_operator.engine.runtime import Runtime

PEERING = "whatsapp-operator"


def replica(kube: EmulatedCluster, priority: int, database_url: str | None = None, **settings: Any) -> Runtime:
    """One operator of the pair: the highest priority is active, the others stand by."""
    return operator_runtime(kube, database_url, peering=PEERING, priority=priority, **settings)


async def started(runtime: Runtime) -> LoopThread:
    """The operator of `runtime` in a thread, once its HTTP server listens."""

    async def main(stop: asyncio.Event) -> None:
        await operate(runtime.config, runtime=runtime, stop_flag=stop)

    thread = LoopThread(main, "standby replica")
    thread.start()
    async with asyncio.timeout(30):
        while runtime.http is None or runtime.http.url is None:  # noqa: ASYNC110  # another loop's state
            await asyncio.sleep(0.05)
    return thread


async def create_peering(kube: EmulatedCluster) -> None:
    """The ClusterKopfPeering `PEERING`, for replicas to join."""
    await kube.create(peering_manifest(PEERING))


async def announced(kube: EmulatedCluster, replicas: int, within: float = 30) -> None:
    """Until `replicas` operators have announced themselves in the peering: from then on a standby
    knows it is one."""
    async with asyncio.timeout(within):
        await kube.wait_for("clusterkopfpeerings", PEERING, lambda o: len((o or {}).get("status") or {}) == replicas)
