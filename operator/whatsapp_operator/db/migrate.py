"""Database migrations (yoyo) and the `whatsapp-operator migrate` command.

The migrations ship inside the package, in `db/migrations/` (or `$WHATSAPP_OPERATOR_MIGRATIONS_DIR`,
which the container image sets). yoyo keeps its bookkeeping tables in the operator's schema, not in
the application's `public` (which Supabase exposes through its REST API).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from psycopg import sql
from yoyo import exceptions as yoyo_exceptions
from yoyo import get_backend, read_migrations

from whatsapp_operator.db.connection import (
    SCHEMA,
    DatabaseConfigError,
    add_database_url_argument,
    connection_params,
    error_line,
    resolve_database_url,
)

MIGRATIONS_DIR_ENV = "WHATSAPP_OPERATOR_MIGRATIONS_DIR"

# Every `migrate` run, from any process or pod, serialises on this session-level advisory lock. Unlike
# yoyo's own lock row, Postgres releases it when a holder dies, so a killed Job cannot wedge later runs.
_MIGRATION_LOCK_ID = int.from_bytes(hashlib.sha256(b"whatsapp_operator.db.migrate").digest()[:8], signed=True)


def default_migrations_dir() -> Path:
    override = os.environ.get(MIGRATIONS_DIR_ENV)
    return Path(override) if override else Path(__file__).resolve().parent / "migrations"


def apply_migrations(database_url: str, migrations_dir: Path | None = None) -> list[str]:
    """Apply the pending migrations in order and return their ids (empty when up to date).

    Raises DatabaseConfigError for a bad URL, an unreachable database or a failing migration.
    """
    directory = migrations_dir or default_migrations_dir()
    migrations = read_migrations(str(directory)) if directory.is_dir() else []
    if not migrations:
        raise DatabaseConfigError(f"no migrations found in {directory}")
    params = connection_params(database_url)
    # yoyo takes URLs only; carrying libpq's parsed parameters in the query string keeps passwords with
    # odd characters, socket directories and multiple hosts intact.
    yoyo_url = "postgresql+psycopg:///?" + urlencode({**params, "schema": SCHEMA})
    try:
        with psycopg.connect(autocommit=True, **params) as lock_conn:
            lock_conn.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK_ID])
            # yoyo creates its tables in the search path it is given, so the schema must come first.
            lock_conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
            with get_backend(yoyo_url) as backend, backend.lock():
                pending = backend.to_apply(migrations)
                backend.apply_migrations(pending)
    except psycopg.OperationalError as exc:
        raise DatabaseConfigError(f"cannot reach the database: {error_line(exc)}") from None
    except psycopg.Error as exc:
        raise DatabaseConfigError(f"migration failed: {error_line(exc)}") from None
    except yoyo_exceptions.LockTimeout as exc:
        raise DatabaseConfigError(error_line(exc)) from None
    return [migration.id for migration in pending]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_url_argument(parser)
    parser.add_argument(
        "--migrations-dir",
        type=Path,
        help=f"folder of yoyo migrations (default: ${MIGRATIONS_DIR_ENV}, then the source tree's)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        applied = apply_migrations(resolve_database_url(args), args.migrations_dir)
    except DatabaseConfigError as exc:
        print(f"whatsapp-operator migrate: error: {exc}", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "the database is up to date")
    return 0
