"""The notification outbox in Postgres: `whatsapp_operator.notifications`, one row per decision, and
`notification_deliveries`, one row per channel, which the notifier claims and records attempts on.

`insert` runs inside the mirror's transaction (with the phase change it belongs to, when there is
one); ON CONFLICT on the episode key (instance_uid, episode, and whether it is the "reconnected"
message) makes a repeated insert (a restart re-deriving its
decisions from `.status`, a standby taking over) a no-op. Claims are FOR UPDATE SKIP LOCKED with a
lease, as the webhook inbox's: two replicas never attempt one delivery at once.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import psycopg

from whatsapp_operator.core.notifications import Delivery, DeliveryState, Notification
from whatsapp_operator.db.connection import SCHEMA
from whatsapp_operator.db.store import PooledStore, StoreUnavailable

NOTIFICATIONS = f"{SCHEMA}.notifications"
DELIVERIES = f"{SCHEMA}.notification_deliveries"
_FIELDS = (
    "instance_uid, episode, namespace, name, instance, server, driver_id, driver_name, phone, kind, reason, decided_at"
)
_VALUES = ", ".join(["%s"] * len(_FIELDS.split(", ")))


async def insert(conn: psycopg.AsyncConnection, n: Notification) -> bool:
    """The decision and one pending delivery per channel; False if the episode has one already."""
    cursor = await conn.execute(
        f"INSERT INTO {NOTIFICATIONS} ({_FIELDS}) VALUES ({_VALUES})"
        " ON CONFLICT (instance_uid, episode, (kind = 'reconnected')) DO NOTHING RETURNING id",
        [getattr(n, field) for field in _FIELDS.split(", ")],
    )
    row = await cursor.fetchone()
    if row is None:
        return False
    await conn.execute(
        f"INSERT INTO {DELIVERIES} (notification_id, channel, next_attempt_at) SELECT %s, channel, %s"
        " FROM unnest(%s::text[]) AS channel",
        (row[0], n.decided_at, list(n.channels)),
    )
    return True


class OutboxUnavailable(StoreUnavailable):
    """Postgres cannot give or record deliveries now."""


class Outbox(PooledStore):
    name = "notification outbox"
    unavailable = OutboxUnavailable
    log = logging.getLogger(__name__)

    async def claim(self, now: datetime.datetime, lease: datetime.timedelta, limit: int) -> list[Delivery]:
        """Up to `limit` due deliveries, oldest decision first; the attempt is counted now."""
        rows = await self._execute(
            f"UPDATE {DELIVERIES} AS d SET attempts = d.attempts + 1, next_attempt_at = %s"
            f" FROM {NOTIFICATIONS} AS n WHERE n.id = d.notification_id AND (d.notification_id, d.channel) IN"
            f"  (SELECT notification_id, channel FROM {DELIVERIES} WHERE state = 'pending' AND next_attempt_at <= %s"
            "   ORDER BY next_attempt_at, notification_id LIMIT %s FOR UPDATE SKIP LOCKED)"
            f" RETURNING d.notification_id, d.channel, d.attempts, {', '.join(f'n.{f}' for f in _FIELDS.split(', '))}",
            (now + lease, now, limit),
        )
        return sorted((_delivery(row) for row in rows), key=lambda d: (d.id, d.channel))

    async def settle(self, delivery: Delivery, state: DeliveryState, error: str | None, at: datetime.datetime) -> None:
        """Delivered (at `at`), failed or dead; `error` is the last one, None once delivered."""
        await self._execute(
            f"UPDATE {DELIVERIES} SET state = %s, last_error = %s,"
            " delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END"
            " WHERE notification_id = %s AND channel = %s",
            (state, error, state, at, delivery.id, delivery.channel),
        )

    async def retry(self, delivery: Delivery, error: str, at: datetime.datetime, *, attempted: bool) -> None:
        """Try again at `at`; a look that was no attempt (the sender was not ready) gives it back."""
        await self._execute(
            f"UPDATE {DELIVERIES} SET next_attempt_at = %s, last_error = %s, attempts = attempts - %s"
            " WHERE notification_id = %s AND channel = %s",
            (at, error, 0 if attempted else 1, delivery.id, delivery.channel),
        )

    async def next_due(self) -> datetime.datetime | None:
        rows = await self._execute(f"SELECT min(next_attempt_at) AS due FROM {DELIVERIES} WHERE state = 'pending'")
        return rows[0]["due"]

    async def pending(self) -> dict[str, int]:
        """Deliveries waiting or retrying, by channel."""
        rows = await self._execute(
            f"SELECT channel, count(*) AS n FROM {DELIVERIES} WHERE state = 'pending' GROUP BY channel"
        )
        return {row["channel"]: row["n"] for row in rows}

    async def listing(
        self, *, states: tuple[str, ...] = (), driver: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Deliveries, newest decision first, for the CLI and the demo."""
        where, params = ["TRUE"], []
        if states:
            where.append("d.state = ANY(%s)")
            params.append(list(states))
        if driver is not None:
            where.append("n.driver_id = %s")
            params.append(driver)
        return await self._execute(
            "SELECT n.id, n.namespace, n.name, n.driver_id, n.kind, n.decided_at, d.channel, d.state, d.attempts,"
            f" d.last_error, d.delivered_at FROM {NOTIFICATIONS} AS n"
            f" JOIN {DELIVERIES} AS d ON d.notification_id = n.id"
            f" WHERE {' AND '.join(where)} ORDER BY n.decided_at DESC, n.id DESC, d.channel LIMIT %s",
            (*params, limit),
        )

    async def replay(self, now: datetime.datetime, ids: list[int] | None = None) -> int:
        """Dead deliveries (all, or those of notifications `ids`) pending again with fresh attempts.
        Their deadline counts from the decision: a replay gives them one more try each."""
        where = "state = 'dead'" + (" AND notification_id = ANY(%s)" if ids is not None else "")
        params: tuple[Any, ...] = (now,) + ((ids,) if ids is not None else ())
        rows = await self._execute(
            f"UPDATE {DELIVERIES} SET state = 'pending', attempts = 0, next_attempt_at = %s"
            f" WHERE {where} RETURNING notification_id",
            params,
        )
        return len(rows)


def _delivery(row: dict[str, Any]) -> Delivery:
    fields = {name: row[name] for name in _FIELDS.split(", ")}
    notification = Notification(**fields, channels=(row["channel"],))
    return Delivery(row["notification_id"], row["channel"], row["attempts"], notification)
