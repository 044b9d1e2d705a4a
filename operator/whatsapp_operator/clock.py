"""Wall-clock timestamps derived from the event loop's clock.

Everything the operator decides in time (stuck deadlines, cooldowns, logout windows) is measured on
the loop's monotonic clock, so tests fast-forward it with looptime; timestamps written to `.status`
and Postgres are that same clock anchored to the wall time at start, so both always agree.
"""

from __future__ import annotations

import asyncio
import datetime
import time


class LoopClock:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._anchor_loop = self._loop.time()
        self._anchor_wall = time.time()

    def monotonic(self) -> float:
        return self._loop.time()

    def now(self) -> datetime.datetime:
        return self.at(self._loop.time())

    def at(self, loop_time: float) -> datetime.datetime:
        wall = self._anchor_wall + (loop_time - self._anchor_loop)
        return datetime.datetime.fromtimestamp(wall, tz=datetime.UTC)

    def loop_time(self, when: datetime.datetime) -> float:
        return self._anchor_loop + (when.timestamp() - self._anchor_wall)
