"""`whatsapp-operator run`: the operator itself, and `operate()` to embed it (tests, the demo)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import kopf

from whatsapp_operator import config as config_module
from whatsapp_operator.config import Config, ConfigError
from whatsapp_operator.handlers import registry
from whatsapp_operator.handlers.operator import configure
from whatsapp_operator.runtime import Runtime

logger = logging.getLogger(__name__)


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
        from whatsapp_operator.mirror import StatusMirror

        runtime.mirror = StatusMirror(config.database_url, on_sync=runtime.on_sync)
    if runtime.mirror is not None:
        await runtime.mirror.start()
    try:
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
        if runtime.mirror is not None:
            await runtime.mirror.stop()
        await runtime.kube.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_module.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_module.load(args)
    except ConfigError as exc:
        print(f"whatsapp-operator run: {exc}")
        return 2
    kopf.configure(
        verbose=config.verbose,
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    asyncio.run(operate(config))
    return 0
