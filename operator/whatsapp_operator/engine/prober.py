"""One prober per EvolutionServer: which instances it tracks, and the loop that probes each on its
own deadline.

A fixed pool of `concurrency` workers takes due instances from a queue, so the number of tasks and
connections is bounded whatever the fleet size; one `Schedule` heap holds every deadline, so an
idle instance costs a heap entry and a small record, not a timer or a task. A probe itself is
`engine.probe`'s; what it records, `engine.recorder`'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core.breaker import BreakerState, CircuitBreaker
from whatsapp_operator.core.notifications import Notification
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import InstanceKey, ServerSpec
from whatsapp_operator.core.schedule import Schedule
from whatsapp_operator.core.state import Observation, stuck
from whatsapp_operator.engine.fleet import Member
from whatsapp_operator.engine.metrics import Metrics, ServerMetrics
from whatsapp_operator.engine.probe import Probe
from whatsapp_operator.engine.recorder import Recorder
from whatsapp_operator.engine.tracked import Tracked
from whatsapp_operator.evolution import EvolutionClient
from whatsapp_operator.kube import KubeApi

if TYPE_CHECKING:
    from whatsapp_operator.db.mirror import StatusMirror

logger = logging.getLogger(__name__)

# Instances due this close together go to the workers in one wake-up of the loop, up to that much
# early: a steady fleet's jittered deadlines would otherwise cost a loop iteration each.
BATCH_SECONDS = 0.05
# The server's status (counts over the whole fleet) is worked out at most this often: while a fleet
# loads, every instance tracked marks it out of date.
SERVER_STATUS_SECONDS = 1.0
EXHAUSTED = "RemediationExhausted"  # the Stuck condition's reason once the logout budget is spent
CLOSER_LOOKS = 3  # follow-up probes after a logout or removal webhook (engine.probe: seconds apart)


class ServerProber:
    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        spec: ServerSpec,
        api_key: str,
        kube: KubeApi,
        mirror: StatusMirror | None = None,
        webhook_secret: str | None = None,
        notify_cooldown: datetime.timedelta = datetime.timedelta(minutes=30),
        callback: tuple[str, bytes] | None = None,
        decided: Callable[[Notification], None] = lambda _: None,
        notify_deadline: datetime.timedelta = datetime.timedelta(hours=6),
        metrics: ServerMetrics | None = None,
    ) -> None:
        """`callback`: the application's URL and signing key, when the server names one;
        `decided`: the notifier's door for each decision to notify."""
        self.namespace = namespace
        self.name = name
        self.spec = spec
        self.callback = callback
        self.notify_deadline = notify_deadline
        self.clock = LoopClock()
        self.breaker = CircuitBreaker(
            spec.failure_threshold, spec.open_seconds, clock=self.clock.monotonic, on_change=self._breaker_changed
        )
        self.client = EvolutionClient(
            spec.url,
            api_key,
            timeout=spec.probe_timeout,
            attempts=spec.probe_attempts,
            breaker=self.breaker,
            max_connections=spec.concurrency,
        )
        self._wake = asyncio.Event()
        self._sleeping_until = 0.0  # the loop's next deadline while it waits
        self._server_written_at = -math.inf
        self.recorder = Recorder(
            namespace=namespace,
            server=name,
            kube=kube,
            mirror=mirror,
            clock=self.clock,
            forget=self.forget,
            wake=self._wake.set,
            channels=tuple(c for c in spec.channels if c != "callback" or callback is not None),
            decided=decided,
        )
        self.probe = Probe(
            spec=spec,
            client=self.client,
            recorder=self.recorder,
            clock=self.clock,
            webhook_secret=webhook_secret,
            notify_cooldown=notify_cooldown,
            metrics=metrics or Metrics().server(f"{namespace}/{name}"),
        )
        self.tracked: dict[InstanceKey, Tracked] = {}
        self.schedule: Schedule[InstanceKey] = Schedule()
        self._queue: asyncio.Queue[InstanceKey] = asyncio.Queue()
        self._queued: set[InstanceKey] = set()  # due, waiting for a worker: out of the schedule
        self._probing: set[InstanceKey] = set()  # out of the schedule while a worker probes them
        self._again: set[InstanceKey] = set()  # something happened during their probe: probe once more

    # -- membership: watch events (through the Runtime) tell the prober what exists --------------

    def load(self, members: Iterable[Member]) -> None:
        """Track what the fleet knows of this server."""
        for member in members:
            self.track(member, changed=False)

    def track(self, member: Member, *, changed: bool) -> None:
        """An instance was seen (a watch event, or the load at start): track it, or, if its spec
        `changed`, probe it soon. A newly tracked one gives the outbox any decision its `.status`
        holds that may have missed it (a restart or a takeover between the decision and its row),
        whether it was in the fleet when the prober started or its watch event came later."""
        now = self.clock.monotonic()
        key = member.spec.key
        if key not in self.tracked:
            t = self.tracked[key] = Tracked.of(member)
            self.recorder.recover(t, self.clock.now() - self.notify_deadline)
            if t.state.phase is Phase.PENDING:
                self.schedule.set(key, now)  # new: probe right away
            else:
                self.schedule.add_jittered(key, now, self.spec.probe_interval)
            self.recorder.server_dirty = True
            self._wake.set()
        elif changed:
            self._pull(key, now)

    def forget(self, key: InstanceKey) -> None:
        if self.tracked.pop(key, None) is not None:
            self.schedule.remove(key)
            self.probe.liveness.forget(key)
            self.recorder.server_dirty = True

    def probe_soon(self, key: InstanceKey) -> None:
        """Something happened to this instance (a webhook): do not wait for its next tick."""
        if key in self.tracked:
            self._pull(key, self.clock.monotonic())

    def news(self, key: InstanceKey, observation: Observation, received_at: datetime.datetime | None) -> None:
        """A webhook said what a probe cannot see: the next probe, at once, takes it as its observation
        (engine.probe drops it if the phase changed after it was received)."""
        if (t := self.tracked.get(key)) is not None:
            t.news = (observation, received_at)
            self._pull(key, self.clock.monotonic())

    def look_closer(self, key: InstanceKey) -> None:
        """Evolution is about to log the instance out or remove it: probe now and a few times more."""
        if (t := self.tracked.get(key)) is not None:
            t.closer_look = CLOSER_LOOKS
            self._pull(key, self.clock.monotonic())

    def database_synced(self, key: InstanceKey, status: str, reason: str, message: str) -> None:
        t = self.tracked.get(key)
        if t is not None:
            self.recorder.database_synced(t, status, reason, message)

    def _pull(self, key: InstanceKey, at: float) -> None:
        """Never two probes of one instance at once: one in flight may have looked before the news,
        so it is followed by another instead; one waiting for a worker will see the news anyway."""
        if key in self._queued:
            return
        if key in self._probing:
            self._again.add(key)
        elif self.schedule.pull_forward(key, at):
            self._wake.set()

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker(), name=f"probe-{i}") for i in range(self.spec.concurrency)]
        try:
            while True:
                # A deadline a little in the future is due (BATCH_SECONDS); a wait shorter than the
                # clock's resolution would also return without time moving on under looptime.
                for key in self.schedule.pop_due(self.clock.monotonic() + BATCH_SECONDS):
                    self._queued.add(key)
                    self._queue.put_nowait(key)
                now = self.clock.monotonic()
                if self.recorder.server_dirty and now >= self._server_written_at + SERVER_STATUS_SECONDS:
                    self._server_written_at = now
                    await self.recorder.write_server_status(str(self.breaker.state), self.instances())
                deadline = self.schedule.next_deadline()
                if self.recorder.server_dirty:  # held back: come back for it
                    later = self._server_written_at + SERVER_STATUS_SECONDS
                    deadline = later if deadline is None else min(deadline, later)
                self._wake.clear()
                self._sleeping_until = math.inf if deadline is None else deadline
                timeout = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
                # asyncio.timeout, not wait_for: no task made per wake-up (one or more per probe).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.client.aclose()

    def remediation_exhausted(self) -> int:
        """Instances stuck connecting with no forced logout left in the hour's budget."""
        return sum(1 for t in self.tracked.values() if (c := t.state.condition("Stuck")) and c.reason == EXHAUSTED)

    def instances(self) -> collections.Counter[tuple[Phase, bool]]:
        """How many tracked instances are in each phase, stuck connecting or not: one pass, counted
        in C, since it covers the whole fleet."""
        connecting = Phase.CONNECTING
        return collections.Counter(
            (t.state.phase, t.state.phase is connecting and stuck(t.state)) for t in self.tracked.values()
        )

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            tracked = self.tracked.get(key)
            if tracked is None:
                continue
            self._probing.add(key)
            try:
                next_at = await self.probe(tracked)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("probing %s failed unexpectedly", key)
                next_at = self.clock.monotonic() + self.spec.probe_interval
            finally:
                self._probing.discard(key)
            if key in self._again:
                self._again.discard(key)
                next_at = self.clock.monotonic()
            if next_at is not None and self.tracked.get(key) is tracked:
                self.schedule.pull_forward(key, next_at)
                if next_at < self._sleeping_until:  # else the loop wakes for an earlier deadline anyway
                    self._wake.set()

    # -- the EvolutionServer's Ready ------------------------------------------------------------

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        logger.warning("Evolution server %s/%s: circuit breaker %s -> %s", self.namespace, self.name, old, new)
        self.recorder.server_dirty = True  # the breaker itself is in the server's status
        self.recorder.reachable(new is BreakerState.CLOSED)
