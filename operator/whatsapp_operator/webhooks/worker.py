"""The queue's worker: takes due webhooks from the inbox and processes them, a few at a time.

3 attempts, exponential backoff from 5 s, up to 5 processed in parallel, failed jobs kept (status
`dead`, replayed with `whatsapp-operator webhooks replay`). The receiver wakes the worker after each
new webhook; it also looks every `poll_seconds` for retries that became due and for jobs replayed
from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.webhooks.inbox import Inbox, InboxUnavailable, Job

log = logging.getLogger(__name__)
STATS_SECONDS = 15.0


class RetryLater(Exception):
    """The job cannot be processed yet (e.g. the operator is still loading); retry with backoff."""


@dataclasses.dataclass(frozen=True)
class QueuePolicy:
    attempts: int = 3
    backoff_seconds: float = 5.0  # before the 2nd attempt; doubles after each failure
    parallel: int = 5
    batch: int = 50  # jobs claimed at once (processed `parallel` at a time)
    lease_seconds: float = 60.0  # a claimed job comes back after this if its replica dies
    poll_seconds: float = 5.0
    retention: datetime.timedelta = datetime.timedelta(hours=24)  # processed rows kept for audits and dedup
    outage_backoff_max: float = 30.0

    def delay(self, attempts: int) -> float:
        """Wait after the `attempts`-th failed attempt: 5 s, 10 s, 20 s..."""
        return self.backoff_seconds * 2 ** (attempts - 1)


Processor = Callable[[Job], Awaitable[str]]  # returns what it did, for the row's `result`


class WebhookWorker:
    def __init__(
        self,
        inbox: Inbox,
        process: Processor,
        policy: QueuePolicy | None = None,
        active: Callable[[], bool] = lambda: True,
        counted: Callable[[str, str], None] = lambda event, result: None,
        stats: Callable[[dict[str, int], float], None] | None = None,
    ) -> None:
        """`active`: whether this replica may process now (its probers run): processing pulls
        probes forward, which only a running prober can do. `counted(event, result)` after each
        attempt (processed, retried, dead); `stats(counts by status, oldest queued age)` every
        `STATS_SECONDS` while idle, for the metrics."""
        self.inbox = inbox
        self.process = process
        self.policy = policy or QueuePolicy()
        self.active = active
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_purge: float | None = None
        self._counted = counted
        self._stats = stats
        self._last_stats: float | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="whatsapp-operator-webhooks")

    async def stop(self) -> None:
        """Jobs being processed are cut short; their lease brings them back at the next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        clock = LoopClock()
        outage_delay = 1.0
        while True:
            self._wake.clear()
            timeout = self.policy.poll_seconds
            if self.active():
                try:
                    jobs = await self.inbox.claim(
                        clock.now(), datetime.timedelta(seconds=self.policy.lease_seconds), self.policy.batch
                    )
                    if jobs:
                        await self._run_batch(jobs, clock)
                        continue
                    await self._purge(clock)
                    await self._report(clock)
                    due = await self.inbox.next_due()
                    outage_delay = 1.0
                except Exception as exc:
                    # Postgres away (logged by the inbox, once), or a bug: never end the worker, which
                    # would leave every later webhook queued without a word.
                    if not isinstance(exc, InboxUnavailable):
                        log.exception("the webhook worker failed; going on after %.0f s", outage_delay)
                    await asyncio.sleep(outage_delay)
                    outage_delay = min(outage_delay * 2, self.policy.outage_backoff_max)
                    continue
                if due is not None:
                    timeout = min(timeout, max(0.0, (due - clock.now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _run_batch(self, jobs: list[Job], clock: LoopClock) -> None:
        slots = asyncio.Semaphore(self.policy.parallel)
        done: dict[int, str] = {}

        async def one(job: Job) -> None:
            async with slots:
                try:
                    done[job.id] = await self.process(job)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Postgres gone: the job's lease brings it back. Raising here would abandon the
                    # batch's other jobs mid-processing (still running, their results lost).
                    with contextlib.suppress(InboxUnavailable):
                        await self._failed(job, exc, clock)

        await asyncio.gather(*(one(job) for job in jobs))
        if done:
            await self.inbox.complete(done, clock.now())
            for job in jobs:
                if job.id in done:
                    self._counted(job.event, "processed")

    async def _failed(self, job: Job, exc: Exception, clock: LoopClock) -> None:
        error = str(exc) if isinstance(exc, RetryLater) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, RetryLater):
            log.error("processing webhook %d (%s for %s) failed", job.id, job.event, job.instance, exc_info=exc)
        if job.attempts >= self.policy.attempts:
            log.warning(
                "webhook %d (%s for %s) failed %d times; dead until replayed: %s",
                job.id, job.event, job.instance, job.attempts, error,
            )  # fmt: skip
            await self.inbox.bury(job.id, error, clock.now())
            self._counted(job.event, "dead")
            return
        retry_at = clock.now() + datetime.timedelta(seconds=self.policy.delay(job.attempts))
        await self.inbox.retry(job.id, error, retry_at)
        self._counted(job.event, "retried")

    async def _report(self, clock: LoopClock) -> None:
        now = clock.monotonic()
        if self._stats is None or (self._last_stats is not None and now - self._last_stats < STATS_SECONDS):
            return
        self._last_stats = now
        counts, oldest = await self.inbox.counts(), await self.inbox.oldest_queued()
        self._stats(counts, 0.0 if oldest is None else max(0.0, (clock.now() - oldest).total_seconds()))

    async def _purge(self, clock: LoopClock) -> None:
        """At most once per retention/100 (15 min by default): a cheap indexed DELETE."""
        now = clock.monotonic()
        every = self.policy.retention.total_seconds() / 100
        if self._last_purge is not None and now - self._last_purge < every:
            return
        self._last_purge = now
        if purged := await self.inbox.purge(clock.now() - self.policy.retention):
            log.debug("forgot %d processed webhooks older than %s", purged, self.policy.retention)
