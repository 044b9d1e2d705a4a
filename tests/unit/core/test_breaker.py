import asyncio

import pytest

from whatsapp_operator.core.breaker import BreakerState, CircuitBreaker, CircuitOpenError


async def fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(ConnectionError):
        async with breaker.guard():
            raise ConnectionError("connection refused")


async def succeed(breaker: CircuitBreaker) -> None:
    async with breaker.guard():
        pass


async def refused(breaker: CircuitBreaker) -> CircuitOpenError:
    ran = False
    with pytest.raises(CircuitOpenError) as info:
        async with breaker.guard():
            ran = True
    assert not ran, "a refused call must not run"
    return info.value


async def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        await fail(breaker)
    assert breaker.state is BreakerState.OPEN


class HeldCall:
    """A call through the breaker that stays in flight until the test decides how it ends."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.entered = asyncio.Event()
        self.outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._run(breaker))

    async def _run(self, breaker: CircuitBreaker) -> None:
        async with breaker.guard(failures=(ConnectionError,)):
            self.entered.set()
            error = await self.outcome
            if error is not None:
                raise error

    async def finish(self, error: BaseException | None = None) -> None:
        self.outcome.set_result(error)
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.mark.looptime
async def test_opens_on_the_fifth_consecutive_failure_not_the_fourth() -> None:
    breaker = CircuitBreaker()
    for _ in range(4):
        await fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    await succeed(breaker)  # a fifth call still goes through

    for _ in range(4):
        await fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert (await refused(breaker)).retry_after == 60.0


@pytest.mark.looptime
async def test_a_success_while_closed_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    await fail(breaker)
    await fail(breaker)
    await succeed(breaker)
    await fail(breaker)
    await fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.looptime
async def test_refuses_until_open_seconds_pass_then_lets_exactly_one_trial_through() -> None:
    breaker = CircuitBreaker()
    await open_breaker(breaker)

    await asyncio.sleep(59.9)
    error = await refused(breaker)
    assert error.retry_after == pytest.approx(0.1)
    assert str(error) == "circuit breaker is open: retry in 0.1s"
    assert breaker.state is BreakerState.OPEN

    await asyncio.sleep(0.1)
    trial = HeldCall(breaker)
    await trial.entered.wait()
    assert breaker.state is BreakerState.HALF_OPEN
    error = await refused(breaker)
    assert error.retry_after is None
    assert str(error) == "circuit breaker is open: a trial call is in flight"

    await trial.finish()
    assert breaker.state is BreakerState.CLOSED
    await succeed(breaker)


@pytest.mark.looptime
async def test_after_a_successful_trial_it_takes_the_full_threshold_to_open_again() -> None:
    breaker = CircuitBreaker()
    await open_breaker(breaker)
    await asyncio.sleep(60)
    await succeed(breaker)
    for _ in range(4):
        await fail(breaker)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_a_failed_trial_reopens_for_another_open_period(looptime: float) -> None:
    breaker = CircuitBreaker()
    await open_breaker(breaker)
    await asyncio.sleep(60)
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert looptime == 60

    await asyncio.sleep(59.9)
    assert (await refused(breaker)).retry_after == pytest.approx(0.1)
    await asyncio.sleep(0.1)
    await succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_a_cancelled_trial_lets_the_next_call_be_the_trial() -> None:
    breaker = CircuitBreaker()
    await open_breaker(breaker)
    await asyncio.sleep(60)
    trial = HeldCall(breaker)
    await trial.entered.wait()

    trial.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial.task
    assert breaker.state is BreakerState.HALF_OPEN

    await succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_exceptions_outside_failures_mean_the_dependency_answered() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    await fail(breaker)
    with pytest.raises(LookupError):
        async with breaker.guard(failures=(ConnectionError,)):
            raise LookupError("no such instance")
    await fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # the LookupError reset the count

    await fail(breaker)
    assert breaker.state is BreakerState.OPEN
    await asyncio.sleep(60)
    with pytest.raises(LookupError):
        async with breaker.guard(failures=(ConnectionError,)):
            raise LookupError("no such instance")
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.looptime
async def test_outcomes_of_calls_admitted_before_a_transition_are_ignored() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    slow_success = HeldCall(breaker)
    slow_failure = HeldCall(breaker)
    await asyncio.gather(slow_success.entered.wait(), slow_failure.entered.wait())
    await open_breaker(breaker)

    await slow_success.finish()
    assert breaker.state is BreakerState.OPEN

    await asyncio.sleep(60)
    await succeed(breaker)
    await fail(breaker)
    await slow_failure.finish(ConnectionError("late"))
    assert breaker.state is BreakerState.CLOSED  # one fresh failure, the stale one not counted


@pytest.mark.looptime
async def test_on_change_reports_every_transition_once() -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=10, on_change=lambda *c: changes.append(c))
    await fail(breaker)
    await refused(breaker)
    await asyncio.sleep(10)
    await fail(breaker)
    await asyncio.sleep(10)
    await succeed(breaker)
    await succeed(breaker)
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


async def test_an_injected_clock_replaces_the_loop_clock() -> None:
    now = [1000.0]
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=30, clock=lambda: now[0])
    await fail(breaker)
    now[0] += 29.5
    assert (await refused(breaker)).retry_after == pytest.approx(0.5)
    now[0] += 0.5
    await succeed(breaker)
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
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
