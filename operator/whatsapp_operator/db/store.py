"""A table the operator reads and writes through its own small pool, degrading when Postgres is away.

Every call raises the store's `Unavailable` error (one line, without credentials) while Postgres
cannot answer, and the store logs once when it goes and once when it comes back.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from whatsapp_operator.db import connection
from whatsapp_operator.db.connection import connection_params, error_line


class StoreUnavailable(Exception):
    """Postgres cannot answer now; the message is one line, without credentials."""


class PooledStore:
    name: ClassVar[str]  # for the pool and the log lines: "webhook inbox", "notification outbox"
    unavailable: ClassVar[type[StoreUnavailable]] = StoreUnavailable
    log: ClassVar[logging.Logger]  # the store's own module's, which names its lines

    def __init__(self, database_url: str, *, pool_max_size: int = 8, connection_timeout: float = 2.0) -> None:
        self._params = connection_params(database_url)
        self._pool_max_size = pool_max_size
        self._timeout = connection_timeout
        self._pool: AsyncConnectionPool | None = None
        self._healthy = True

    async def open(self) -> None:
        """Without waiting for Postgres: until it answers, every call raises `unavailable`."""
        pool_name = "whatsapp-operator-" + self.name.replace(" ", "-")
        self._pool = connection.pool(self._params, name=pool_name, max_size=self._pool_max_size, reconnect_timeout=30)
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _execute(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        if self._pool is None:
            raise self.unavailable(f"the {self.name} is closed")
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute(query, params)
                rows = await cursor.fetchall() if cursor.description else []
        except (psycopg.Error, PoolTimeout) as exc:
            if self._healthy:
                self._healthy = False
                self.log.warning("%s unavailable: %s", self.name, error_line(exc))
            raise self.unavailable(error_line(exc)) from None
        if not self._healthy:
            self._healthy = True
            self.log.info("%s available again", self.name)
        return rows
