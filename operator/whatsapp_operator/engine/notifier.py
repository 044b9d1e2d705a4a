"""The notifier: takes due deliveries from the outbox, tries each channel, records what happened.

With a database the outbox is Postgres (`db.outbox`): decisions reach it through the mirror, in order
with the instance's phase changes, and survive restarts, outages and a standby taking over. Without
one it is `MemoryOutbox`: delivered at most once, and lost with the process (docs/notifications.md).
The notifier looks every `poll_seconds` for deliveries that became due, and sooner when woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core.notifications import (
    Delivered,
    Delivery,
    DeliveryPolicy,
    DeliveryState,
    Fail,
    Notification,
    Outcome,
    Retry,
    Wait,
)
from whatsapp_operator.db.store import StoreUnavailable
from whatsapp_operator.engine.metrics import REFRESH_SECONDS, Metrics

log = logging.getLogger(__name__)


class Store(Protocol):
    async def claim(self, now: datetime.datetime, lease: datetime.timedelta, limit: int) -> list[Delivery]: ...
    async def settle(
        self, delivery: Delivery, state: DeliveryState, error: str | None, at: datetime.datetime
    ) -> None: ...
    async def retry(self, delivery: Delivery, error: str, at: datetime.datetime, *, attempted: bool) -> None: ...
    async def next_due(self) -> datetime.datetime | None: ...
    async def pending(self) -> dict[str, int]: ...


@dataclasses.dataclass
class _Pending:
    delivery: Delivery
    due: datetime.datetime
    state: DeliveryState = DeliveryState.PENDING
    error: str | None = None


class MemoryOutbox:
    """The outbox without a database: the same claims and records, in this process only."""

    def __init__(self) -> None:
        # Ids continue from the wall clock's microseconds, so a restarted operator's never repeat an
        # earlier run's (the callback's notificationId and webhook-id); below 2**53 for JavaScript.
        self._ids = itertools.count(time.time_ns() // 1000)
        self._episodes: set[tuple[str, datetime.datetime, bool]] = set()
        self._rows: dict[tuple[int, str], _Pending] = {}

    def add(self, n: Notification) -> bool:
        """False for a second one of the episode; the "reconnected" message is the episode's other
        one, as in the Postgres outbox's key."""
        key = (n.instance_uid, n.episode, n.kind == "reconnected")
        if key in self._episodes:
            return False
        self._episodes.add(key)
        number = next(self._ids)
        for channel in n.channels:
            self._rows[(number, channel)] = _Pending(Delivery(number, channel, 0, n), n.decided_at)
        return True

    async def claim(self, now: datetime.datetime, lease: datetime.timedelta, limit: int) -> list[Delivery]:
        due = sorted(
            (r for r in self._rows.values() if r.state is DeliveryState.PENDING and r.due <= now), key=lambda r: r.due
        )
        claimed = []
        for row in due[:limit]:
            row.delivery = dataclasses.replace(row.delivery, attempts=row.delivery.attempts + 1)
            row.due = now + lease
            claimed.append(row.delivery)
        return claimed

    async def settle(self, delivery: Delivery, state: DeliveryState, error: str | None, at: datetime.datetime) -> None:
        row = self._rows[(delivery.id, delivery.channel)]
        row.state, row.error = state, error

    async def retry(self, delivery: Delivery, error: str, at: datetime.datetime, *, attempted: bool) -> None:
        row = self._rows[(delivery.id, delivery.channel)]
        row.due, row.error = at, error
        if not attempted:
            row.delivery = dataclasses.replace(row.delivery, attempts=row.delivery.attempts - 1)

    async def next_due(self) -> datetime.datetime | None:
        return min((r.due for r in self._rows.values() if r.state is DeliveryState.PENDING), default=None)

    async def pending(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._rows.values():
            if row.state is DeliveryState.PENDING:
                counts[row.delivery.channel] = counts.get(row.delivery.channel, 0) + 1
        return counts

    def listing(self) -> list[dict[str, Any]]:
        return [
            {"id": r.delivery.id, "channel": r.delivery.channel, "state": str(r.state), "attempts": r.delivery.attempts}
            for r in self._rows.values()
        ]


@dataclasses.dataclass(frozen=True)
class NotifierSettings:
    policy: DeliveryPolicy = dataclasses.field(default_factory=DeliveryPolicy)
    batch: int = 20
    parallel: int = 5
    lease: datetime.timedelta = datetime.timedelta(minutes=2)  # a claimed delivery comes back after this
    poll_seconds: float = 2.0
    outage_backoff_max: float = 30.0


class Notifier:
    def __init__(
        self,
        store: Store,
        deliver: Callable[[Delivery], Awaitable[Outcome]],
        *,
        delivered: Callable[[Notification, datetime.datetime], Awaitable[None]],
        settings: NotifierSettings | None = None,
        active: Callable[[], bool] = lambda: True,
        metrics: Metrics | None = None,
    ) -> None:
        """`delivered(notification, at)` runs on every delivery (for `.status.lastNotifiedTime`);
        `active`: whether this replica delivers now (its probers run)."""
        self.store = store
        self._deliver = deliver
        self._delivered = delivered
        self.settings = settings or NotifierSettings()
        self._active = active
        self._clock = LoopClock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._last_pending: float | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="whatsapp-operator-notifier")

    async def stop(self) -> None:
        """Attempts in flight are cut short; their lease brings them back at the next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        outage_delay = 1.0
        while True:
            self._wake.clear()
            timeout = self.settings.poll_seconds
            if self._active():
                try:
                    claimed = await self.store.claim(self._clock.now(), self.settings.lease, self.settings.batch)
                    if claimed:
                        await self._attempt_all(claimed)
                        continue
                    due = await self.store.next_due()
                    await self._report_pending()
                    outage_delay = 1.0
                except Exception as exc:
                    if not isinstance(exc, StoreUnavailable):
                        log.exception("the notifier failed; going on after %.0f s", outage_delay)
                    await asyncio.sleep(outage_delay)
                    outage_delay = min(outage_delay * 2, self.settings.outage_backoff_max)
                    continue
                if due is not None:
                    timeout = min(timeout, max(0.0, (due - self._clock.now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt_all(self, claimed: list[Delivery]) -> None:
        slots = asyncio.Semaphore(self.settings.parallel)

        async def one(delivery: Delivery) -> None:
            async with slots:
                try:
                    outcome = await self._deliver(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("delivering notification %d on %s failed", delivery.id, delivery.channel)
                    outcome = Retry(f"{type(exc).__name__}")
                # Postgres gone: the lease brings the delivery back (delivered twice only then).
                with contextlib.suppress(StoreUnavailable):
                    await self._record(delivery, outcome)

        await asyncio.gather(*(one(delivery) for delivery in claimed))

    async def _record(self, delivery: Delivery, outcome: Outcome) -> None:
        """Settle or reschedule the delivery, and count the attempt (a wait for the sender is none, but
        a delivery that dies waiting is counted `dead`: WhatsAppNotificationsFailing must see it)."""
        now = self._clock.now()
        if isinstance(outcome, Delivered):
            await self.store.settle(delivery, DeliveryState.DELIVERED, None, outcome.at)
            self._count(delivery, "delivered")
            await self._delivered(delivery.notification, outcome.at)
            return
        again = None if isinstance(outcome, Fail) else self.settings.policy.next_attempt(delivery, outcome, now)
        if again is None:
            state = DeliveryState.FAILED if isinstance(outcome, Fail) else DeliveryState.DEAD
            n = delivery.notification
            log.warning(
                "notification %d for %s/%s on %s is %s: %s",
                delivery.id, n.namespace, n.name, delivery.channel, state, outcome.error,
            )  # fmt: skip
            await self.store.settle(delivery, state, outcome.error, now)
            self._count(delivery, str(state))
            return
        await self.store.retry(delivery, outcome.error, again, attempted=not isinstance(outcome, Wait))
        if isinstance(outcome, Retry):
            self._count(delivery, "retried")

    def _count(self, delivery: Delivery, result: str) -> None:
        if self._metrics is not None:
            self._metrics.notified(delivery.channel, result)

    async def _report_pending(self) -> None:
        now = self._clock.monotonic()
        if self._metrics is None or (self._last_pending is not None and now - self._last_pending < REFRESH_SECONDS):
            return
        self._last_pending = now
        self._metrics.pending_notifications(await self.store.pending())
