"""Drift repair: once per probe interval, the whole fleet's rows in the application's table are
compared with the operator's view in one query, and the rows that disagree are rewritten through the
mirror, in order with the instance's other writes (docs/drift.md).

An instance whose writes are still queued is left out of the round (its row is about to change), and
a drift is only acted on if the instance's view did not change while the query ran: a repair never
writes an older view over a newer write.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
from collections.abc import Callable, Iterable, Iterator

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core.pairing import SOCKET_ENDED
from whatsapp_operator.core.phases import DB_STATUS
from whatsapp_operator.db.app_table import Expected
from whatsapp_operator.db.mirror import StatusMirror
from whatsapp_operator.engine.prober import ServerProber
from whatsapp_operator.engine.tracked import Tracked

log = logging.getLogger(__name__)
IDLE_SECONDS = 30.0  # the wait between rounds while this replica probes no server


class DriftRepair:
    def __init__(
        self,
        mirror: StatusMirror,
        probers: Callable[[], Iterable[ServerProber]],
        repaired: Callable[[int], None] = lambda count: None,
    ) -> None:
        """`probers()`: the probers running now (none on a standby); `repaired(count)` after each round
        that repaired rows, for the metrics."""
        self.mirror = mirror
        self.probers = probers
        self.repaired = repaired
        self.clock = LoopClock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="whatsapp-operator-drift-repair")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            interval = min((p.spec.probe_interval for p in self.probers()), default=math.inf)
            await asyncio.sleep(IDLE_SECONDS if interval == math.inf else interval)
            # The probers running now: a replica that became a standby while it waited compares nothing.
            if probers := list(self.probers()):
                try:
                    await self.round(probers)
                except Exception as exc:
                    # Postgres away (the mirror says so once) or a bug: the next round tries again.
                    log.debug("drift repair round skipped: %s", type(exc).__name__, exc_info=exc)

    async def round(self, probers: list[ServerProber]) -> int:
        """One comparison for every instance of `probers`; returns how many rows it queued repairs for."""
        expected = list(self._expected(probers))
        if not expected:
            return 0
        drifted = await self.mirror.find_drift(expected)
        now, count = self.clock.now(), 0
        for drift in drifted:
            e = drift.expected
            t = next((p.tracked[e.key] for p in probers if e.key in p.tracked), None)
            if t is None or self.mirror.queued(e.key) or _expectation(t, now) != e:
                continue  # the view moved while the query ran: its own write says what is right now
            self.mirror.repair(drift, now)
            count += 1
        if count:
            self.repaired(count)
        return count

    def _expected(self, probers: list[ServerProber]) -> Iterator[Expected]:
        queued, now = self.mirror.queued, self.clock.now()
        for prober in probers:
            for key, t in prober.tracked.items():
                if queued(key):
                    continue
                e = _expectation(t, now)
                if e.status is not None or e.no_code:
                    yield e


def _expectation(t: Tracked, now: datetime.datetime) -> Expected:
    phase, spec = t.state.phase, t.spec
    # A code is known dead when its socket ended, or when the one the operator saw expired; a code not
    # seen by this run (a restart) is not judged.
    dead = phase in SOCKET_ENDED or (t.code.fingerprint is not None and t.code.valid(now) is None)
    return Expected(spec.key, spec.instance_name, spec.driver_id, phase, DB_STATUS.get(phase), dead)
