"""Detection latency by probing alone: from a state change on Evolution to the instance's `.status.phase`
on the API server and to its `usuarios.whatsapp_status` row in Postgres, through the real operator.

Each of `--instances` Connected instances is logged out on the simulator (terminal close 401, through its
admin API) at a random moment within one probe interval; the change reaches the operator at its next
probe, so latency is the wait for that probe (uniform over the interval) plus the work after it. The
`.status` side is timed on a watch of the API server, the database side by polling every 20 ms; both
clocks are this process's. The webhook half (a webhook pulls the next probe forward) waits for the
webhook receiver, which does not exist yet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import psycopg

from bench.cluster import PREFIX, instance_names
from bench.harness import (
    BenchError,
    Child,
    limit,
    machine,
    main,
    operator_argv,
    percentile,
    poll,
    shown,
    start_cluster,
    start_simulator,
    wait_converged,
    wait_quiet,
)
from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.embedded_db import EmbeddedPostgres
from whatsapp_operator.migrate import apply_migrations

DB_POLL_SECONDS = 0.02
PHASE, DB_STATUS = "LoggedOut", "disconnected"  # a terminal close (401): the driver must pair again


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__)
    p.add_argument("--instances", type=int, default=100, help="instances changed, one sample each")
    p.add_argument("--interval", type=int, default=30, help="the EvolutionServer's spec.probe.intervalSeconds")
    p.add_argument("--seed", type=int, default=1, help="seed of the moments of change")
    return p


@contextlib.asynccontextmanager
async def database(names: list[str]) -> AsyncIterator[str]:
    """An embedded Postgres, migrated, with one `usuarios` row per driver."""
    server = EmbeddedPostgres()
    await asyncio.to_thread(server.start)
    try:
        url = server.url()
        await asyncio.to_thread(apply_migrations, url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            rows = [(name, f"Driver {name}", "+5511987654321") for name in names]
            async with conn.cursor() as cursor:
                await cursor.executemany("INSERT INTO usuarios (id, nome, telefone) VALUES (%s, %s, %s)", rows)
        yield url
    finally:
        await asyncio.to_thread(server.close)


async def db_statuses(conn: psycopg.AsyncConnection[Any]) -> dict[str, str | None]:
    cursor = await conn.execute("SELECT id, whatsapp_status FROM usuarios")
    return {row[0]: row[1] for row in await cursor.fetchall()}


async def watch_db(url: str, seen: dict[str, float]) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            now = time.monotonic()
            for name, status in (await db_statuses(conn)).items():
                if status == DB_STATUS:
                    seen.setdefault(name, now)
            await asyncio.sleep(DB_POLL_SECONDS)


async def watch_status(kube_url: str, seen: dict[str, float]) -> None:
    """Every change of the instances as a watch delivers it; notes when each first shows PHASE."""
    path = f"{kube_url}/apis/{GROUP}/{VERSION}/namespaces/default/whatsappinstances"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        async with http.get(path) as response:
            version = (await response.json())["metadata"]["resourceVersion"]
        async with http.get(path, params={"watch": "true", "resourceVersion": version}) as response:
            async for line in response.content:
                if not line.strip():
                    continue
                obj = json.loads(line)["object"]
                if (obj.get("status") or {}).get("phase") == PHASE:
                    seen.setdefault(obj["metadata"]["name"], time.monotonic())


def latencies(changed: dict[str, float], seen: dict[str, float]) -> dict[str, float]:
    values = [seen[name] - at for name, at in changed.items()]
    return {
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


async def change_all(admin: httpx.AsyncClient, moments: dict[str, float]) -> dict[str, float]:
    """Log each instance out at its moment; returns when each request was sent (before the change)."""
    changed: dict[str, float] = {}
    origin = time.monotonic()
    for name, offset in sorted(moments.items(), key=lambda item: item[1]):
        await asyncio.sleep(max(0.0, origin + offset - time.monotonic()))
        changed[name] = time.monotonic()
        response = await admin.post(f"/_sim/instances/{name}/disconnect", json={"reason": 401})
        response.raise_for_status()
    return changed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = instance_names(args.instances)
    scenario = {"groups": [{"prefix": PREFIX, "count": args.instances, "start": "open"}]}
    probe = {"intervalSeconds": args.interval}
    rng = random.Random(args.seed)
    moments = {name: rng.uniform(0, args.interval) for name in names}
    async with contextlib.AsyncExitStack() as stack:
        db_url = await stack.enter_async_context(database(names))
        _, sim_url = await start_simulator(stack, scenario)
        cluster, kube_url = await start_cluster(stack)
        admin = await stack.enter_async_context(httpx.AsyncClient(base_url=sim_url, timeout=30))
        conn = await stack.enter_async_context(await psycopg.AsyncConnection.connect(db_url, autocommit=True))
        await cluster.ask("server", sim_url=sim_url, probe=probe)
        argv = operator_argv(kube_url, "--database-url", db_url)
        operator = await Child.spawn("operator", argv)
        stack.push_async_callback(operator.stop)
        await cluster.ask("instances", count=args.instances)

        async def mirrored() -> bool:
            return set((await db_statuses(conn)).values()) == {"connected"}

        async with limit(300, "the operator's convergence (status and database)"):
            await wait_converged(cluster, args.instances)
            await poll(mirrored, 0.2)
            await wait_quiet(cluster)
        on_status: dict[str, float] = {}
        on_db: dict[str, float] = {}
        watchers = [
            asyncio.create_task(watch_status(kube_url, on_status)),
            asyncio.create_task(watch_db(db_url, on_db)),
        ]
        try:
            changed = await change_all(admin, moments)

            async def all_seen() -> bool:
                return len(on_status) == len(on_db) == args.instances or any(w.done() for w in watchers)

            async with limit(args.interval + 60, "detecting every change"):
                await poll(all_seen, 0.1)
            for watcher in watchers:
                if watcher.done():
                    raise BenchError(f"a watcher stopped: {watcher.exception()!r}")
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
    return {
        "machine": machine(),
        "operator_command": shown(argv).replace(db_url, "<embedded postgres>"),
        "knobs": {"spec.probe": probe},
        "samples": args.instances,
        "change": "simulator admin API: POST /_sim/instances/{name}/disconnect, reason 401",
        "by_probe": {
            "probe_interval_seconds": args.interval,
            "to_status_phase_seconds": latencies(changed, on_status),
            "to_database_row_seconds": latencies(changed, on_db),
            "database_poll_seconds": DB_POLL_SECONDS,
        },
        "by_webhook": None,
        "not_measured": {"by_webhook": "the operator has no webhook receiver yet (a later issue)"},
    }


if __name__ == "__main__":
    raise SystemExit(main("detection", parser(), run))
