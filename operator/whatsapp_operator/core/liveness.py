"""Liveness of open instances (docs/liveness.md): Evolution's `open` is a remembered state, so the
operator asks each Connected instance's socket a question now and then, and these rules say what the
answers mean. Pure: the prober makes the checks, the machine applies the verdicts.

- `counted` folds one check into an instance's run of consecutive failures;
- `FleetChecks` is the outage guard's evidence: the latest check of each instance of one server
  within the last liveness interval. When too many of them failed, the failures are the server's
  or WhatsApp's, not the instances', and count for nothing;
- `open_phase`, `remedy` and `live_condition` are what the machine asks of an open instance.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
from collections.abc import Hashable

from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.state import Condition, ConditionStatus, InstanceState, Policy, Verdict, set_condition

LIVE = "Live"  # the instance's condition: False once unresponsive, True once a check answers again
# Below this many instances checked within an interval the guard stays off: in a fleet of three, one
# failure is a third of it, and a lone instance would never be handled.
MIN_CHECKED = 10


class Check(enum.StrEnum):
    """One liveness check that proved something (anything else, such as a 401 or Evolution being
    unreachable, proves nothing and is no Check)."""

    ALIVE = "alive"  # 200: the socket answered
    FAILED = "failed"  # 500 "Connection Closed", or no answer within the check's timeout


def counted(failures: int, check: Check | None, threshold: int) -> tuple[int, Verdict | None]:
    """The new run of consecutive failures and the verdict, after one check (None: it proved nothing,
    or the outage guard holds). A DEAD verdict starts the count again: the next remedy needs as many
    failures as the first."""
    if check is None:
        return failures, None
    if check is Check.ALIVE:
        return 0, Verdict.ALIVE
    if failures + 1 >= threshold:
        return 0, Verdict.DEAD
    return failures + 1, Verdict.FAILING


class FleetChecks:
    """The latest conclusive check of each instance within the last `window` seconds (loop time)."""

    def __init__(self, window: float, max_failing_share: float, min_checked: int = MIN_CHECKED) -> None:
        self.window = window
        self.max_failing_share = max_failing_share
        self.min_checked = min_checked
        self._latest: dict[Hashable, tuple[float, bool]] = {}  # key -> (at, failed)
        self._order: collections.deque[tuple[float, Hashable]] = collections.deque()
        self._failed = 0

    def record(self, key: Hashable, check: Check, at: float) -> None:
        self.forget(key)
        failed = check is Check.FAILED
        self._latest[key] = (at, failed)
        self._failed += failed
        self._order.append((at, key))
        self._expire(at)

    def forget(self, key: Hashable) -> None:
        """An instance no longer checked (deleted, or no longer Connected): its last check goes too."""
        entry = self._latest.pop(key, None)
        if entry is not None:
            self._failed -= entry[1]

    def counts(self, now: float) -> tuple[int, int]:
        """Failed and checked instances within the window."""
        self._expire(now)
        return self._failed, len(self._latest)

    def fleet_failing(self, now: float) -> bool:
        failed, checked = self.counts(now)
        return checked >= self.min_checked and failed > self.max_failing_share * checked

    def _expire(self, now: float) -> None:
        while self._order and self._order[0][0] <= now - self.window:
            at, key = self._order.popleft()
            entry = self._latest.get(key)
            if entry is not None and entry[0] == at:  # else a later check replaced it
                del self._latest[key]
                self._failed -= entry[1]


def unresponsive(state: InstanceState) -> bool:
    """In a liveness episode (Live=False): every probe that sees `open` checks again."""
    condition = state.condition(LIVE)
    return condition is not None and condition.status == ConditionStatus.FALSE


def open_phase(prev: InstanceState, live: Verdict | None, policy: Policy) -> Phase:
    """Evolution says `open`: Connected, unless the checks say the socket is dead (or said so and
    none has answered since)."""
    if not policy.liveness or live is Verdict.ALIVE:
        return Phase.CONNECTED
    return Phase.UNRESPONSIVE if live is Verdict.DEAD or unresponsive(prev) else Phase.CONNECTED


class Remedy(enum.Enum):
    RESTART = "restart"  # the episode's first: POST /instance/restart
    LOGOUT = "logout"  # the restart did not help: the forced logout and fresh pairing of stuck instances
    EXHAUSTED = "exhausted"  # neither is left in the hour's budgets


def remedy(state: InstanceState, now: datetime.datetime, policy: Policy) -> Remedy:
    """What a DEAD verdict calls for: one restart per episode (Live=False since), then forced logouts,
    each within its own budget per window."""
    live = state.condition(LIVE)
    episode = live.last_transition_time if live is not None and live.status == ConditionStatus.FALSE else None
    restarted = episode is not None and state.last_restart is not None and state.last_restart >= episode
    if not restarted and len(policy.recent(state.restart_times, now)) < policy.max_restarts:
        return Remedy.RESTART
    if len(policy.recent(state.forced_logout_times, now)) < policy.max_forced_logouts:
        return Remedy.LOGOUT
    return Remedy.EXHAUSTED


def restarted(state: InstanceState, now: datetime.datetime, policy: Policy) -> InstanceState:
    """A restart, recorded as forced logouts are: a count, the recent ones, the last."""
    recent = policy.recent(state.restart_times, now)
    return dataclasses.replace(state, restarts=state.restarts + 1, restart_times=(*recent, now), last_restart=now)


_MESSAGES = {
    Remedy.RESTART: "liveness checks failed in a row; restarted the socket",
    Remedy.LOGOUT: "liveness checks still failed after a restart; logged out for a fresh pairing",
    Remedy.EXHAUSTED: "liveness checks failed in a row; no restart or forced logout left within the hour",
}


def live_condition(
    conditions: tuple[Condition, ...], live: Verdict | None, done: Remedy | None, policy: Policy, now: datetime.datetime
) -> tuple[Condition, ...]:
    """Live: absent until an instance is first found unresponsive (no write per instance for it), then
    False while it is, True once a check answers. A forced logout ends the episode (Unknown): the
    fresh pairing's socket is judged afresh. Unknown too while checks are off."""
    old = next((c for c in conditions if c.type == LIVE), None)
    if done is Remedy.LOGOUT:
        return set_condition(conditions, LIVE, ConditionStatus.UNKNOWN, "ForcedLogout", _MESSAGES[done], now)
    if done is not None:
        reason = "RemediationExhausted" if done is Remedy.EXHAUSTED else "ChecksFailing"
        return set_condition(conditions, LIVE, ConditionStatus.FALSE, reason, _MESSAGES[done], now)
    if old is None:
        return conditions
    if not policy.liveness:
        return set_condition(conditions, LIVE, ConditionStatus.UNKNOWN, "NotChecked", "liveness checks are off", now)
    if live is Verdict.ALIVE:
        return set_condition(conditions, LIVE, ConditionStatus.TRUE, "Live", "a liveness check answered", now)
    return conditions
