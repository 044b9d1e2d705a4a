"""The application's side of the database in tests: its drivers' rows and the operator's history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from whatsapp_operator.engine.runtime import Runtime


class Usuarios:
    """The application's side: blocking reads, so that looptime's clock stands still while they run."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, sql: LiteralString, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            cursor = conn.execute(sql, list(params))
            return cursor.fetchall() if cursor.description else []

    def add(self, *driver_ids: str) -> None:
        for driver_id in driver_ids:
            self.query("INSERT INTO usuarios (id, nome) VALUES (%s, %s)", [driver_id, f"Driver {driver_id}"])

    def row(self, driver_id: str) -> dict[str, Any]:
        (row,) = self.query("SELECT * FROM usuarios WHERE id = %s", [driver_id])
        return row

    def history(self, driver_id: str) -> list[dict[str, Any]]:
        """The driver's phase changes, without the drift repairs."""
        return self.query(
            "SELECT * FROM whatsapp_operator.transitions WHERE driver_id = %s AND repaired IS NULL ORDER BY id",
            [driver_id],
        )

    def repairs(self, driver_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM whatsapp_operator.transitions WHERE driver_id = %s AND repaired IS NOT NULL ORDER BY id",
            [driver_id],
        )


async def settle(runtime: Runtime) -> None:
    """Until every write the operator has recorded is in Postgres."""
    mirror = runtime.mirror
    assert mirror is not None
    async with asyncio.timeout(600):
        while mirror.pending():  # a write recorded while draining needs another wait
            await mirror.drain()
