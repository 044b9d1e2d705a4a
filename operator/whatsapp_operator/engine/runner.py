"""`whatsapp-operator run`: the operator itself, and `operate()` to embed it (tests, the demo)."""

from __future__ import annotations

import argparse
import asyncio
import gc
from typing import Any

import kopf
import uvloop

from whatsapp_operator.engine import logs, settings
from whatsapp_operator.engine.handlers import registry
from whatsapp_operator.engine.handlers.operator import configure
from whatsapp_operator.engine.http_service import http_service
from whatsapp_operator.engine.metrics import PATH
from whatsapp_operator.engine.runtime import Runtime
from whatsapp_operator.engine.settings import Config, ConfigError
from whatsapp_operator.http_server import HttpServer

# A probe's objects outlive young collections (they wait on Evolution), so with CPython's default
# thresholds they reach the oldest generation by the thousand, and a full collection over a 10,000-
# instance heap stalls the loop for hundreds of ms every few seconds (docs/performance.md).
GC_THRESHOLDS = (50_000, 20, 10)


async def operate(
    config: Config,
    *,
    runtime: Runtime | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    foreign_tasks: set[asyncio.Task[Any]] | None = None,
) -> None:
    """Run the operator until `stop_flag` is set (or forever). Postgres being down is not fatal:
    the mirror queues its writes and catches up.

    At exit kopf cancels every task of the loop that did not exist when it started. An embedding
    program (a test, the demo) adds the tasks kopf must leave alone to `foreign_tasks`, even later."""
    foreign_tasks = foreign_tasks if foreign_tasks is not None else set()
    foreign_tasks.update(asyncio.all_tasks())
    runtime = runtime or Runtime(config)
    settings = kopf.OperatorSettings()
    configure(settings)
    if config.database_url and runtime.mirror is None:
        from whatsapp_operator.db.mirror import StatusMirror

        runtime.mirror = StatusMirror(config.database_url, settings=config.mirror_settings(), on_sync=runtime.on_sync)
    if runtime.mirror is not None:
        await runtime.mirror.start()
        if runtime.drift is None:
            from whatsapp_operator.engine.drift import DriftRepair

            runtime.drift = DriftRepair(runtime.mirror, runtime.probers.values, runtime.metrics.mirror_repairs.inc)
            runtime.drift.start()
    if runtime.notifier is None:
        await runtime.start_notifier()
    runtime.metrics.watch(runtime)
    metrics_server = HttpServer(config.metrics_listen, runtime.metrics.app()) if config.metrics_listen else None
    if runtime.http is None:
        runtime.http = http_service(runtime)
    try:
        if metrics_server is not None:
            runtime.metrics_url = await metrics_server.start() + PATH
        if runtime.http is not None:
            await runtime.http.start()
        tasks = await kopf.spawn_tasks(
            registry=registry,
            settings=settings,
            memo=runtime,
            standalone=config.peering is None,
            peering_name=config.peering,
            priority=config.priority,
            namespaces=config.namespaces,
            clusterwide=not config.namespaces,
            liveness_endpoint=config.liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
        await kopf.run_tasks(tasks, ignored=foreign_tasks)
    finally:
        await runtime.shutdown()
        if metrics_server is not None:
            await metrics_server.stop()
        await runtime.kube.close()


class OperatorStopped(Exception):
    """The operator stopped before it was asked to, without an error: kopf handles SIGINT and SIGTERM."""


class running:
    """The operator in a task of the caller's loop, from ready until the block ends (tests, the demo).

    Enters once kopf is ready and the first EvolutionServer's prober exists (there must be one);
    an operator that stops before that raises its error here, or OperatorStopped. `task` ends
    early if kopf stops by itself."""

    def __init__(self, runtime: Runtime, *, startup_timeout: float = 30) -> None:
        self.runtime = runtime
        self.startup_timeout = startup_timeout
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
        readiness = asyncio.create_task(self.ready.wait())
        try:
            async with asyncio.timeout(self.startup_timeout):
                await asyncio.wait([self.task, readiness], return_when=asyncio.FIRST_COMPLETED)
        finally:
            readiness.cancel()
        # The server's prober starts with kopf's first events: wait until it exists.
        async with asyncio.timeout(self.startup_timeout):
            while not self.runtime.probers:
                if self.task.done():
                    await self.task  # raises why it stopped, if it did raise
                    raise OperatorStopped("the operator stopped before it was ready")
                await asyncio.sleep(0.1)
        return self.runtime

    async def __aexit__(self, *exc: object) -> None:
        self.foreign.add(asyncio.current_task())  # type: ignore[arg-type]  # the teardown itself
        # Connections the caller's servers (API emulator, simulator) serve for the operator's clients
        # stay open until kopf closes those clients, after its tasks end: waiting for them would cost
        # kopf's 5 s grace period on every stop. They are the caller's to close.
        self.foreign.update(t for t in asyncio.all_tasks() if _serves_a_connection(t))
        self.stop.set()
        assert self.task is not None
        async with asyncio.timeout(60):
            await self.task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = settings.load(args)
    except ConfigError as exc:
        print(f"whatsapp-operator run: {exc}")
        return 2
    logs.configure(verbose=config.verbose, log_format=config.log_format)
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # what the imports made lives as long as the process: no collection walks it again
    uvloop.run(operate(config))  # libuv's loop: less CPU per probe than asyncio's (docs/performance.md)
    return 0


def _serves_a_connection(task: asyncio.Task[Any]) -> bool:
    """An aiohttp server's task for one client connection."""
    return getattr(task.get_coro(), "__qualname__", "") == "RequestHandler.start"
