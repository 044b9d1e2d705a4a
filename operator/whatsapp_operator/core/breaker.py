"""A circuit breaker per Evolution server, so that a dead server costs one fast refusal per probe, not a
timeout with retries, and so that it gets a quiet minute to recover instead of a thundering herd.

It counts consecutive failed calls; at the threshold it opens and refuses every call for
`open_seconds`; then it lets exactly one trial call through (half-open), whose outcome closes it or
opens it again for another `open_seconds`. It knows nothing about HTTP: the caller says which
exceptions are failures.

Pure: the owner passes the clock (the operator's is the event loop's, so that tests fast-forward it
with looptime), and `guard` is a plain context manager that works around awaits in async code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class BreakerState(enum.StrEnum):
    """The values are what `EvolutionServer.status.breaker` shows."""

    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class CircuitOpenError(Exception):
    """The breaker refused the call without trying it.

    `retry_after` is the number of seconds until a trial call will be let through, or None while a
    trial call is already in flight (its outcome decides).
    """

    def __init__(self, retry_after: float | None) -> None:
        when = "a trial call is in flight" if retry_after is None else f"retry in {retry_after:.1f}s"
        super().__init__(f"circuit breaker is open: {when}")
        self.retry_after = retry_after


class CircuitBreaker:
    """Closed -> Open after `failure_threshold` consecutive failed calls; Open -> HalfOpen after
    `open_seconds`, admitting one trial; HalfOpen -> Closed or Open by the trial's outcome.

    `clock()` is monotonic time in seconds. `on_change(old, new)` is called synchronously on every
    transition, so that the owner can publish the state only when it changes; it must not raise.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        open_seconds: float = 60.0,
        *,
        clock: Callable[[], float],
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if open_seconds < 0:
            raise ValueError(f"open_seconds must not be negative, got {open_seconds}")
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        # Bumped on every transition: outcomes of calls admitted under an earlier state are stale.
        self._epoch = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state} failures={self._failures}/{self.failure_threshold}>"

    @property
    def state(self) -> BreakerState:
        return self._state

    @contextmanager
    def guard(self, failures: tuple[type[BaseException], ...] = (Exception,)) -> Iterator[None]:
        """Run the body as one call through the breaker, or raise `CircuitOpenError` without running it.

        Leaving with an exception of the `failures` types is a failure. Leaving normally, or with any
        other `Exception`, is a success: the dependency answered, even if the answer was an error.
        Leaving by cancellation (a BaseException, thrown in here by `with`) counts as neither; a cancelled
        trial frees the half-open slot so that the next call becomes the trial instead of the breaker
        staying half-open forever.
        """
        epoch = self._admit()
        try:
            yield
        except failures:
            self._record(epoch, failed=True)
            raise
        except Exception:
            self._record(epoch, failed=False)
            raise
        except BaseException:
            if epoch == self._epoch and self._state is BreakerState.HALF_OPEN:
                self._trial_in_flight = False
            raise
        else:
            self._record(epoch, failed=False)

    def _admit(self) -> int:
        if self._state is BreakerState.OPEN:
            remaining = self._opened_at + self.open_seconds - self._clock()
            if remaining > 0:
                raise CircuitOpenError(remaining)
            self._transition(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            if self._trial_in_flight:
                raise CircuitOpenError(None)
            self._trial_in_flight = True
        return self._epoch

    def _record(self, epoch: int, *, failed: bool) -> None:
        if epoch != self._epoch or self._state is BreakerState.OPEN:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._trial_in_flight = False
            if failed:
                self._open()
            else:
                self._transition(BreakerState.CLOSED)
        elif not failed:
            self._failures = 0
        else:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._transition(BreakerState.OPEN)

    def _transition(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._epoch += 1
        self._failures = 0
        if self._on_change is not None:
            self._on_change(old, new)
