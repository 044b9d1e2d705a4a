"""The embedded Postgres the benchmarks with a database share: started, migrated, one `usuarios` row per
driver; and what they read back from it (the mirrored rows, the webhook inbox, Postgres' own CPU)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.cluster import PREFIX
from bench.harness import (
    Child,
    limit,
    operator_argv,
    poll,
    start_cluster,
    start_simulator,
    wait_converged,
    wait_quiet,
)
from whatsapp_operator.db.migrate import apply_migrations
from whatsapp_operator.devkit.embedded_db import EmbeddedPostgres
from whatsapp_operator.webhooks.inbox import TABLE as INBOX

__all__ = ["INBOX", "Fleet", "database", "db_statuses", "durability", "fleet", "postgres_cpu_seconds", "settle"]


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


async def settle(cluster: Child, conn: psycopg.AsyncConnection[Any], instances: int, seconds: float = 300) -> None:
    """Until every instance is Connected on the API server and `connected` in its row, and the API
    server has received no write for 5 s."""

    async def mirrored() -> bool:
        return set((await db_statuses(conn)).values()) == {"connected"}

    async with limit(seconds, "the operator's convergence (status and database)"):
        await wait_converged(cluster, instances)
        await poll(mirrored, 0.2)
        await wait_quiet(cluster)


async def durability(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    """The settings that decide whether a committed row survives a crash (the defaults: it does)."""
    settings = {}
    for name in ("fsync", "synchronous_commit", "wal_sync_method", "server_version"):
        cursor = await conn.execute(f"SHOW {name}")
        row = await cursor.fetchone()
        settings[name] = str(row[0]) if row else "?"
    return settings


async def postmaster_pid(conn: psycopg.AsyncConnection[Any]) -> int:
    """The server's main process: the parent of this connection's backend (same machine)."""
    cursor = await conn.execute("SELECT pg_backend_pid()")
    row = await cursor.fetchone()
    assert row is not None
    return parent_pid(int(row[0]))


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of the postmaster and its live children (backends, WAL writer, checkpointer...),
    plus those of children that exited (cutime/cstime). Connections held for the whole window (the
    operator's pools) are counted whole."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


@dataclass(frozen=True)
class Fleet:
    """The real operator with a database, over Connected instances it has converged on."""

    db_url: str
    sim_url: str
    kube_url: str
    cluster: Child
    operator: Child
    argv: list[str]  # the operator's command line
    admin: httpx.AsyncClient  # the simulator's admin API
    conn: psycopg.AsyncConnection[Any]


async def fleet(
    stack: contextlib.AsyncExitStack,
    names: list[str],
    probe: dict[str, Any],
    listen: str,
    webhook_url: str | None = None,
    admin_timeout: float = 30,
) -> Fleet:
    """Postgres, the simulator with `names` open, the API server with the EvolutionServer (`probe`,
    and `webhook_url` when given) and one instance each, and the operator (receiver on `listen`);
    returns once every instance is Connected in its status and its row, and the API server is quiet."""
    db_url = await stack.enter_async_context(database(names))
    _, sim_url = await start_simulator(stack, {"groups": [{"prefix": PREFIX, "count": len(names), "start": "open"}]})
    cluster, kube_url = await start_cluster(stack)
    admin = await stack.enter_async_context(httpx.AsyncClient(base_url=sim_url, timeout=admin_timeout))
    conn = await stack.enter_async_context(await psycopg.AsyncConnection.connect(db_url, autocommit=True))
    await cluster.ask("server", sim_url=sim_url, probe=probe, webhook_url=webhook_url)
    argv = operator_argv(kube_url, "--database-url", db_url, webhook_listen=listen)
    operator = await Child.spawn("operator", argv)
    stack.push_async_callback(operator.stop)
    await cluster.ask("instances", count=len(names))
    await settle(cluster, conn, len(names))
    return Fleet(db_url, sim_url, kube_url, cluster, operator, argv, admin, conn)
