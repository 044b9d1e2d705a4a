"""Webhook ingestion: how many Evolution webhooks per second the operator's receiver accepts durably
(stored in Postgres before it answers 200), and how long each one waits for that answer.

The real operator runs as in production (`whatsapp-operator run --database-url ... --webhook-listen
127.0.0.1:PORT`) with an embedded Postgres (migrated, default durability: fsync and synchronous
commit on), the Kubernetes API emulator, and the Evolution simulator with `--instances` Connected
instances whose EvolutionServer has a `spec.webhook` naming the receiver and its secret. Once they
have converged, this process plays Evolution: it posts distinct `connection.update` envelopes about
those instances (the simulator's envelope: event, instance, data, destination, date_time, sender,
server_url, apikey), each signed as Evolution signs them for a `jwt_key` header (`Authorization:
Bearer` HS256, claims iat/exp/app/action), over keep-alive connections. First `--solo` of them one
at a time (a webhook alone), then `--events` with `--concurrency` requests in flight. Each
acknowledgement is timed from just before the request to the end of its answer.

Afterwards: every answer must be a 200 that is not a duplicate, and the inbox must hold exactly one
new row per event (durable: read back from Postgres). Then the queue is timed until every job is
`done`; processing a job pulls the instance's next probe forward, and the probes this caused are
counted on the simulator. With `--strangers` the webhooks name Evolution instances that no
WhatsAppInstance uses, which processing marks done without a probe: the receiver and the queue alone.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import jwt
import psycopg

from bench.cluster import instance_names
from bench.harness import (
    WEBHOOK_SECRET,
    BenchError,
    limit,
    loopback_listen,
    machine,
    machine_busy,
    main,
    percentile,
    poll,
    self_cpu_seconds,
    shown,
)
from bench.postgres import INBOX, durability, fleet, postgres_cpu_seconds, postmaster_pid
from whatsapp_operator.webhooks.receiver import PATH

QUEUE_POLL_SECONDS = 0.05


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    p.add_argument("--events", type=int, default=20_000, help="webhooks posted under load")
    p.add_argument("--concurrency", type=int, default=50, help="requests in flight under load")
    p.add_argument("--solo", type=int, default=500, help="webhooks posted one at a time first")
    p.add_argument("--instances", type=int, default=100, help="instances the webhooks are about")
    p.add_argument("--interval", type=int, default=30, help="the EvolutionServer's spec.probe.intervalSeconds")
    p.add_argument(
        "--strangers",
        action="store_true",
        help="the webhooks name Evolution instances no WhatsAppInstance uses: processing ignores them (no probe),"
        " which leaves the receiver and the queue alone",
    )
    p.add_argument("--queue-limit", type=float, default=600, help="seconds to wait for the queue to process all")
    return p


# -- playing Evolution ------------------------------------------------------------------------


def evolution_jwt(key: str) -> str:
    """What Evolution sends for a webhook with a `jwt_key` header: HS256, ten minutes, wall clock."""
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}, key, algorithm="HS256")


def envelopes(
    names: list[str], first: int, count: int, origin: datetime.datetime, sim_url: str, url: str
) -> list[bytes]:
    """`count` distinct connection.update bodies: instances in turn going `connecting` then `open` (a
    reconnect), each a millisecond after the previous one, as the simulator would send them."""
    bodies = []
    for i in range(first, first + count):
        name = names[i % len(names)]
        wuid = f"5511{i % len(names):09d}@s.whatsapp.net"
        data: dict[str, Any] = {"instance": name, "state": "connecting", "statusReason": 200}
        if (i // len(names)) % 2:
            data = {"instance": name, "wuid": wuid, "profileName": f"Driver {name}", "profilePictureUrl": None}
            data |= {"state": "open", "statusReason": 200}
        at = origin + datetime.timedelta(milliseconds=i)
        envelope = {
            "event": "connection.update",
            "instance": name,
            "data": data,
            "destination": url,
            "date_time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "sender": wuid,
            "server_url": sim_url,
            "apikey": None,
        }
        bodies.append(json.dumps(envelope).encode())
    return bodies


@dataclass
class Posted:
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates: int = 0
    seconds: float = 0.0  # from the first request sent to the last answer read
    client_cpu_seconds: float = 0.0

    def ack_ms(self) -> dict[str, float]:
        return {
            "p50": round(percentile(self.latencies, 50) * 1000, 2),
            "p90": round(percentile(self.latencies, 90) * 1000, 2),
            "p99": round(percentile(self.latencies, 99) * 1000, 2),
            "min": round(min(self.latencies) * 1000, 2),
            "max": round(max(self.latencies) * 1000, 2),
        }


async def post_all(session: aiohttp.ClientSession, url: str, bodies: list[bytes], concurrency: int) -> Posted:
    """`concurrency` senders share the bodies; each signs its request, then times it."""
    posted = Posted()
    pending: Iterator[bytes] = iter(bodies)

    async def sender() -> None:
        for body in pending:
            headers = {"Content-Type": "application/json", "Authorization": "Bearer " + evolution_jwt(WEBHOOK_SECRET)}
            sent = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.read()
                    status = str(response.status)
            except aiohttp.ClientError as exc:
                answer, status = b"{}", type(exc).__name__
            posted.latencies.append(time.perf_counter() - sent)
            posted.answers[status] += 1
            if status == "200" and json.loads(answer).get("duplicate"):
                posted.duplicates += 1

    cpu, started = self_cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    posted.seconds = time.perf_counter() - started
    posted.client_cpu_seconds = self_cpu_seconds() - cpu
    return posted


# -- reading back -----------------------------------------------------------------------------


async def max_id(conn: psycopg.AsyncConnection[Any]) -> int:
    cursor = await conn.execute(f"SELECT coalesce(max(id), 0) FROM {INBOX}")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def stored(conn: psycopg.AsyncConnection[Any], after: int) -> dict[str, int]:
    """Rows stored since id `after`, and how many distinct events they are."""
    cursor = await conn.execute(
        f"SELECT count(*), count(DISTINCT (instance, payload->>'date_time')) FROM {INBOX} WHERE id > %s", (after,)
    )
    row = await cursor.fetchone()
    assert row is not None
    return {"rows": int(row[0]), "distinct_events": int(row[1])}


async def queue_counts(conn: psycopg.AsyncConnection[Any], after: int) -> dict[str, int]:
    cursor = await conn.execute(
        f"SELECT status, count(*), count(*) FILTER (WHERE attempts > 1) FROM {INBOX} WHERE id > %s GROUP BY status",
        (after,),
    )
    counts = {"queued": 0, "done": 0, "dead": 0, "retried": 0}
    for status, n, retried in await cursor.fetchall():
        counts[status] = int(n)
        counts["retried"] += int(retried)
    return counts


async def results(conn: psycopg.AsyncConnection[Any], after: int) -> dict[str, int]:
    """What processing did, by the kind of its `result` (the text before the instance names)."""
    cursor = await conn.execute(
        f"SELECT split_part(coalesce(result, '(none)'), ':', 1), count(*) FROM {INBOX} WHERE id > %s GROUP BY 1",
        (after,),
    )
    return {str(kind): int(n) for kind, n in await cursor.fetchall()}


async def connection_states_since(admin: httpx.AsyncClient, mark: float) -> int:
    """connectionState requests the simulator received since `mark` (its seconds since start): probes."""
    response = await admin.get("/_sim/requests", params={"since": mark})
    response.raise_for_status()
    return sum(1 for r in response.json() if r["path"].startswith("/instance/connectionState/") and r["at"] > mark)


async def last_request_at(admin: httpx.AsyncClient) -> float:
    response = await admin.get("/_sim/requests", params={"limit": 1})
    response.raise_for_status()
    return max((r["at"] for r in response.json()), default=0.0)


# -- the run ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if min(args.events, args.concurrency, args.instances) < 1 or args.solo < 0:
        raise BenchError("--events, --concurrency and --instances must be positive, --solo not negative")
    names = instance_names(args.instances)
    probe = {"intervalSeconds": args.interval}
    listen = loopback_listen()
    url = f"http://{listen}{PATH}"
    host = machine()  # before anything starts: its load average is the machine's, not this run's
    async with contextlib.AsyncExitStack() as stack:
        ready = await fleet(stack, names, probe, listen, webhook_url=url, admin_timeout=60)

        origin = datetime.datetime.now(datetime.UTC)
        about = [f"stranger-{n:05d}" for n in range(1, args.instances + 1)] if args.strangers else names
        solo_bodies = envelopes(about, 0, args.solo, origin, ready.sim_url, url)
        bodies = envelopes(about, args.solo, args.events, origin, ready.sim_url, url)
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))

        solo: dict[str, Any] | None = None
        if args.solo:
            mark = await max_id(ready.conn)
            alone = await post_all(session, url, solo_bodies, 1)
            solo = {
                "events": args.solo,
                "concurrency": 1,
                "seconds": round(alone.seconds, 2),
                "ack_ms": alone.ack_ms(),
                "answers": dict(alone.answers),
                "duplicates": alone.duplicates,
                "stored": await stored(ready.conn, mark),
            }
            check(alone, solo["stored"], args.solo, "the events posted one at a time")
            async with limit(args.queue_limit, "processing the events posted one at a time"):
                await poll(lambda: all_processed(ready.conn, mark, args.solo), 0.1)
            await asyncio.sleep(2)  # the probes those pulled forward are over

        mark = await max_id(ready.conn)
        sim_mark = await last_request_at(ready.admin)
        writes = await ready.cluster.ask("writes")
        postmaster = await postmaster_pid(ready.conn)
        before = (ready.operator.usage().cpu_seconds, postgres_cpu_seconds(postmaster), machine_busy())
        started = time.perf_counter()
        loaded = await post_all(session, url, bodies, args.concurrency)
        after = (ready.operator.usage().cpu_seconds, postgres_cpu_seconds(postmaster), machine_busy())
        at_last_ack = await queue_counts(ready.conn, mark)
        durable = await stored(ready.conn, mark)
        check(loaded, durable, args.events, "the events posted under load")
        # Polled only from now on, so that no query of ours competed with the posts.
        async with limit(args.queue_limit, "processing every event"):
            await poll(lambda: all_processed(ready.conn, mark, args.events), QUEUE_POLL_SECONDS)
        all_processed_at = time.perf_counter()
        counts = await queue_counts(ready.conn, mark)
        await asyncio.sleep(1)  # the probes pulled forward by the last jobs
        probes = await connection_states_since(ready.admin, sim_mark)
        patches = (await ready.cluster.ask("writes"))["instance_status_patches"]
        status_patches = patches - writes["instance_status_patches"]
        processed = await results(ready.conn, mark)
        settings = await durability(ready.conn)
    busy, total = after[2][0] - before[2][0], after[2][1] - before[2][1]
    return {
        "machine": host,
        "operator_command": shown(ready.argv).replace(ready.db_url, "<embedded postgres>"),
        "receiver": f"POST {PATH} on 127.0.0.1 (keep-alive, {args.concurrency} connections at most)",
        "postgres": settings,
        "knobs": {"spec.probe": probe, "instances": args.instances},
        "events_about": "Evolution instances no WhatsAppInstance uses" if args.strangers else "the instances",
        "envelope": {
            "event": "connection.update",
            "auth": "Authorization: Bearer <HS256 JWT signed with the EvolutionServer's webhook secret>",
            "mean_bytes": round(sum(map(len, bodies)) / len(bodies)),
        },
        "alone": solo,
        "loaded": {
            "events": args.events,
            "concurrency": args.concurrency,
            "seconds": round(loaded.seconds, 2),
            "events_per_second": round(args.events / loaded.seconds),
            "ack_ms": loaded.ack_ms(),
            "answers": dict(loaded.answers),
            "duplicates": loaded.duplicates,
            "cpu_seconds": {
                "ready.operator": round(after[0] - before[0], 2),
                "postgres": round(after[1] - before[1], 2),
                "this_client": round(loaded.client_cpu_seconds, 2),
            },
            "machine_busy_share": round(busy / total, 3) if total else None,
        },
        "durable": durable | {"verified": durable["rows"] == durable["distinct_events"] == args.events},
        "queue": {
            "all_processed_seconds": round(all_processed_at - started, 2),
            "after_last_ack_seconds": round(all_processed_at - started - loaded.seconds, 2),
            "queued_at_last_ack": at_last_ack["queued"],
            "counts": counts,
            "results": processed,
            "probes_seen_by_simulator": probes,
            "instance_status_patches": status_patches,
        },
    }


async def all_processed(conn: psycopg.AsyncConnection[Any], after: int, expected: int) -> bool:
    counts = await queue_counts(conn, after)
    return counts["done"] + counts["dead"] >= expected


def check(posted: Posted, durable: dict[str, int], expected: int, what: str) -> None:
    """Every answer a fresh 200, and exactly one stored row per event: or no figure at all."""
    if posted.answers != {"200": expected} or posted.duplicates:
        raise BenchError(f"{what}: answers {dict(posted.answers)}, {posted.duplicates} duplicates")
    if durable != {"rows": expected, "distinct_events": expected}:
        raise BenchError(f"{what}: {expected} acknowledged, but the inbox holds {durable}")


if __name__ == "__main__":
    raise SystemExit(main("webhooks", parser(), run))
