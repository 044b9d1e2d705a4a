"""Per-instance probe deadlines on one heap: O(log n) per reschedule, no task or timer per instance.

The prober of each EvolutionServer owns one `Schedule`. Times are plain floats on the event loop's
clock, so tests fast-forward them with looptime.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Schedule(Generic[K]):
    """Deadlines by key. Superseded heap entries are skipped lazily instead of being removed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._counter = 0  # tie-breaker: keys need not be comparable

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def keys(self) -> list[K]:
        return list(self._due)

    def due_at(self, key: K) -> float | None:
        return self._due.get(key)

    def set(self, key: K, at: float) -> None:
        """Probe `key` at `at`, replacing whatever was planned."""
        if self._due.get(key) == at:
            return
        self._due[key] = at
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, key))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._compact()

    def pull_forward(self, key: K, at: float) -> bool:
        """Probe `key` no later than `at`; True if that moved its deadline."""
        current = self._due.get(key)
        if current is not None and current <= at:
            return False
        self.set(key, at)
        return True

    def add_jittered(self, key: K, now: float, interval: float, rng: random.Random | None = None) -> None:
        """A newly seen key gets a random first deadline within one interval, so that a restart
        does not probe the whole fleet in the same second."""
        self.set(key, now + (rng or random).uniform(0.0, interval))

    def remove(self, key: K) -> None:
        self._due.pop(key, None)

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[K]:
        """Keys whose deadline has come, earliest first; they leave the schedule until set again."""
        due: list[K] = []
        while self._heap and (limit is None or len(due) < limit):
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                break
            _, _, key = heapq.heappop(self._heap)
            del self._due[key]
            due.append(key)
        return due

    def _drop_stale(self) -> None:
        while self._heap:
            at, _, key = self._heap[0]
            if self._due.get(key) == at:
                return
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        self._heap = [(at, n, key) for at, n, key in self._heap if self._due.get(key) == at]
        heapq.heapify(self._heap)
