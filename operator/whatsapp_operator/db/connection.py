"""Postgres connections, one way for every part of the operator: the operator's schema, where the URL
comes from, its parsing, the pool, and the one-line rendering of an error."""

from __future__ import annotations

import argparse
import os

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

SCHEMA = "whatsapp_operator"
DATABASE_URL_ENV = ("WHATSAPP_OPERATOR_DATABASE_URL", "DATABASE_URL")
URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
CONNECT_TIMEOUT_SECONDS = 10


class DatabaseConfigError(Exception):
    """A problem the user can fix, described in one line that never contains a password."""


def error_line(exc: BaseException) -> str:
    """libpq spreads errors over several lines with hints; the first one says what went wrong."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_params(database_url: str) -> dict[str, str]:
    """Parse a `postgresql://` URL with libpq's own parser, so whatever libpq accepts works here."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        # Not echoing the value: a mistyped URL still carries a password.
        raise DatabaseConfigError("the database URL must start with postgresql:// or postgres://")
    # SQLAlchemy's spelling of the same URL (postgresql+psycopg://) is libpq's once the driver is dropped.
    database_url = f"postgresql://{rest}"
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseConfigError(f"malformed database URL: {error_line(exc)}") from None
    if not all(port.isdigit() for port in str(params.get("port", "")).split(",") if port):
        raise DatabaseConfigError("malformed database URL: the port is not a number")
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    return {key: str(value) for key, value in params.items()}


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


def pool(params: dict[str, str], *, name: str, max_size: int, reconnect_timeout: float) -> AsyncConnectionPool:
    """A pool opened later without waiting for Postgres (`await pool.open(wait=False)`): callers queue
    or refuse until it answers. `reconnect_timeout` bounds how long the pool retries a lost connection
    by itself before the caller's next attempt starts afresh (its 5-minute default could leave a
    recovered database unused for minutes)."""
    return AsyncConnectionPool(
        kwargs={**params, "autocommit": True},
        min_size=1,
        max_size=max_size,
        open=False,
        name=name,
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=reconnect_timeout,
    )
