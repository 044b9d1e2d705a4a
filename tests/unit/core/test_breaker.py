import asyncio
import time
from typing import Any

import pytest

from whatsapp_operator.core.breaker import BreakerState, CircuitBreaker, CircuitOpenError


def loop_breaker(**kwargs: Any) -> CircuitBreaker:
    """A breaker timed by the event loop, as the operator's are, so that looptime fast-forwards it."""
    return CircuitBreaker(clock=asyncio.get_running_loop().time, **kwargs)


def fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(ConnectionError), breaker.guard():
        raise ConnectionError("connection refused")


def succeed(breaker: CircuitBreaker) -> None:
    with breaker.guard():
        pass


def refused(breaker: CircuitBreaker) -> CircuitOpenError:
    ran = False
    with pytest.raises(CircuitOpenError) as info, breaker.guard():
        ran = True
    assert not ran, "a refused call must not run"
    return info.value


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        fail(breaker)
    assert breaker.state is BreakerState.OPEN


class HeldCall:
    """A call through the breaker that stays in flight until the test decides how it ends."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.entered = asyncio.Event()
        self.outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(breaker))

    async def _run(self, breaker: CircuitBreaker) -> None:
        with breaker.guard(failures=(ConnectionError,)):
            self.entered.set()
            error = await self.outcome
            if error is not None:
                raise error

    async def finish(self, error: BaseException | None = None) -> None:
        self.outcome.set_result(error)
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.mark.looptime
async def test_opens_on_the_fifth_consecutive_failure_not_the_fourth() -> None:
    breaker = loop_breaker()
    for _ in range(4):
        fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    succeed(breaker)  # a fifth call still goes through

    for _ in range(4):
        fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert refused(breaker).retry_after == 60.0


@pytest.mark.looptime
async def test_a_success_while_closed_resets_the_count() -> None:
    breaker = loop_breaker(failure_threshold=3)
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.looptime
async def test_refuses_until_open_seconds_pass_then_lets_exactly_one_trial_through() -> None:
    breaker = loop_breaker()
    open_breaker(breaker)

    await asyncio.sleep(59.9)
    error = refused(breaker)
    assert error.retry_after == pytest.approx(0.1)
    assert str(error) == "circuit breaker is open: retry in 0.1s"
    assert breaker.state is BreakerState.OPEN

    await asyncio.sleep(0.1)
    trial = HeldCall(breaker)
    await trial.entered.wait()
    assert breaker.state is BreakerState.HALF_OPEN
    error = refused(breaker)
    assert error.retry_after is None
    assert str(error) == "circuit breaker is open: a trial call is in flight"

    await trial.finish()
    assert breaker.state is BreakerState.CLOSED
    succeed(breaker)


@pytest.mark.looptime
async def test_after_a_successful_trial_it_takes_the_full_threshold_to_open_again() -> None:
    breaker = loop_breaker()
    open_breaker(breaker)
    await asyncio.sleep(60)
    succeed(breaker)
    for _ in range(4):
        fail(breaker)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_a_failed_trial_reopens_for_another_open_period(looptime: float) -> None:
    breaker = loop_breaker()
    open_breaker(breaker)
    await asyncio.sleep(60)
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert looptime == 60

    await asyncio.sleep(59.9)
    assert refused(breaker).retry_after == pytest.approx(0.1)
    await asyncio.sleep(0.1)
    succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_a_cancelled_trial_lets_the_next_call_be_the_trial() -> None:
    breaker = loop_breaker()
    open_breaker(breaker)
    await asyncio.sleep(60)
    trial = HeldCall(breaker)
    await trial.entered.wait()

    trial.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial.task
    assert breaker.state is BreakerState.HALF_OPEN

    succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_exceptions_outside_failures_mean_the_dependency_answered() -> None:
    breaker = loop_breaker(failure_threshold=2)
    fail(breaker)
    with pytest.raises(LookupError), breaker.guard(failures=(ConnectionError,)):
        raise LookupError("no such instance")
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # the LookupError reset the count

    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    await asyncio.sleep(60)
    with pytest.raises(LookupError), breaker.guard(failures=(ConnectionError,)):
        raise LookupError("no such instance")
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_outcomes_of_calls_admitted_before_a_transition_are_ignored() -> None:
    breaker = loop_breaker(failure_threshold=2)
    slow_success = HeldCall(breaker)
    slow_failure = HeldCall(breaker)
    await asyncio.gather(slow_success.entered.wait(), slow_failure.entered.wait())
    open_breaker(breaker)

    await slow_success.finish()
    assert breaker.state is BreakerState.OPEN

    await asyncio.sleep(60)
    succeed(breaker)
    fail(breaker)
    await slow_failure.finish(ConnectionError("late"))
    assert breaker.state is BreakerState.CLOSED  # one fresh failure, the stale one not counted


@pytest.mark.looptime
async def test_on_change_reports_every_transition_once() -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = loop_breaker(failure_threshold=1, open_seconds=10, on_change=lambda *c: changes.append(c))
    fail(breaker)
    refused(breaker)
    await asyncio.sleep(10)
    fail(breaker)
    await asyncio.sleep(10)
    succeed(breaker)
    succeed(breaker)
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_time_is_the_given_clock() -> None:
    now = [1000.0]
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=30, clock=lambda: now[0])
    fail(breaker)
    now[0] += 29.5
    assert refused(breaker).retry_after == pytest.approx(0.5)
    now[0] += 0.5
    succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_states_are_the_strings_shown_in_the_status() -> None:
    assert [str(state) for state in BreakerState] == ["Closed", "Open", "HalfOpen"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be at least 1, got 0"),
        ({"open_seconds": -1}, "open_seconds must not be negative, got -1"),
    ],
)
def test_rejects_nonsense_thresholds(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**kwargs, clock=time.monotonic)  # type: ignore[arg-type]
