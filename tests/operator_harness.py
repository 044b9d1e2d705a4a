"""pytest fixtures running the real operator (`operate()`) against the strict Kubernetes emulator and
the Evolution simulator, all on the test's own event loop so that looptime fast-forwards every clock."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.config import Config
from whatsapp_operator.emulator import EmulatedCluster
from whatsapp_operator.runner import operate
from whatsapp_operator.runtime import Runtime
from whatsapp_operator.simulator import Simulator

API_KEY = "simulator-api-key"
API_VERSION = f"{GROUP}/{VERSION}"


def server_manifest(url: str, name: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "EvolutionServer",
        "metadata": {"name": name},
        "spec": {"url": url, "apiKeySecretRef": {"name": "evolution", "key": "apiKey"}, **spec},
    }


def instance_manifest(name: str, *, phone: str = "(11) 98765-4321", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WhatsAppInstance",
        "metadata": {"name": name},
        "spec": {"driverId": name, "phoneNumber": phone, "driverName": f"Driver {name}", **spec},
    }


@contextlib.asynccontextmanager
async def environment(
    *, database_url: str | None = None, **server_spec: Any
) -> AsyncIterator[tuple[EmulatedCluster, Simulator, Runtime]]:
    """The whole job started from the test body, so that every clock is looptime's from the start
    (fixtures run before looptime takes over the loop's clock, and timers armed there misfire).
    `database_url` turns the Postgres mirror on."""
    async with EmulatedCluster() as kube:
        sim = Simulator(api_key=API_KEY, seed=1)
        await sim.start()
        try:
            await kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "evolution"},
                    "data": {"apiKey": base64.b64encode(API_KEY.encode()).decode()},
                }
            )
            assert sim.base_url is not None
            await kube.create(server_manifest(sim.base_url, **server_spec))
            runtime = Runtime(Config(kube_server=kube.url, liveness=None, database_url=database_url))
            async with running(runtime):
                yield kube, sim, runtime
        finally:
            await sim.stop()
        violations = kube.violations()
    assert not violations, "a real API server would have dropped or refused:\n" + "\n".join(violations)


class running:
    """The operator in a task of the test's loop, from ready until the block ends."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.foreign: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Runtime:
        self.task = asyncio.create_task(
            operate(
                self.runtime.config,
                runtime=self.runtime,
                stop_flag=self.stop,
                ready_flag=self.ready,
                foreign_tasks=self.foreign,
            )
        )
        async with asyncio.timeout(30):
            await asyncio.wait([self.task, asyncio.ensure_future(self.ready.wait())], return_when="FIRST_COMPLETED")
        if self.task.done():
            await self.task
        # The server's prober starts with kopf's first events: wait until it exists.
        async with asyncio.timeout(30):
            while not self.runtime.probers:  # noqa: ASYNC110  # nothing to await: the daemon fills it
                await asyncio.sleep(0.1)
        return self.runtime

    async def __aexit__(self, *exc: object) -> None:
        self.foreign.add(asyncio.current_task())  # type: ignore[arg-type]  # the teardown itself
        self.stop.set()
        assert self.task is not None
        async with asyncio.timeout(60):
            await self.task


def phase_is(*phases: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in phases


async def wait_phase(kube: EmulatedCluster, name: str, *phases: str, within: float = 120) -> dict[str, Any]:
    async with asyncio.timeout(within):
        obj = await kube.wait_for("whatsappinstances", name, phase_is(*phases))
    assert obj is not None
    return obj


async def wait_event(kube: EmulatedCluster, name: str, reason: str, within: float = 30) -> list[dict[str, Any]]:
    """Events are posted by kopf in the background: wait for them."""
    async with asyncio.timeout(within):
        while not (events := kube.emulator.events(name=name, reason=reason)):
            await kube.emulator.next_change()
    return events


def statuses_seen(kube: EmulatedCluster, name: str) -> list[dict[str, Any]]:
    """Every status the object ever had, oldest first (from the emulator's version history)."""
    ref = kube.emulator.resolve("whatsappinstances").ref
    return [(version or {}).get("status") or {} for version in kube.emulator.objects[ref, "default", name].history]


def phase_changes(kube: EmulatedCluster, name: str) -> list[dict[str, Any]]:
    """The first status of each phase the object went through, in order."""
    changes: list[dict[str, Any]] = []
    for status in statuses_seen(kube, name):
        if status.get("phase") and (not changes or changes[-1]["phase"] != status["phase"]):
            changes.append(status)
    return changes


def phases_seen(kube: EmulatedCluster, name: str) -> list[str]:
    """Every phase the object's status ever had, in order."""
    return [status["phase"] for status in phase_changes(kube, name)]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"].get("conditions", []) if c["type"] == type_)


def requests_to(sim: Simulator, method: str, prefix: str) -> list[Any]:
    return [r for r in sim.requests if r.method == method and r.path.startswith(prefix)]


def loop_now() -> float:
    return asyncio.get_running_loop().time()


def utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
