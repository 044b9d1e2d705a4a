"""Detection latency: from a state change on Evolution to the instance's `.status.phase` on the API
server and to its `usuarios.whatsapp_status` row in Postgres, through the real operator, by probing
alone and by webhook.

Each of `--instances` Connected instances is logged out on the simulator (terminal close 401, through its
admin API) at a random moment within one probe interval. The run has two halves, each on fresh
processes (Postgres, simulator, API server, operator) with the same instances and moments:

- by probing alone: the EvolutionServer has no `spec.webhook`, so the change reaches the operator at
  the instance's next probe; latency is the wait for that probe (uniform over the interval) plus the
  work after it;
- by webhook: the EvolutionServer's `spec.webhook` names the operator's receiver (`--webhook-listen` on
  a loopback port) and its secret; the prober sets that webhook on every Evolution instance, so the
  simulator posts the change (status.instance, connection.update, signed with jwt_key) the moment it
  happens; the receiver stores it, the queue's worker processes it, which pulls the probe forward.

The `.status` side is timed on a watch of the API server, the database side by polling every 20 ms;
both clocks are this process's. In the webhook half the inbox rows also say when the operator stored
and processed the first webhook of each change (its wall clock, on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import random
import time
from typing import Any

import aiohttp
import httpx
import psycopg

from bench.cluster import instance_names
from bench.harness import (
    BenchError,
    limit,
    loopback_listen,
    machine,
    main,
    percentile,
    poll,
    shown,
)
from bench.postgres import INBOX, db_statuses, fleet
from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.webhooks.receiver import PATH

DB_POLL_SECONDS = 0.02
PHASE, DB_STATUS = "LoggedOut", "disconnected"  # a terminal close (401): the driver must pair again


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__)
    p.add_argument("--instances", type=int, default=100, help="instances changed, one sample each")
    p.add_argument("--interval", type=int, default=30, help="the EvolutionServer's spec.probe.intervalSeconds")
    p.add_argument("--seed", type=int, default=1, help="seed of the moments of change")
    p.add_argument(
        "--only", choices=("probe", "webhook"), help="run one half only (default: probing alone, then by webhook)"
    )
    return p


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
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


async def change_all(admin: httpx.AsyncClient, moments: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Log each instance out at its moment; returns when each request was sent (before the change), on
    this process's monotonic clock and on the wall clock (to compare with the operator's rows)."""
    changed: dict[str, float] = {}
    wall: dict[str, float] = {}
    origin = time.monotonic()
    for name, offset in sorted(moments.items(), key=lambda item: item[1]):
        await asyncio.sleep(max(0.0, origin + offset - time.monotonic()))
        changed[name], wall[name] = time.monotonic(), time.time()
        response = await admin.post(f"/_sim/instances/{name}/disconnect", json={"reason": 401})
        response.raise_for_status()
    return changed, wall


async def webhooks_of(admin: httpx.AsyncClient) -> set[str | None]:
    """The webhook URL each simulated instance has (None: no webhook)."""
    response = await admin.get("/_sim/instances")
    response.raise_for_status()
    return {instance["webhook_url"] for instance in response.json()}


async def deliveries(admin: httpx.AsyncClient) -> dict[str, int]:
    """The simulator's webhook deliveries by answer (status code, or the error)."""
    response = await admin.get("/_sim/deliveries")
    response.raise_for_status()
    counts: dict[str, int] = {}
    for delivery in response.json():
        key = str(delivery["status"] or delivery["error"])
        counts[key] = counts.get(key, 0) + 1
    return counts


async def inbox_times(conn: psycopg.AsyncConnection[Any]) -> dict[str, tuple[float, float | None]]:
    """Per instance, when the operator stored its first webhook and when it processed its first one."""
    cursor = await conn.execute(f"SELECT instance, min(received_at), min(processed_at) FROM {INBOX} GROUP BY instance")
    rows: dict[str, tuple[float, float | None]] = {}
    for name, received, processed in await cursor.fetchall():
        stamp: datetime.datetime | None = processed
        rows[name] = (received.timestamp(), stamp.timestamp() if stamp else None)
    return rows


async def half(args: argparse.Namespace, moments: dict[str, float], by_webhook: bool) -> dict[str, Any]:
    """One half on fresh processes: the changes at `moments`, timed to the status and to the row."""
    names = sorted(moments)
    probe = {"intervalSeconds": args.interval}
    listen = loopback_listen()
    receiver = f"http://{listen}{PATH}" if by_webhook else None
    async with contextlib.AsyncExitStack() as stack:
        ready = await fleet(stack, names, probe, listen, webhook_url=receiver)
        if (configured := await webhooks_of(ready.admin)) != {receiver}:
            raise BenchError(f"the simulated instances' webhooks are {configured}, not {receiver}")
        on_status: dict[str, float] = {}
        on_db: dict[str, float] = {}
        watchers = [
            asyncio.create_task(watch_status(ready.kube_url, on_status)),
            asyncio.create_task(watch_db(ready.db_url, on_db)),
        ]
        try:
            changed, wall = await change_all(ready.admin, moments)

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
        result: dict[str, Any] = {
            "operator_command": shown(ready.argv).replace(ready.db_url, "<embedded postgres>"),
            "spec.webhook": {"url": receiver, "authSecretRef": "webhookSecret"} if by_webhook else None,
            "to_status_phase_seconds": latencies(changed, on_status),
            "to_database_row_seconds": latencies(changed, on_db),
        }
        if by_webhook:
            stored = await inbox_times(ready.conn)
            if set(stored) != set(names) or any(processed is None for _, processed in stored.values()):
                raise BenchError(f"the inbox has processed webhooks for {len(stored)} of {len(names)} instances")
            result["to_webhook_stored_seconds"] = latencies(wall, {n: stored[n][0] for n in names})
            result["to_webhook_processed_seconds"] = latencies(wall, {n: stored[n][1] or 0.0 for n in names})
            result["simulator_deliveries"] = await deliveries(ready.admin)
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    moments = {name: rng.uniform(0, args.interval) for name in instance_names(args.instances)}
    result: dict[str, Any] = {
        "machine": machine(),
        "knobs": {"spec.probe": {"intervalSeconds": args.interval}},
        "samples": args.instances,
        "change": "simulator admin API: POST /_sim/instances/{name}/disconnect, reason 401",
        "database_poll_seconds": DB_POLL_SECONDS,
        "by_probe": None,
        "by_webhook": None,
    }
    if args.only in (None, "probe"):
        result["by_probe"] = await half(args, moments, by_webhook=False)
    if args.only in (None, "webhook"):
        result["by_webhook"] = await half(args, moments, by_webhook=True)
    return result


if __name__ == "__main__":
    raise SystemExit(main("detection", parser(), run))
