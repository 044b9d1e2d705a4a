"""Uptime arithmetic, and `whatsapp-operator history` reading what the mirror wrote."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import InstanceKey
from whatsapp_operator.db.history import Transition, run, uptime
from whatsapp_operator.db.mirror import StatusMirror

NOW = datetime(2025, 1, 8, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def at(hours_ago: float, to_phase: Phase) -> Transition:
    return Transition(occurred_at=NOW - timedelta(hours=hours_ago), from_phase=None, to_phase=to_phase)


@pytest.mark.parametrize(
    ("transitions", "expected"),
    [
        pytest.param([at(30, Phase.CONNECTED)], 1.0, id="connected-since-before-the-window"),
        pytest.param([at(30, Phase.CONNECTED), at(6, Phase.DISCONNECTED)], 0.75, id="down-for-the-last-quarter"),
        pytest.param([at(30, Phase.LOGGED_OUT), at(12, Phase.CONNECTED)], 0.5, id="up-for-the-last-half"),
        pytest.param([at(12, Phase.CONNECTED)], 1.0, id="time-before-the-first-transition-is-not-observed"),
        pytest.param(
            [at(30, Phase.CONNECTED), at(18, Phase.UNKNOWN), at(6, Phase.CONNECTED)],
            1.0,
            id="unknown-keeps-connected",
        ),
        pytest.param(
            [at(30, Phase.DISCONNECTED), at(18, Phase.UNKNOWN), at(6, Phase.CONNECTED)],
            0.25,
            id="unknown-keeps-disconnected",
        ),
        pytest.param([at(12, Phase.UNKNOWN), at(6, Phase.CONNECTED)], 1.0, id="unknown-with-nothing-known-before"),
        pytest.param(
            [at(30, Phase.CONNECTED), at(12, Phase.SUSPENDED), at(6, Phase.DISCONNECTED)],
            0.75,
            id="suspended-keeps-the-last-phase",
        ),
        pytest.param(
            [at(20, Phase.PAIRING), at(19, Phase.CONNECTED), at(10, Phase.CONNECTING), at(8, Phase.CONNECTED)],
            17 / 20,
            id="pairing-and-reconnecting-are-down",
        ),
    ],
)
def test_uptime_is_the_share_of_observed_time_spent_connected(transitions: list[Transition], expected: float) -> None:
    assert uptime(transitions, NOW - DAY, NOW) == pytest.approx(expected)


def test_uptime_without_observations_is_unknown() -> None:
    assert uptime([], NOW - DAY, NOW) is None
    assert uptime([at(3, Phase.UNKNOWN)], NOW - DAY, NOW) is None


async def test_history_prints_the_transitions_and_uptime(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    mirror = StatusMirror(pg_url)
    await mirror.start()
    steps = [
        (31, None, Phase.PENDING, None, None, False),
        (30, Phase.PENDING, Phase.CONNECTED, "open", None, False),
        (6, Phase.CONNECTED, Phase.LOGGED_OUT, "close", 401, True),
    ]
    for hours_ago, from_phase, to_phase, state, reason, forced in steps:
        mirror.record_transition(
            key=InstanceKey("drivers", "ana"),
            instance="evo-ana",
            driver_id="o'brien",
            from_phase=from_phase,
            to_phase=to_phase,
            state=state,
            reason=reason,
            forced=forced,
            at=now - timedelta(hours=hours_ago),
        )
    mirror.record_transition(
        key=InstanceKey("drivers", "bob"), instance="evo-bob", driver_id="bob", from_phase=None,
        to_phase=Phase.CONNECTED, state="open", reason=None, forced=False, at=now,
    )  # fmt: skip
    await mirror.stop()

    assert run(argparse.Namespace(driver="o'brien", database_url=pg_url)) == 0
    lines = capsys.readouterr().out.splitlines()

    assert lines[0] == 'driver "o\'brien":'
    assert "drivers/ana  (new) -> Pending  state=-  reason=-" in lines[1]
    assert "Pending -> Connected  state=open  reason=-" in lines[2]
    assert lines[3].endswith("Connected -> LoggedOut  state=close  reason=401  forced")
    assert len(lines) == 5
    # 24 h: up 18 of 24 h; 7 d: observed for 31 h, up 24 of them.
    assert lines[4] == "uptime (Connected): last 24 h 75.0%, last 7 d 77.4%"


def test_history_of_an_unknown_driver_or_unreachable_database(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argparse.Namespace(driver="nobody", database_url=pg_url)) == 0
    assert capsys.readouterr().out == "no transitions recorded for driver 'nobody' in the last 7 d\n"

    unreachable = "postgresql://postgres@/postgres?host=/nonexistent"
    assert run(argparse.Namespace(driver="nobody", database_url=unreachable)) == 1
    err = capsys.readouterr().err
    assert err.startswith("whatsapp-operator history: error: ")
    assert err.count("\n") == 1
