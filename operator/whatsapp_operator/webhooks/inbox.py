"""The webhook inbox in Postgres (`whatsapp_operator.webhook_inbox`): the durable store the receiver
writes before its 2xx, and the job table the worker claims from.

Times come from the caller's clock (the operator's loop clock), never from Postgres' now(), so that
due dates and leases are compared on one clock. Claims use FOR UPDATE SKIP LOCKED with a lease, so
two replicas never take the same job and a job whose replica died comes back when its lease ends.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from psycopg.types.json import Jsonb

from whatsapp_operator.db.connection import SCHEMA
from whatsapp_operator.db.store import PooledStore, StoreUnavailable
from whatsapp_operator.webhooks.envelope import Envelope

TABLE = f"{SCHEMA}.webhook_inbox"
STATUSES = ("queued", "done", "dead")


class InboxUnavailable(StoreUnavailable):
    """Postgres cannot take or give jobs now; the message is one line, without credentials."""


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    id: int
    event: str
    instance: str
    payload: dict[str, Any]
    attempts: int  # including the one just started
    received_at: datetime.datetime | None = None  # on the operator's clock


class Inbox(PooledStore):
    """`connection_timeout` bounds how long a webhook waits for a connection before its 503: far
    below Evolution's 30 s request timeout."""

    name = "webhook inbox"
    unavailable = InboxUnavailable
    log = logging.getLogger(__name__)

    async def accept(self, envelope: Envelope, now: datetime.datetime) -> bool:
        """Store one delivery; False when the same event is already there (a repeated delivery)."""
        rows = await self._execute(
            f"INSERT INTO {TABLE} (dedup_key, event, instance, payload, next_attempt_at, received_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
            (envelope.dedup_key(), envelope.event, envelope.instance, Jsonb(envelope.stored()), now, now),
        )
        return bool(rows)

    async def claim(self, now: datetime.datetime, lease: datetime.timedelta, limit: int) -> list[Job]:
        """Take up to `limit` due jobs, oldest first, and count the attempt now: a replica that dies
        while processing has used it up."""
        rows = await self._execute(
            f"UPDATE {TABLE} AS t SET attempts = t.attempts + 1, next_attempt_at = %s"
            f" WHERE t.id IN (SELECT id FROM {TABLE} WHERE status = 'queued' AND next_attempt_at <= %s"
            "  ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING t.id, t.event, t.instance, t.payload, t.attempts, t.received_at",
            (now + lease, now, limit),
        )
        return sorted((Job(**row) for row in rows), key=lambda job: job.id)

    async def complete(self, results: dict[int, str], now: datetime.datetime) -> None:
        await self._execute(
            f"UPDATE {TABLE} AS t SET status = 'done', processed_at = %s, result = r.result, last_error = NULL"
            " FROM unnest(%s::bigint[], %s::text[]) AS r(id, result) WHERE t.id = r.id",
            (now, list(results), list(results.values())),
        )

    async def retry(self, job_id: int, error: str, at: datetime.datetime) -> None:
        await self._execute(
            f"UPDATE {TABLE} SET next_attempt_at = %s, last_error = %s WHERE id = %s", (at, error, job_id)
        )

    async def bury(self, job_id: int, error: str, now: datetime.datetime) -> None:
        """The dead-letter state: kept, with its last error, until replayed."""
        await self._execute(
            f"UPDATE {TABLE} SET status = 'dead', processed_at = %s, last_error = %s WHERE id = %s",
            (now, error, job_id),
        )

    async def next_due(self) -> datetime.datetime | None:
        rows = await self._execute(f"SELECT min(next_attempt_at) AS due FROM {TABLE} WHERE status = 'queued'")
        return rows[0]["due"]

    async def purge(self, before: datetime.datetime) -> int:
        """Forget processed webhooks older than the retention (dead ones stay until replayed)."""
        rows = await self._execute(
            f"DELETE FROM {TABLE} WHERE status = 'done' AND processed_at < %s RETURNING id", (before,)
        )
        return len(rows)

    async def oldest_queued(self) -> datetime.datetime | None:
        rows = await self._execute(f"SELECT min(received_at) AS oldest FROM {TABLE} WHERE status = 'queued'")
        return rows[0]["oldest"]

    async def counts(self) -> dict[str, int]:
        rows = await self._execute(f"SELECT status, count(*) AS n FROM {TABLE} GROUP BY status")
        found = {row["status"]: row["n"] for row in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    async def dead(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self._execute(
            f"SELECT id, event, instance, attempts, last_error, received_at, processed_at FROM {TABLE}"
            " WHERE status = 'dead' ORDER BY id LIMIT %s",
            (limit,),
        )

    async def replay(self, now: datetime.datetime, ids: list[int] | None = None) -> list[int]:
        """Queue dead jobs again with fresh attempts: all of them, or those of `ids`."""
        where = "status = 'dead'" + (" AND id = ANY(%s)" if ids is not None else "")
        params: tuple[Any, ...] = (now,) + ((ids,) if ids is not None else ())
        rows = await self._execute(
            f"UPDATE {TABLE} SET status = 'queued', attempts = 0, next_attempt_at = %s, processed_at = NULL"
            f" WHERE {where} RETURNING id",
            params,
        )
        return sorted(row["id"] for row in rows)
