"""The status API of an active/standby pair (kopf peering): the standby answers 503 with Retry-After
until it takes over. Real time: the second replica runs on an event loop of its own, in a thread,
so that neither kopf cancels the other's tasks when it stops."""

from __future__ import annotations

import asyncio

from tests.support.loop_thread import LoopThread
from tests.support.operator_harness import STATUS_API_TOKEN, backends, instance_manifest, wait_phase
from tests.support.peering import announced, create_peering, replica, started
from tests.support.status_api import Answer, StatusClient, status_client
from whatsapp_operator.devkit.manifests import NAMESPACE, STATUS_API_SECRET, status_api_secret_manifest
from whatsapp_operator.engine.runner import running

STATUS_API = {"status_api_secret": (NAMESPACE, STATUS_API_SECRET)}


async def until(api: StatusClient, status: int, within: float) -> Answer:
    async with asyncio.timeout(within):
        while (answer := await api.get("ana")).status != status:  # noqa: ASYNC110  # another loop's state
            await asyncio.sleep(0.2)
    return answer


async def test_a_standby_answers_503_until_it_takes_over() -> None:
    async with backends() as (kube, sim):
        await kube.create(status_api_secret_manifest(STATUS_API_TOKEN))
        await create_peering(kube)
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        standby = replica(kube, priority=0, **STATUS_API)
        thread: LoopThread | None = None
        try:
            active = replica(kube, priority=100, **STATUS_API)
            async with running(active):
                await wait_phase(kube, "ana", "Connected", within=30)
                async with status_client(active.http.url if active.http else None) as api:
                    assert (await api.get("ana")).status == 200
                thread = await started(standby)
                async with status_client(standby.http.url if standby.http else None) as api:
                    await announced(kube, replicas=2)
                    answer = await api.get("ana")
                    assert (answer.status, answer.headers["Retry-After"]) == (503, "5")
                    assert answer.headers["Cache-Control"] == "no-store"
                    assert "standby" in answer.body["error"]
                    assert (await api.get("ana", token="wrong")).status == 401, "the token is checked first"
            # The active replica left the peering as it stopped: the standby takes over.
            async with status_client(standby.http.url if standby.http else None) as api:
                answer = await until(api, 200, within=60)
            assert (answer.body["state"], answer.body["phase"]) == ("open", "Connected")
        finally:
            if thread is not None:
                await thread.stop_async()
