from __future__ import annotations

import random

from whatsapp_operator.core.schedule import Schedule


def test_pops_due_keys_in_deadline_order_and_forgets_them():
    s: Schedule[str] = Schedule()
    s.set("b", 20.0)
    s.set("a", 10.0)
    s.set("c", 30.0)
    assert s.next_deadline() == 10.0
    assert s.pop_due(25.0) == ["a", "b"]
    assert s.keys() == ["c"]
    assert s.pop_due(25.0) == []


def test_rescheduling_supersedes_the_old_deadline():
    s: Schedule[str] = Schedule()
    s.set("a", 10.0)
    s.set("a", 50.0)
    assert s.pop_due(20.0) == []
    assert s.next_deadline() == 50.0
    assert len(s) == 1


def test_pull_forward_only_moves_earlier():
    s: Schedule[str] = Schedule()
    s.set("a", 30.0)
    assert s.pull_forward("a", 40.0) is False
    assert s.due_at("a") == 30.0
    assert s.pull_forward("a", 5.0) is True
    assert s.pop_due(5.0) == ["a"]
    assert s.pull_forward("new", 7.0) is True


def test_removed_keys_never_come_back():
    s: Schedule[str] = Schedule()
    s.set("a", 1.0)
    s.remove("a")
    assert s.next_deadline() is None
    assert s.pop_due(100.0) == []


def test_limit_caps_one_batch():
    s: Schedule[int] = Schedule()
    for i in range(10):
        s.set(i, float(i))
    assert s.pop_due(100.0, limit=3) == [0, 1, 2]
    assert len(s) == 7


def test_jittered_first_deadlines_spread_over_one_interval():
    s: Schedule[int] = Schedule()
    rng = random.Random(7)
    for i in range(1000):
        s.add_jittered(i, now=100.0, interval=30.0, rng=rng)
    due = sorted(s.due_at(i) for i in range(1000))
    assert due[0] >= 100.0
    assert due[-1] <= 130.0
    # No second holds more than a tenth of the fleet.
    per_second = [sum(1 for d in due if 100 + k <= d < 101 + k) for k in range(30)]
    assert max(per_second) < 100


def test_heap_stays_compact_under_many_reschedules():
    s: Schedule[int] = Schedule()
    for round_ in range(100):
        for i in range(100):
            s.set(i, float(round_ * 100 + i))
    assert len(s._heap) <= 2 * len(s) + 64
    assert s.pop_due(float("inf")) == list(range(100))
