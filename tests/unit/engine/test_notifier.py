"""The outbox without a database (`MemoryOutbox`): one notification per episode, as Postgres's key."""

from __future__ import annotations

import dataclasses
import datetime
import time

import pytest

from whatsapp_operator.core.notifications import Notification
from whatsapp_operator.engine.notifier import MemoryOutbox

EPISODE = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
LOGGED_OUT = Notification(
    instance_uid="uid-1",
    episode=EPISODE,
    namespace="drivers",
    name="driver-1",
    instance="driver-1",
    server="default",
    driver_id="d1",
    driver_name="",
    phone="+5511987654321",
    kind="logged_out",
    reason=401,
    decided_at=EPISODE + datetime.timedelta(hours=1),
    channels=("event", "whatsapp"),
)


def test_an_episode_has_one_notification_and_one_reconnected_message() -> None:
    outbox = MemoryOutbox()
    later = LOGGED_OUT.decided_at + datetime.timedelta(minutes=1)
    back = dataclasses.replace(LOGGED_OUT, kind="reconnected", decided_at=later)
    assert outbox.add(LOGGED_OUT)
    assert not outbox.add(dataclasses.replace(LOGGED_OUT, kind="disconnected", decided_at=later)), "one per episode"
    assert outbox.add(back), "the link being back is the episode's other message"
    assert not outbox.add(back)
    assert outbox.add(dataclasses.replace(LOGGED_OUT, episode=later)), "another episode"
    ids = sorted({r["id"] for r in outbox.listing()})
    assert len(ids) == 3
    assert sorted((r["id"], r["channel"]) for r in outbox.listing()) == [
        (n, channel) for n in ids for channel in ("event", "whatsapp")
    ]


def test_a_restarted_operators_ids_never_repeat_an_earlier_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The callback's notificationId and webhook-id come from these ids: an application that
    deduplicates on them must not take a new notification after a restart for an old one."""
    now = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: now)
    before = MemoryOutbox()
    assert before.add(LOGGED_OUT)
    assert before.add(dataclasses.replace(LOGGED_OUT, episode=LOGGED_OUT.decided_at))
    monkeypatch.setattr(time, "time_ns", lambda: now + 2_000_000_000)  # restarted two seconds later
    restarted = MemoryOutbox()
    assert restarted.add(dataclasses.replace(LOGGED_OUT, instance_uid="uid-2"))
    earlier = {r["id"] for r in before.listing()}
    (new,) = {r["id"] for r in restarted.listing()}
    assert new > max(earlier)
    assert new < 2**53, "exact in a JavaScript number"
