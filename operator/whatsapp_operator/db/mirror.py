"""Mirror of instance phases into Postgres: the application's `usuarios` row and the transition history.

The operator's reconcile loop must never wait for, or fail because of, the database. It enqueues
writes here and carries on; one background task applies them, per instance in the order they were
recorded, and retries with exponential backoff while Postgres is unreachable.

The queue is unbounded, because history rows can be neither coalesced nor dropped (its cost per
write: docs/performance.md); `lag_seconds()` is there to alert on. Queued writes live in memory only:
an operator restarted during an outage loses them (the next observation rewrites `whatsapp_status`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from whatsapp_operator.core.notifications import Notification
from whatsapp_operator.core.pairing import SOCKET_ENDED
from whatsapp_operator.core.phases import DB_STATUS, Phase
from whatsapp_operator.core.resources import InstanceKey
from whatsapp_operator.db import connection, outbox
from whatsapp_operator.db.app_table import AppTable, Drift, Expected
from whatsapp_operator.db.connection import SCHEMA, connection_params, error_line
from whatsapp_operator.db.sync import SYNCED, SyncReason, SyncStatus
from whatsapp_operator.db.writes import (
    ClearPairingCode,
    NotificationDecided,
    PairingCode,
    PhaseChange,
    Queued,
    Repair,
    Write,
    aware,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MirrorSettings:
    """Where the application keeps driver state, and how hard to try when Postgres is away."""

    schema: str = "public"
    table: str = "usuarios"
    id_column: str = "id"
    status_column: str = "whatsapp_status"
    pairing_code_column: str = "pairing_code"
    pairing_generated_at_column: str = "pairing_code_generated_at"
    pairing_expires_at_column: str = "pairing_code_expires_at"
    pairing_attempts_column: str = "pairing_code_attempts"
    qr_code_column: str = "pairing_qr_code"  # optional: the table may not have it (db.app_table)
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    pool_max_size: int = 4
    # How long one attempt waits for a connection before the mirror backs off.
    connection_timeout_seconds: float = 5.0

    @property
    def pairing_columns(self) -> tuple[str, str, str]:
        return self.pairing_code_column, self.pairing_generated_at_column, self.pairing_expires_at_column


@dataclass
class MirrorCounters:
    """Monotonic counts for the metrics endpoint."""

    writes_applied: int = 0
    write_failures: int = 0
    writes_dropped: int = 0
    rows_missing: int = 0
    rows_rejected: int = 0


class StatusMirror:
    """Queues the operator's observations and writes them to Postgres in order, whatever its state.

    `on_sync(key, status)` runs on the event loop, inside the mirror, whenever an instance's
    DatabaseSynced state changes; it must not block.
    """

    def __init__(
        self,
        database_url: str,
        settings: MirrorSettings | None = None,
        on_sync: Callable[[InstanceKey, SyncStatus], None] | None = None,
    ) -> None:
        """Raises DatabaseConfigError for a malformed URL: a configuration error, not an outage."""
        self.settings = settings or MirrorSettings()
        self.counters = MirrorCounters()
        self._params = connection_params(database_url)
        self._on_sync = on_sync
        self._queues: dict[InstanceKey, deque[Queued]] = {}
        self._row_problems: dict[InstanceKey, SyncStatus] = {}
        self._published: dict[InstanceKey, SyncStatus] = {}  # keys whose last published status was not SYNCED
        self._outage: str | None = None  # first error of the current outage
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pool: AsyncConnectionPool | None = None
        self._worker: asyncio.Task[None] | None = None
        self.table = AppTable(self.settings)
        self._insert_transition = sql.SQL(
            "INSERT INTO {} (event_id, namespace, instance, evolution_instance, driver_id, from_phase,"
            " to_phase, state, status_reason, forced, occurred_at, repaired)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
        ).format(sql.Identifier(SCHEMA, "transitions"))

    async def start(self) -> None:
        """Open the pool without waiting for Postgres: writes queue up until it answers."""
        settings = self.settings
        self._pool = connection.pool(
            self._params,
            name="whatsapp-operator-mirror",
            max_size=settings.pool_max_size,
            reconnect_timeout=settings.retry_max_seconds,
        )
        await self._pool.open(wait=False)
        self._worker = asyncio.create_task(self._run(), name="whatsapp-operator-mirror")

    # The timeout bounds the flush only: an outer asyncio.timeout would also cut the pool's close short.
    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Give queued writes up to `timeout` seconds to land, then close; whatever is left is lost."""
        if self._worker is None or self._pool is None:
            return
        try:
            await asyncio.wait_for(self.drain(), timeout)
        except TimeoutError:
            log.warning(
                "stopping with %d database writes for %d instances not written", self.pending(), len(self._queues)
            )
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        await self._pool.close()
        self._worker = self._pool = None

    def record_transition(
        self,
        *,
        key: InstanceKey,
        instance: str,
        driver_id: str,
        from_phase: Phase | None,
        to_phase: Phase,
        state: str | None,
        reason: int | None,
        forced: bool,
        at: datetime,
        notification: Notification | None = None,
    ) -> None:
        """Queue a phase change of the WhatsAppInstance `key`; `instance` is its name on the
        Evolution server; `notification`, decided with it, lands in the same transaction. Naive times
        are taken as UTC, here and in `record_pairing_code`."""
        namespace, name = key
        self._enqueue(
            key,
            PhaseChange(
                event_id=uuid.uuid4(),
                namespace=namespace,
                name=name,
                evolution_instance=instance,
                driver_id=driver_id,
                from_phase=from_phase,
                to_phase=to_phase,
                state=state,
                reason=reason,
                forced=forced,
                at=aware(at),
                notification=notification,
            ),
        )

    def record_notification(self, key: InstanceKey, notification: Notification) -> None:
        """Queue a decision to notify, in order with the instance's other writes."""
        self._enqueue(key, NotificationDecided(notification))

    def record_pairing_code(
        self,
        *,
        key: InstanceKey,
        driver_id: str,
        code: str | None,
        generated_at: datetime,
        expires_at: datetime,
        first: bool = False,
        qr: str | None = None,
    ) -> None:
        """Queue a freshly obtained pairing code (None pairing by QR, with the QR's payload `qr`); the
        row's attempt count goes up once per code, and is 1 again for the `first` of an attempt."""
        self._enqueue(key, PairingCode(driver_id, code, aware(generated_at), aware(expires_at), first, qr))

    def clear_pairing_code(self, *, key: InstanceKey, driver_id: str) -> None:
        self._enqueue(key, ClearPairingCode(driver_id))

    async def find_drift(self, expected: list[Expected]) -> list[Drift]:
        """The rows that disagree with `expected`, in one query; raises psycopg.Error while Postgres
        is away (the caller tries again next round)."""
        assert self._pool is not None
        async with self._pool.connection(timeout=self.settings.connection_timeout_seconds) as conn:
            return await self.table.drifted(conn, expected)

    def repair(self, drift: Drift, at: datetime) -> None:
        """Queue the rewrite of a row found drifted (only while no write of its own is queued)."""
        e = drift.expected
        namespace, name = e.key
        write = Repair(
            uuid.uuid4(), namespace, name, e.instance, e.driver_id, e.phase, e.status, e.no_code, drift.found(), at
        )
        self._enqueue(e.key, write)

    def queued(self, key: InstanceKey) -> bool:
        """Whether writes of this instance are waiting: its row is about to change anyway."""
        return key in self._queues

    def sync_status(self, key: InstanceKey) -> SyncStatus:
        pending = len(self._queues.get(key, ()))
        if pending and self._outage is not None:
            return SyncStatus(False, SyncReason.DATABASE_UNAVAILABLE, self._outage, pending)
        return replace(self._row_problems.get(key, SYNCED), pending=pending)

    def pending(self) -> int:
        """Writes recorded and not yet in the database (the queue depth)."""
        return sum(len(queue) for queue in self._queues.values())

    def lag_seconds(self) -> float:
        """Age of the oldest write still waiting: 0 when the database is up to date."""
        oldest = min((queue[0].enqueued_at for queue in self._queues.values()), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    async def drain(self) -> None:
        """Wait until every queued write is in the database (forever, if it never comes back)."""
        await self._idle.wait()

    def _enqueue(self, key: InstanceKey, write: Write) -> None:
        self._queues.setdefault(key, deque()).append(Queued(write))
        self._idle.clear()
        self._work.set()
        if self._outage is not None:
            self._publish(key)

    async def _run(self) -> None:
        delay = self.settings.retry_base_seconds
        while True:
            await self._work.wait()
            if await self._pass():
                delay = self.settings.retry_base_seconds
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_seconds)

    async def _pass(self) -> bool:
        """Drain every key with pending writes, a few at a time; stop at the first database error."""
        self._work.clear()
        keys = iter(list(self._queues))
        failures: list[Exception] = []

        async def lane() -> None:
            for key in keys:
                if failures:
                    return
                try:
                    await self._drain_key(key)
                except Exception as exc:
                    failures.append(exc)

        await asyncio.gather(*(lane() for _ in range(self.settings.pool_max_size)))
        if self._queues:
            self._work.set()  # failed writes, or new ones that arrived during the pass
        else:
            self._idle.set()
        if failures:
            self._begin_outage(failures[0])
            return False
        if self._outage is not None:
            log.info("database writes caught up")
            self._outage = None
        return True

    async def _drain_key(self, key: InstanceKey) -> None:
        assert self._pool is not None
        queue = self._queues[key]
        async with self._pool.connection(timeout=self.settings.connection_timeout_seconds) as conn:
            while queue:
                try:
                    row = await self._apply(conn, queue[0].write)
                    self.counters.writes_applied += 1
                except psycopg.DataError as exc:
                    # Values Postgres can never store (a NUL byte, an out-of-range number): retrying
                    # would wedge this instance's queue for good.
                    row = None
                    self.counters.writes_dropped += 1
                    log.error("%s: dropped a write Postgres cannot store: %s", key, type(exc).__name__)
                queue.popleft()
                self._note_row(key, row)
            # Before returning the connection (an await): a write queued meanwhile would land in
            # this deque after it was let go.
            del self._queues[key]
        self._publish(key)

    def _begin_outage(self, exc: Exception) -> None:
        self.counters.write_failures += 1
        if self._outage is None:
            if isinstance(exc, psycopg.Error):
                log.warning("database unavailable, queueing writes and retrying: %s", error_line(exc))
            else:
                log.error("database write failed, retrying", exc_info=exc)
            self._outage = f"database writes are failing and queued: {error_line(exc)}"
        for key in self._queues:
            self._publish(key)

    def _note_row(self, key: InstanceKey, row: SyncStatus | None) -> None:
        """Remember what the last write that reached the driver's row found there."""
        if row is None:
            return
        if row.synced:
            self._row_problems.pop(key, None)
            return
        if row.reason is SyncReason.DRIVER_ROW_MISSING:
            self.counters.rows_missing += 1
        else:
            self.counters.rows_rejected += 1
            log.warning("%s: %s", key, row.message)
        self._row_problems[key] = row

    def _publish(self, key: InstanceKey) -> None:
        status = self.sync_status(key)
        if status == self._published.get(key, SYNCED):
            return
        if status.synced:
            del self._published[key]
        else:
            self._published[key] = status
        if self._on_sync is not None:
            try:
                self._on_sync(key, status)
            except Exception:
                log.exception("the DatabaseSynced callback failed for %s", key)

    async def _apply(self, conn: psycopg.AsyncConnection, write: Write) -> SyncStatus | None:
        """One write, one transaction, safe to repeat after a commit whose answer was lost.

        Returns what the driver's row looked like (None when the write does not touch it).
        """
        settings, table = self.settings, self.table
        cleared: dict[str, object] = dict.fromkeys(await table.code_columns(conn))
        async with conn.transaction():
            if isinstance(write, PairingCode):
                fresh = (write.code, write.generated_at, write.expires_at, write.qr)
                code = dict(zip(cleared, fresh, strict=False))
                count = "first" if write.first else "next"
                return (await table.update(conn, write.driver_id, code, count_attempt=count))[0]
            if isinstance(write, ClearPairingCode):
                return (await table.update(conn, write.driver_id, cleared))[0]
            if isinstance(write, NotificationDecided):
                await outbox.insert(conn, write.notification)
                return None
            if isinstance(write, Repair):
                return await self._repair(conn, write, cleared)
            values: dict[str, object] = {}
            if (status := DB_STATUS.get(write.to_phase)) is not None:
                values[settings.status_column] = status
            if write.to_phase in SOCKET_ENDED:  # the code died with its socket, in the same transaction
                values |= cleared
            row = (await table.update(conn, write.driver_id, values))[0] if values else None
            w = write
            transition = (w.event_id, w.namespace, w.name, w.evolution_instance, w.driver_id, w.from_phase)
            await conn.execute(
                self._insert_transition, (*transition, w.to_phase, w.state, w.reason, w.forced, w.at, None)
            )
            if write.notification is not None:
                await outbox.insert(conn, write.notification)
            return row

    async def _repair(self, conn: psycopg.AsyncConnection, w: Repair, cleared: dict[str, object]) -> SyncStatus:
        values: dict[str, object] = dict(cleared) if w.clear_code else {}
        if w.status is not None:
            values[self.settings.status_column] = w.status
        row, changed = await self.table.update(conn, w.driver_id, values)
        if changed:  # the row may have been put right meanwhile: then there is nothing to record
            transition = (w.event_id, w.namespace, w.name, w.evolution_instance, w.driver_id, w.phase, w.phase)
            await conn.execute(self._insert_transition, (*transition, None, None, False, w.at, w.found))
            log.info("%s/%s: repaired the driver's row (%s)", w.namespace, w.name, w.found)
        return row
