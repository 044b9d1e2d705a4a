"""The status API of an active/standby pair (kopf peering): the standby answers 503 with Retry-After
until it takes over. Real time: the second replica runs on an event loop of its own, in a thread,
so that neither kopf cancels the other's tasks when it stops."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.support.operator_harness import STATUS_API_TOKEN, backends, instance_manifest, operator_runtime, wait_phase
from tests.support.status_api import Answer, StatusClient, status_client
from whatsapp_operator.devkit.manifests import NAMESPACE, STATUS_API_SECRET, status_api_secret_manifest
from whatsapp_operator.engine.runner import operate, running
from whatsapp_operator.engine.runtime import Runtime

PEERING = "whatsapp-operator"


class ReplicaInThread:
    """An operator on its own event loop in its own thread, until `stop()`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="standby replica")

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        await operate(self.runtime.config, runtime=self.runtime, stop_flag=self._stop)

    async def url(self) -> str:
        self._thread.start()
        async with asyncio.timeout(30):
            while self.runtime.http is None or self.runtime.http.url is None:  # noqa: ASYNC110  # another loop's
                await asyncio.sleep(0.05)
        return self.runtime.http.url

    async def stop(self) -> None:
        """The replica stops by talking to the API server, which runs on this loop: never block it."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, 60)
        assert not self._thread.is_alive(), "the standby did not stop"


def replica(kube: Any, priority: int) -> Runtime:
    return operator_runtime(kube, peering=PEERING, priority=priority, status_api_secret=(NAMESPACE, STATUS_API_SECRET))


async def until(api: StatusClient, status: int, within: float) -> Answer:
    async with asyncio.timeout(within):
        while (answer := await api.get("ana")).status != status:  # noqa: ASYNC110  # another loop's state
            await asyncio.sleep(0.2)
    return answer


async def test_a_standby_answers_503_until_it_takes_over() -> None:
    async with backends() as (kube, sim):
        await kube.create(status_api_secret_manifest(STATUS_API_TOKEN))
        await kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}})
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        standby = ReplicaInThread(replica(kube, priority=0))
        try:
            active = replica(kube, priority=100)
            async with running(active):
                await wait_phase(kube, "ana", "Connected", within=30)
                async with status_client(active.http.url if active.http else None) as api:
                    assert (await api.get("ana")).status == 200
                async with status_client(await standby.url()) as api:
                    async with asyncio.timeout(30):  # both replicas have announced themselves
                        await kube.wait_for(
                            "clusterkopfpeerings", PEERING, lambda o: len((o or {}).get("status") or {}) == 2
                        )
                    answer = await api.get("ana")
                    assert (answer.status, answer.headers["Retry-After"]) == (503, "5")
                    assert answer.headers["Cache-Control"] == "no-store"
                    assert "standby" in answer.body["error"]
                    assert (await api.get("ana", token="wrong")).status == 401, "the token is checked first"
            # The active replica left the peering as it stopped: the standby takes over.
            async with status_client(standby.runtime.http.url if standby.runtime.http else None) as api:
                answer = await until(api, 200, within=60)
            assert (answer.body["state"], answer.body["phase"]) == ("open", "Connected")
        finally:
            await standby.stop()
