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
from psycopg.conninfo import conninfo_to_dict
from yoyo import exceptions as yoyo_exceptions
from yoyo import get_backend, read_migrations

SCHEMA = "whatsapp_operator"
DATABASE_URL_ENV = ("WHATSAPP_OPERATOR_DATABASE_URL", "DATABASE_URL")
MIGRATIONS_DIR_ENV = "WHATSAPP_OPERATOR_MIGRATIONS_DIR"
CONNECT_TIMEOUT_SECONDS = 10

# Every `migrate` run, from any process or pod, serialises on this session-level advisory lock. Unlike
# yoyo's own lock row, Postgres releases it when a holder dies, so a killed Job cannot wedge later runs.
_MIGRATION_LOCK_ID = int.from_bytes(hashlib.sha256(b"whatsapp_operator.db.migrate").digest()[:8], signed=True)


class DatabaseConfigError(Exception):
    """A problem the user can fix, described in one line that never contains a password."""


def error_line(exc: BaseException) -> str:
    """libpq spreads errors over several lines with hints; the first one says what went wrong."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_params(database_url: str) -> dict[str, str]:
    """Parse a `postgresql://` URL with libpq's own parser, so whatever libpq accepts works here."""
    if not database_url.lower().startswith(("postgresql://", "postgres://")):
        # Not echoing the value: a mistyped URL still carries a password.
        raise DatabaseConfigError("the database URL must start with postgresql:// or postgres://")
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseConfigError(f"malformed database URL: {error_line(exc)}") from None
    if not all(port.isdigit() for port in str(params.get("port", "")).split(",") if port):
        raise DatabaseConfigError("malformed database URL: the port is not a number")
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    return {key: str(value) for key, value in params.items()}


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


def database_url_from_env() -> str | None:
    return next((os.environ[name] for name in DATABASE_URL_ENV if os.environ.get(name)), None)


def add_database_url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=f"postgresql:// URL (default: ${DATABASE_URL_ENV[0]}, then ${DATABASE_URL_ENV[1]})",
    )


def resolve_database_url(args: argparse.Namespace) -> str:
    url = args.database_url or database_url_from_env()
    if not url:
        raise DatabaseConfigError(f"no database URL: pass --database-url or set ${DATABASE_URL_ENV[0]}")
    return url


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
