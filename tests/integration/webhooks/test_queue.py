"""The webhook queue against a real Postgres: the inbox table's job semantics (accept, claim with a lease,
retry, bury, replay, purge) and the worker that processes it (attempts, backoff, parallelism, outages)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.pg import StoppableDatabase, eventually, execute, inbox_rows
from tests.support.webhook_samples import PAIRING_CODE, QR_PAYLOAD
from whatsapp_operator.webhooks.envelope import Envelope
from whatsapp_operator.webhooks.inbox import Inbox, InboxUnavailable, Job
from whatsapp_operator.webhooks.worker import QueuePolicy, RetryLater, WebhookWorker

UTC = datetime.UTC
T0 = datetime.datetime(2025, 10, 21, 10, 0, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)
FAST = QueuePolicy(backoff_seconds=0.05, poll_seconds=0.1, lease_seconds=5.0, outage_backoff_max=0.5)
_serial = itertools.count()


def connection_update(instance: str = "drv-1", state: str = "open") -> Envelope:
    """A distinct event each call (its date_time differs), as Evolution would send over time."""
    n = next(_serial)
    at = (T0 + datetime.timedelta(milliseconds=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Envelope("connection.update", instance, {"instance": instance, "state": state, "statusReason": 200}, at)


async def row(url: str, job_id: int) -> dict[str, Any]:
    (found,) = await execute(url, "SELECT * FROM whatsapp_operator.webhook_inbox WHERE id = %s", (job_id,))
    return found


MakeInbox = Callable[..., Awaitable[Inbox]]


@pytest.fixture
async def make_inbox() -> AsyncIterator[MakeInbox]:
    opened: list[Inbox] = []

    async def make(url: str, inbox_class: type[Inbox] = Inbox, **options: Any) -> Inbox:
        inbox = inbox_class(url, **options)
        await inbox.open()
        opened.append(inbox)
        return inbox

    yield make
    for inbox in opened:
        await inbox.close()


@pytest.fixture
async def inbox(pg_url: str, make_inbox: MakeInbox) -> Inbox:
    return await make_inbox(pg_url)


MakeWorker = Callable[..., WebhookWorker]


@pytest.fixture
async def make_worker() -> AsyncIterator[MakeWorker]:
    workers: list[WebhookWorker] = []

    def make(inbox: Inbox, process: Any, policy: QueuePolicy = FAST, **options: Any) -> WebhookWorker:
        worker = WebhookWorker(inbox, process, policy, **options)
        worker.start()
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        await worker.stop()


async def accept_many(inbox: Inbox, count: int, now: datetime.datetime = T0) -> None:
    for i in range(count):
        assert await inbox.accept(connection_update(f"drv-{i}"), now)


# ------------------------------------------------------------------------------------------ inbox


async def test_a_repeated_delivery_is_stored_once(pg_url: str, inbox: Inbox) -> None:
    event = connection_update()

    assert await inbox.accept(event, T0) is True
    assert await inbox.accept(event, T0 + SECOND) is False

    [stored] = await inbox_rows(pg_url)
    assert (stored["event"], stored["instance"], stored["status"], stored["attempts"]) == (
        "connection.update",
        "drv-1",
        "queued",
        0,
    )
    assert stored["received_at"] == T0
    assert stored["payload"] == event.stored()


async def test_the_stored_qrcode_has_no_pairing_code_or_qr_payload(pg_url: str, inbox: Inbox) -> None:
    qrcode = {"instance": "drv-1", "pairingCode": PAIRING_CODE, "code": QR_PAYLOAD, "base64": "data:image/png;base64,x"}

    assert await inbox.accept(Envelope("qrcode.updated", "drv-1", {"qrcode": qrcode}, "2025-10-21T10:00:00.000Z"), T0)

    [text] = await execute(pg_url, "SELECT t::text AS text FROM whatsapp_operator.webhook_inbox AS t")
    assert PAIRING_CODE not in text["text"]
    assert QR_PAYLOAD not in text["text"]
    assert "data:image" not in text["text"]
    assert (await inbox_rows(pg_url))[0]["payload"]["data"] == {"qrcode": {"instance": "drv-1"}}


async def test_claim_takes_due_jobs_oldest_first_up_to_the_limit_and_counts_attempts(inbox: Inbox) -> None:
    await inbox.accept(connection_update("drv-late"), T0 + 10 * SECOND)
    await inbox.accept(connection_update("drv-a"), T0)
    await inbox.accept(connection_update("drv-b"), T0 + SECOND)
    await inbox.accept(connection_update("drv-c"), T0 + 2 * SECOND)

    assert await inbox.claim(T0 - SECOND, LEASE, 10) == []
    first = await inbox.claim(T0 + 5 * SECOND, LEASE, 2)
    second = await inbox.claim(T0 + 5 * SECOND, LEASE, 10)

    assert [job.instance for job in first] == ["drv-a", "drv-b"]
    assert [job.instance for job in second] == ["drv-c"]
    assert all(job.attempts == 1 for job in first + second)
    assert first[0].event == "connection.update"
    assert first[0].payload["data"]["state"] == "open"
    assert [job.instance for job in await inbox.claim(T0 + 10 * SECOND, LEASE, 10)] == ["drv-late"]


async def test_a_claimed_job_comes_back_when_its_lease_ends(inbox: Inbox) -> None:
    await inbox.accept(connection_update(), T0)

    [job] = await inbox.claim(T0, LEASE, 10)
    assert await inbox.claim(T0 + LEASE - SECOND, LEASE, 10) == []
    [again] = await inbox.claim(T0 + LEASE, LEASE, 10)

    assert again.id == job.id
    assert (job.attempts, again.attempts) == (1, 2)


async def test_concurrent_claims_never_hand_out_a_job_twice(pg_url: str, make_inbox: MakeInbox) -> None:
    replicas = [await make_inbox(pg_url), await make_inbox(pg_url)]
    await accept_many(replicas[0], 300)
    taken: list[int] = []

    async def claimer(inbox: Inbox) -> None:
        while jobs := await inbox.claim(T0, LEASE, 7):
            taken.extend(job.id for job in jobs)

    await asyncio.wait_for(asyncio.gather(*(claimer(replicas[i % 2]) for i in range(16))), 30)

    assert len(taken) == 300
    assert len(set(taken)) == 300
    assert {r["attempts"] for r in await inbox_rows(pg_url)} == {1}


async def test_complete_marks_jobs_done_with_their_result(pg_url: str, inbox: Inbox) -> None:
    await accept_many(inbox, 3)
    jobs = await inbox.claim(T0, LEASE, 10)
    await inbox.retry(jobs[0].id, "RuntimeError: first try", T0)
    [jobs[0]] = await inbox.claim(T0, LEASE, 1)

    await inbox.complete({jobs[0].id: "probed drv-0", jobs[1].id: "probed drv-1"}, T0 + SECOND)

    done = {r["id"]: r for r in await inbox_rows(pg_url) if r["status"] == "done"}
    assert {job_id: r["result"] for job_id, r in done.items()} == {
        jobs[0].id: "probed drv-0",
        jobs[1].id: "probed drv-1",
    }
    assert all(r["processed_at"] == T0 + SECOND and r["last_error"] is None for r in done.values())
    assert await inbox.claim(T0 + 10 * LEASE, LEASE, 10) == [
        Job(jobs[2].id, "connection.update", "drv-2", jobs[2].payload, 2, jobs[2].received_at)
    ]
    assert await inbox.counts() == {"queued": 1, "done": 2, "dead": 0}


async def test_retry_sets_the_next_attempt_and_keeps_the_error(pg_url: str, inbox: Inbox) -> None:
    await inbox.accept(connection_update(), T0)
    [job] = await inbox.claim(T0, LEASE, 10)

    await inbox.retry(job.id, "RuntimeError: Evolution timed out", T0 + 5 * SECOND)

    assert await inbox.next_due() == T0 + 5 * SECOND
    assert await inbox.claim(T0 + 4 * SECOND, LEASE, 10) == []
    [again] = await inbox.claim(T0 + 5 * SECOND, LEASE, 10)
    assert again.attempts == 2
    assert (await row(pg_url, job.id))["last_error"] == "RuntimeError: Evolution timed out"


async def test_buried_jobs_are_listed_dead_and_never_claimed(inbox: Inbox) -> None:
    await accept_many(inbox, 2)
    jobs = await inbox.claim(T0, LEASE, 10)

    await inbox.bury(jobs[1].id, "ValueError: bad", T0 + SECOND)

    [dead] = await inbox.dead()
    assert dead["id"] == jobs[1].id
    assert (dead["event"], dead["instance"], dead["attempts"], dead["last_error"]) == (
        "connection.update",
        "drv-1",
        1,
        "ValueError: bad",
    )
    assert (dead["received_at"], dead["processed_at"]) == (T0, T0 + SECOND)
    assert [job.id for job in await inbox.claim(T0 + 10 * LEASE, LEASE, 10)] == [jobs[0].id]
    assert await inbox.counts() == {"queued": 1, "done": 0, "dead": 1}


async def test_replay_requeues_every_dead_job_with_fresh_attempts(pg_url: str, inbox: Inbox) -> None:
    await accept_many(inbox, 3)
    jobs = await inbox.claim(T0, LEASE, 10)
    for job in jobs[:2]:
        await inbox.bury(job.id, "ValueError: bad", T0)
    await inbox.complete({jobs[2].id: "ok"}, T0)

    replayed = await inbox.replay(T0 + SECOND)

    assert replayed == [jobs[0].id, jobs[1].id]
    assert await inbox.dead() == []
    assert await inbox.counts() == {"queued": 2, "done": 1, "dead": 0}
    assert await inbox.claim(T0, LEASE, 10) == []  # due from the replay on
    again = await inbox.claim(T0 + SECOND, LEASE, 10)
    assert [(job.id, job.attempts) for job in again] == [(jobs[0].id, 1), (jobs[1].id, 1)]
    assert (await row(pg_url, jobs[0].id))["processed_at"] is None
    assert (await row(pg_url, jobs[2].id))["status"] == "done"


async def test_replay_by_ids_requeues_only_those_dead_jobs(inbox: Inbox) -> None:
    await accept_many(inbox, 4)
    jobs = await inbox.claim(T0, LEASE, 10)
    for job in jobs[:3]:
        await inbox.bury(job.id, "ValueError: bad", T0)

    # jobs[3] is not dead (it is being processed), and 999999 does not exist: neither is touched.
    replayed = await inbox.replay(T0, [jobs[2].id, jobs[0].id, jobs[3].id, 999_999])

    assert replayed == [jobs[0].id, jobs[2].id]
    assert [dead["id"] for dead in await inbox.dead()] == [jobs[1].id]
    assert await inbox.replay(T0, []) == []
    assert [dead["id"] for dead in await inbox.dead()] == [jobs[1].id]


async def test_purge_forgets_only_processed_jobs_older_than_the_cutoff(pg_url: str, inbox: Inbox) -> None:
    await accept_many(inbox, 5)
    old_done, new_done, old_dead, _leased = (job.id for job in await inbox.claim(T0, LEASE, 4))
    await inbox.complete({old_done: "ok"}, T0)
    await inbox.complete({new_done: "ok"}, T0 + 2 * SECOND)
    await inbox.bury(old_dead, "ValueError: bad", T0)

    assert await inbox.purge(T0 + SECOND) == 1

    assert old_done not in [r["id"] for r in await inbox_rows(pg_url)]
    assert await inbox.counts() == {"queued": 2, "done": 1, "dead": 1}
    assert await inbox.purge(T0 + SECOND) == 0


async def test_counts_and_next_due_of_an_empty_inbox(inbox: Inbox) -> None:
    assert await inbox.counts() == {"queued": 0, "done": 0, "dead": 0}
    assert await inbox.next_due() is None
    assert await inbox.dead() == []


async def test_a_closed_inbox_is_unavailable_not_broken(pg_url: str) -> None:
    inbox = Inbox(pg_url)
    with pytest.raises(InboxUnavailable):
        await inbox.accept(connection_update(), T0)


# ------------------------------------------------------------------------------------------ worker


class Processor:
    """Records every attempt (job id, loop time) and fails as told."""

    def __init__(self, fail: Callable[[Job, int], Exception | None] = lambda job, n: None) -> None:
        self.fail = fail
        self.calls: list[tuple[int, float]] = []
        self.running = 0
        self.max_running = 0
        self.hold = 0.0

    def attempts(self, job_id: int) -> list[float]:
        return [at for called, at in self.calls if called == job_id]

    async def __call__(self, job: Job) -> str:
        self.calls.append((job.id, asyncio.get_running_loop().time()))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
            if (exc := self.fail(job, len(self.attempts(job.id)))) is not None:
                raise exc
            return f"probed {job.instance}"
        finally:
            self.running -= 1


async def only(url: str) -> dict[str, Any]:
    [found] = await inbox_rows(url)
    return found


async def status_is(url: str, status: str) -> bool:
    return [r["status"] for r in await inbox_rows(url)] == [status]


async def test_a_job_that_fails_twice_then_succeeds_ends_done_after_three_attempts(
    pg_url: str, inbox: Inbox, make_worker: MakeWorker
) -> None:
    process = Processor(lambda job, n: RuntimeError(f"Evolution timed out ({n})") if n <= 2 else None)
    await inbox.accept(connection_update(), datetime.datetime.now(UTC))

    make_worker(inbox, process)
    await eventually(lambda: status_is(pg_url, "done"))

    job = await only(pg_url)
    assert (job["attempts"], job["result"], job["last_error"]) == (3, "probed drv-1", None)
    first, second, third = process.attempts(job["id"])
    # Backoff: 0.05 s after the first failure, doubling (the processor's clock is the worker's).
    assert second - first >= FAST.delay(1) - 0.002
    assert third - second >= FAST.delay(2) - 0.002


async def test_a_job_that_always_fails_is_dead_after_exactly_three_attempts_with_its_last_error(
    pg_url: str, inbox: Inbox, make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    process = Processor(lambda job, n: ValueError(f"no such instance (attempt {n})"))
    await inbox.accept(connection_update(), datetime.datetime.now(UTC))

    make_worker(inbox, process)
    await eventually(lambda: status_is(pg_url, "dead"))

    job = await only(pg_url)
    assert job["attempts"] == 3
    assert job["last_error"] == "ValueError: no such instance (attempt 3)"
    assert job["processed_at"] is not None
    assert len(process.calls) == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    assert any("dead until replayed" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert [dead["id"] for dead in await inbox.dead()] == [job["id"]]


async def test_retry_later_is_retried_without_an_error_log(
    pg_url: str, inbox: Inbox, make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    process = Processor(lambda job, n: RetryLater("the operator is still loading") if n == 1 else None)
    await inbox.accept(connection_update(), datetime.datetime.now(UTC))

    make_worker(inbox, process)
    await eventually(lambda: status_is(pg_url, "done"))

    assert (await only(pg_url))["attempts"] == 2
    assert len(process.calls) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_retry_later_still_ends_dead_after_three_attempts(
    pg_url: str, inbox: Inbox, make_worker: MakeWorker
) -> None:
    process = Processor(lambda job, n: RetryLater("the operator is still loading"))
    await inbox.accept(connection_update(), datetime.datetime.now(UTC))

    make_worker(inbox, process)
    await eventually(lambda: status_is(pg_url, "dead"))

    assert (await only(pg_url))["last_error"] == "the operator is still loading"
    assert len(process.calls) == 3


async def test_never_more_than_parallel_jobs_are_processed_at_once(
    pg_url: str, inbox: Inbox, make_worker: MakeWorker
) -> None:
    process = Processor()
    process.hold = 0.02
    await accept_many(inbox, 20, datetime.datetime.now(UTC))

    make_worker(inbox, process)

    async def all_done() -> bool:
        return await inbox.counts() == {"queued": 0, "done": 20, "dead": 0}

    await eventually(all_done)
    assert process.max_running == FAST.parallel
    assert len(process.calls) == 20
    assert {r["result"] for r in await inbox_rows(pg_url)} == {f"probed drv-{i}" for i in range(20)}


async def accepted(inbox: Inbox, envelope: Envelope) -> bool:
    try:
        return await inbox.accept(envelope, datetime.datetime.now(UTC))
    except InboxUnavailable:
        return False


class WatchedInbox(Inbox):
    """The real inbox, counting the worker's looks for due jobs (it waits right after `next_due`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_looks = 0
        self.claim_failures = 0

    async def next_due(self) -> datetime.datetime | None:
        due = await super().next_due()
        self.idle_looks += 1
        return due

    async def claim(self, now: datetime.datetime, lease: datetime.timedelta, limit: int) -> list[Job]:
        try:
            return await super().claim(now, lease, limit)
        except InboxUnavailable:
            self.claim_failures += 1
            raise


async def test_a_standby_replica_leaves_jobs_queued(pg_url: str, inbox: Inbox, make_worker: MakeWorker) -> None:
    asked = 0
    is_active = False

    def active() -> bool:
        nonlocal asked
        asked += 1
        return is_active

    process = Processor()
    await accept_many(inbox, 3, datetime.datetime.now(UTC))
    worker = make_worker(inbox, process, active=active)
    for _ in range(3):
        before = asked
        worker.wake()
        await eventually(lambda before=before: asked > before)

    assert process.calls == []
    assert await inbox.counts() == {"queued": 3, "done": 0, "dead": 0}
    assert {r["attempts"] for r in await inbox_rows(pg_url)} == {0}

    is_active = True
    worker.wake()

    async def all_done() -> bool:
        return (await inbox.counts())["done"] == 3

    await eventually(all_done)


async def test_wake_gets_a_new_job_processed_long_before_the_next_poll(
    pg_url: str, make_inbox: MakeInbox, make_worker: MakeWorker
) -> None:
    inbox = await make_inbox(pg_url, WatchedInbox)
    assert isinstance(inbox, WatchedInbox)
    process = Processor()
    worker = make_worker(inbox, process, QueuePolicy(poll_seconds=60))
    await eventually(lambda: inbox.idle_looks >= 1)  # the worker now waits for a wake or the 60 s poll

    await inbox.accept(connection_update(), datetime.datetime.now(UTC))
    worker.wake()

    await eventually(lambda: status_is(pg_url, "done"), within=5)
    assert len(process.calls) == 1


async def test_a_replayed_dead_job_is_processed_again(pg_url: str, inbox: Inbox, make_worker: MakeWorker) -> None:
    broken = True
    process = Processor(lambda job, n: RuntimeError("Evolution unreachable") if broken else None)
    await inbox.accept(connection_update(), datetime.datetime.now(UTC))
    make_worker(inbox, process)
    await eventually(lambda: status_is(pg_url, "dead"))

    broken = False
    # What `whatsapp-operator webhooks replay` does, from another process: the worker's poll finds it.
    assert len(await inbox.replay(datetime.datetime.now(UTC))) == 1

    await eventually(lambda: status_is(pg_url, "done"))
    job = await only(pg_url)
    assert (job["attempts"], job["result"], job["last_error"]) == (1, "probed drv-1", None)
    assert len(process.calls) == 4


async def test_the_worker_rides_out_a_postgres_outage_and_resumes(
    pg_stoppable: StoppableDatabase, make_inbox: MakeInbox, make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="whatsapp_operator.webhooks")
    url = pg_stoppable.url
    inbox = await make_inbox(url, WatchedInbox, connection_timeout=0.3)
    assert isinstance(inbox, WatchedInbox)
    process = Processor()
    worker = make_worker(inbox, process)
    await inbox.accept(connection_update("drv-before"), datetime.datetime.now(UTC))
    worker.wake()
    await eventually(lambda: status_is(url, "done"))

    await asyncio.to_thread(pg_stoppable.server.stop)
    await eventually(lambda: inbox.claim_failures >= 3)  # backing off: 1 s max here, then 0.5 s each
    assert "webhook inbox unavailable" in caplog.text

    await asyncio.to_thread(pg_stoppable.server.start)
    await eventually(lambda: accepted(inbox, connection_update("drv-after")), within=20)
    worker.wake()

    async def both_done() -> bool:
        return [(r["instance"], r["status"]) for r in await inbox_rows(url)] == [
            ("drv-before", "done"),
            ("drv-after", "done"),
        ]

    await eventually(both_done, within=20)
    assert "webhook inbox available again" in caplog.text


async def test_a_failure_recorded_during_an_outage_does_not_abandon_the_rest_of_the_batch(
    pg_stoppable: StoppableDatabase, make_inbox: MakeInbox, make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_stoppable.url
    inbox = await make_inbox(url, connection_timeout=0.3)
    release = {"drv-a": asyncio.Event(), "drv-b": asyncio.Event()}

    async def process(job: Job) -> str:
        calls.append(job.instance)
        await release[job.instance].wait()
        if job.instance == "drv-a" and calls.count("drv-a") == 1:
            raise RuntimeError("Evolution timed out")
        return f"probed {job.instance}"

    calls: list[str] = []
    now = datetime.datetime.now(UTC)
    await inbox.accept(connection_update("drv-a"), now)
    await inbox.accept(connection_update("drv-b"), now)
    make_worker(inbox, process, dataclasses.replace(FAST, lease_seconds=1.0))
    await eventually(lambda: sorted(calls) == ["drv-a", "drv-b"])

    # drv-a fails while Postgres is down, so its retry cannot be written; drv-b is still running.
    await asyncio.to_thread(pg_stoppable.server.stop)
    release["drv-a"].set()
    await eventually(lambda: "webhook inbox unavailable" in caplog.text)
    await asyncio.to_thread(pg_stoppable.server.start)
    await eventually(lambda: available(inbox), within=20)
    release["drv-b"].set()

    async def both_done() -> bool:
        return [r["status"] for r in await inbox_rows(url)] == ["done", "done"]

    await eventually(both_done, within=20)
    # drv-b's result was recorded by the batch it ran in: it was neither processed again nor re-attempted.
    assert calls.count("drv-b") == 1
    assert [(r["instance"], r["attempts"]) for r in await inbox_rows(url)] == [("drv-a", 2), ("drv-b", 1)]


async def available(inbox: Inbox) -> bool:
    try:
        await inbox.counts()
    except InboxUnavailable:
        return False
    return True


def test_the_backoff_starts_at_five_seconds_and_doubles() -> None:
    policy = QueuePolicy()

    assert (policy.attempts, policy.parallel) == (3, 5)
    assert [policy.delay(n) for n in (1, 2, 3)] == [5, 10, 20]


class FlakyInbox(Inbox):
    """The real inbox, whose first `complete` meets an error nobody planned for (a bug, a driver surprise)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed = False

    async def complete(self, results: dict[int, str], now: datetime.datetime) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("unexpected")
        await super().complete(results, now)


async def test_an_unexpected_error_is_logged_and_the_worker_goes_on(
    pg_url: str, make_inbox: MakeInbox, make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that died would leave every later webhook queued, silently."""
    inbox = await make_inbox(pg_url, FlakyInbox)
    process = Processor()
    make_worker(inbox, process, dataclasses.replace(FAST, lease_seconds=0.5))
    assert await inbox.accept(connection_update("drv-1"), datetime.datetime.now(UTC))

    await eventually(lambda: status_is(pg_url, "done"), within=15)
    assert "the webhook worker failed" in caplog.text
    assert len(process.calls) == 2, "processed again once its lease ended"
