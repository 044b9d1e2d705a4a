"""The application's drivers' table (`usuarios` by default): the row updates the mirror makes, and
the one query per round that finds the rows which disagree with the operator (docs/drift.md).

The operator never inserts a row there, and learns the id column's type once: the round's ids travel
as one array of that type, so the comparison joins through the table's primary key index.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql

from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import InstanceKey
from whatsapp_operator.db.sync import SYNCED, SyncReason, SyncStatus

if TYPE_CHECKING:
    from whatsapp_operator.db.mirror import MirrorSettings

# Errors the application's table raises for one row (bad value, constraint, wrong column or type in
# the configuration). Retrying cannot help, and they must not hold back the history row.
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)

log = logging.getLogger(__name__)
_INTEGERS = frozenset({"smallint", "integer", "bigint"})


@dataclass(frozen=True, slots=True)
class Expected:
    """What one instance's row should hold by the operator's view."""

    key: InstanceKey
    instance: str  # the instance's name on the Evolution server, for the history
    driver_id: str
    phase: Phase
    status: str | None  # the status column's value; None: the phase says nothing about it
    no_code: bool  # the operator knows no pairing code is alive: the row must hold none


@dataclass(frozen=True, slots=True)
class Drift:
    """A row that disagrees with `expected`: what it held instead."""

    expected: Expected
    status: str | None
    stale_code: bool

    def found(self) -> str:
        """What was wrong, for the history and the log (never the code itself)."""
        wrong = []
        if self.expected.status is not None and self.status != self.expected.status:
            wrong.append(f"status was {self.status!r}")
        if self.stale_code:
            wrong.append("a dead pairing code was shown")
        return ", ".join(wrong)


class AppTable:
    def __init__(self, settings: MirrorSettings) -> None:
        self.settings = settings
        self.name = f"{settings.schema}.{settings.table}"
        self._table = sql.Identifier(settings.schema, settings.table)
        self._id = sql.Identifier(settings.id_column)
        self._exists = sql.SQL("SELECT 1 FROM {} WHERE {} = %s").format(self._table, self._id)
        self._id_type: str | None = None
        self._code_columns: tuple[str, ...] | None = None

    async def update(
        self,
        conn: psycopg.AsyncConnection,
        driver_id: str,
        values: dict[str, object],
        *,
        count_attempt: Literal["first", "next"] | None = None,
    ) -> tuple[SyncStatus, bool]:
        """Set `values` on the driver's row unless it already holds them; never insert a row. Returns
        the row's verdict and whether anything was written.

        The id travels as an untyped parameter, so Postgres reads it as the column's own type: text and
        uuid ids both match literally and through the primary key index.
        """
        assignments = [sql.SQL("{} = %s").format(sql.Identifier(column)) for column in values]
        if count_attempt is not None:
            attempts = sql.Identifier(self.settings.pairing_attempts_column)
            counted = "{0} = 1" if count_attempt == "first" else "{0} = COALESCE({0}, 0) + 1"
            assignments.append(sql.SQL(counted).format(attempts))
        query = sql.SQL("UPDATE {table} SET {assignments} WHERE {id} = %s AND ({changed}) RETURNING 1").format(
            table=self._table,
            assignments=sql.SQL(", ").join(assignments),
            id=self._id,
            changed=sql.SQL(" OR ").join(
                sql.SQL("{} IS DISTINCT FROM %s").format(sql.Identifier(column)) for column in values
            ),
        )
        try:
            async with conn.transaction():  # a savepoint: a rejected row must not cost the history row
                cursor = await conn.execute(query, [*values.values(), driver_id, *values.values()])
                if await cursor.fetchone() is not None:
                    return SYNCED, True
                cursor = await conn.execute(self._exists, [driver_id])
                if await cursor.fetchone() is None:
                    message = f"no row in {self.name} with {self.settings.id_column} = {driver_id!r}"
                    return SyncStatus(False, SyncReason.DRIVER_ROW_MISSING, message), False
        except ROW_ERRORS as exc:
            # Only the error's class and code: its text can quote the row, pairing code included.
            message = f"{self.name} rejected the write: {type(exc).__name__} (SQLSTATE {exc.sqlstate or '-'})"
            return SyncStatus(False, SyncReason.DRIVER_ROW_REJECTED, message), False
        return SYNCED, False

    async def code_columns(self, conn: psycopg.AsyncConnection) -> tuple[str, ...]:
        """The pairing code's columns (code, made, expires), and the QR code's if the table has it:
        an application that pairs by code only need not add it. Looked up once."""
        if self._code_columns is None:
            s = self.settings
            cursor = await conn.execute(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
                (self._table.as_string(conn), s.qr_code_column),
            )
            qr = () if await cursor.fetchone() is None else (s.qr_code_column,)
            if not qr:
                log.info("%s has no column %s: QR codes are not written there", self.name, s.qr_code_column)
            self._code_columns = s.pairing_columns + qr
        return self._code_columns

    async def drifted(self, conn: psycopg.AsyncConnection, expected: Sequence[Expected]) -> list[Drift]:
        """The rows among `expected`'s that disagree with it, in one query. Ids that cannot be the
        column's type (a uuid column and a driverId that is no uuid) have no row to compare."""
        if self._id_type is None:
            self._id_type = await self._column_type(conn)
        ids, kept = [], []
        for e in expected:
            if (value := self._typed(e.driver_id)) is not None:
                ids.append(value)
                kept.append(e)
        if not kept:
            return []
        s = self.settings
        code, expires = sql.Identifier(s.pairing_code_column), sql.Identifier(s.pairing_expires_at_column)
        query = sql.SQL(
            "SELECT e.i, u.{status}, (e.no_code AND (u.{code} IS NOT NULL OR u.{expires} IS NOT NULL))"
            " FROM unnest(%s::int[], %s::{id_type}[], %s::text[], %s::bool[]) AS e(i, id, status, no_code)"
            " JOIN {table} AS u ON u.{id} = e.id"
            " WHERE (e.status IS NOT NULL AND u.{status} IS DISTINCT FROM e.status)"
            "    OR (e.no_code AND (u.{code} IS NOT NULL OR u.{expires} IS NOT NULL))"
        ).format(
            status=sql.Identifier(s.status_column),
            code=code,
            expires=expires,
            id_type=sql.SQL(self._id_type),
            table=self._table,
            id=self._id,
        )
        params = (list(range(len(kept))), ids, [e.status for e in kept], [e.no_code for e in kept])
        cursor = await conn.execute(query, params)
        return [Drift(kept[i], status, stale) for i, status, stale in await cursor.fetchall()]

    async def _column_type(self, conn: psycopg.AsyncConnection) -> str:
        cursor = await conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
            (self._table.as_string(conn), self.settings.id_column),
        )
        row = await cursor.fetchone()
        if row is None:
            raise psycopg.errors.UndefinedColumn(f"no column {self.settings.id_column} in {self.name}")
        kind: str = row[0]
        # The array's element type: uuid, bigint for every integer column, text for the rest (varchar
        # and citext compare with text).
        return "bigint" if kind in _INTEGERS else "uuid" if kind == "uuid" else "text"

    def _typed(self, driver_id: str) -> Any:
        try:
            if self._id_type == "uuid":
                return uuid.UUID(driver_id)
            if self._id_type == "bigint":
                value = int(driver_id)
                return value if -(2**63) <= value < 2**63 else None
        except ValueError:
            return None
        return driver_id
