"""The status mirror against a real Postgres: what the application sees in `usuarios`, what the history
keeps, and what happens when Postgres goes away."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.pg import StoppableDatabase, execute
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import InstanceKey
from whatsapp_operator.db.mirror import MirrorSettings, StatusMirror
from whatsapp_operator.db.sync import SyncReason, SyncStatus

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
KEY = InstanceKey("drivers", "ana")
DRIVER = "driver-ana"
FAST = MirrorSettings(retry_base_seconds=0.05, retry_max_seconds=0.5, connection_timeout_seconds=1.0)

MakeMirror = Callable[..., Awaitable[StatusMirror]]


class SyncLog:
    """The on_sync callback: what the operator would turn into DatabaseSynced condition updates."""

    def __init__(self) -> None:
        self.calls: list[tuple[InstanceKey, SyncStatus]] = []

    def __call__(self, key: InstanceKey, status: SyncStatus) -> None:
        self.calls.append((key, status))

    def reasons(self, key: InstanceKey) -> list[SyncReason]:
        return [status.reason for k, status in self.calls if k == key]


@pytest.fixture
async def make_mirror() -> AsyncIterator[MakeMirror]:
    mirrors: list[StatusMirror] = []

    async def make(url: str, settings: MirrorSettings = FAST, on_sync: SyncLog | None = None) -> StatusMirror:
        mirror = StatusMirror(url, settings, on_sync)
        await mirror.start()
        mirrors.append(mirror)
        return mirror

    yield make
    for mirror in mirrors:
        await mirror.stop(timeout=5)


async def add_driver(url: str, driver_id: str, status: str | None = None) -> None:
    await execute(url, "INSERT INTO usuarios (id, nome, whatsapp_status) VALUES (%s, 'Ana', %s)", [driver_id, status])


async def usuario(url: str, driver_id: str) -> dict[str, Any]:
    (row,) = await execute(url, "SELECT xmin::text AS version, * FROM usuarios WHERE id = %s", [driver_id])
    return row


async def history(url: str, driver_id: str) -> list[dict[str, Any]]:
    return await execute(
        url, "SELECT * FROM whatsapp_operator.transitions WHERE driver_id = %s ORDER BY id", [driver_id]
    )


def record(
    mirror: StatusMirror,
    from_phase: Phase | None,
    to_phase: Phase,
    *,
    minute: int = 0,
    key: InstanceKey = KEY,
    driver_id: str = DRIVER,
    state: str | None = None,
    reason: int | None = None,
    forced: bool = False,
) -> None:
    mirror.record_transition(
        key=key,
        instance=f"evo-{driver_id}",
        driver_id=driver_id,
        from_phase=from_phase,
        to_phase=to_phase,
        state=state,
        reason=reason,
        forced=forced,
        at=T0 + timedelta(minutes=minute),
    )


def pair(mirror: StatusMirror, code: str, *, second: int = 0, key: InstanceKey = KEY, driver_id: str = DRIVER) -> None:
    """A pairing code obtained `second` seconds after T0, valid for a minute."""
    generated_at = T0 + timedelta(seconds=second)
    mirror.record_pairing_code(
        key=key,
        driver_id=driver_id,
        code=code,
        generated_at=generated_at,
        expires_at=generated_at + timedelta(minutes=1),
    )


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_each_transition_updates_the_driver_row_and_appends_history_in_order(
    pg_url: str, make_mirror: MakeMirror
) -> None:
    await add_driver(pg_url, DRIVER)
    mirror = await make_mirror(pg_url)
    lifecycle = [
        (None, Phase.PENDING, None, None, "connecting"),
        (Phase.PENDING, Phase.PAIRING, "connecting", None, "connecting"),
        (Phase.PAIRING, Phase.CONNECTED, "open", None, "connected"),
        (Phase.CONNECTED, Phase.UNKNOWN, None, None, "connected"),
        (Phase.UNKNOWN, Phase.CONNECTED, "open", None, "connected"),
        (Phase.CONNECTED, Phase.DISCONNECTED, "close", 428, "disconnected"),
        (Phase.DISCONNECTED, Phase.LOGGED_OUT, "close", 401, "disconnected"),
    ]

    for minute, (from_phase, to_phase, state, reason, db_status) in enumerate(lifecycle):
        record(mirror, from_phase, to_phase, minute=minute, state=state, reason=reason, forced=minute == 6)
        await mirror.drain()
        assert (await usuario(pg_url, DRIVER))["whatsapp_status"] == db_status

    rows = await history(pg_url, DRIVER)
    assert [(r["from_phase"], r["to_phase"], r["state"], r["status_reason"]) for r in rows] == [
        (from_phase, to_phase, state, reason) for from_phase, to_phase, state, reason, _ in lifecycle
    ]
    assert [r["occurred_at"] for r in rows] == [T0 + timedelta(minutes=m) for m in range(len(lifecycle))]
    assert [r["forced"] for r in rows] == [False] * 6 + [True]
    assert {(r["namespace"], r["instance"], r["evolution_instance"]) for r in rows} == {
        ("drivers", "ana", "evo-driver-ana")
    }
    assert mirror.sync_status(KEY) == SyncStatus(True, SyncReason.SYNCED)


async def test_writes_recorded_while_the_mirror_is_writing_are_all_kept(pg_url: str, make_mirror: MakeMirror) -> None:
    await add_driver(pg_url, DRIVER)
    mirror = await make_mirror(pg_url)
    phases = [Phase.CONNECTED, Phase.DISCONNECTED] * 20

    for minute, phase in enumerate(phases):
        record(mirror, phases[minute - 1] if minute else None, phase, minute=minute)
        await asyncio.sleep(0)  # let the mirror run between observations, as the operator's loop does
    await asyncio.wait_for(mirror.drain(), 20)

    assert [r["to_phase"] for r in await history(pg_url, DRIVER)] == phases


async def test_a_transition_that_changes_nothing_in_the_row_does_not_write_it(
    pg_url: str, make_mirror: MakeMirror
) -> None:
    await add_driver(pg_url, DRIVER)
    mirror = await make_mirror(pg_url)
    record(mirror, None, Phase.PENDING)
    await mirror.drain()
    version = (await usuario(pg_url, DRIVER))["version"]

    # All of these map to `connecting` or to "leave it alone".
    record(mirror, Phase.PENDING, Phase.PAIRING, minute=1)
    record(mirror, Phase.PAIRING, Phase.CONNECTING, minute=2)
    record(mirror, Phase.CONNECTING, Phase.UNKNOWN, minute=3)
    record(mirror, Phase.UNKNOWN, Phase.SUSPENDED, minute=4)
    await mirror.drain()

    assert (await usuario(pg_url, DRIVER))["version"] == version
    assert len(await history(pg_url, DRIVER)) == 5


async def test_pairing_code_lands_with_expiry_and_attempts_then_is_cleared_on_connect(
    pg_url: str, make_mirror: MakeMirror, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_driver(pg_url, DRIVER, "disconnected")
    mirror = await make_mirror(pg_url)
    first, second = "K7Q2M9XA", "P3N8R1ZB"

    pair(mirror, first)
    await mirror.drain()
    row = await usuario(pg_url, DRIVER)
    assert (row["pairing_code"], row["pairing_code_generated_at"], row["pairing_code_expires_at"]) == (
        first,
        T0,
        T0 + timedelta(seconds=60),
    )
    assert row["pairing_code_attempts"] == 1

    # The same code again (a retried write) is not a new attempt; a new code is.
    pair(mirror, first)
    pair(mirror, second, second=60)
    await mirror.drain()
    row = await usuario(pg_url, DRIVER)
    assert (row["pairing_code"], row["pairing_code_attempts"]) == (second, 2)

    record(mirror, Phase.PAIRING, Phase.CONNECTED, state="open")
    await mirror.drain()
    row = await usuario(pg_url, DRIVER)
    assert row["whatsapp_status"] == "connected"
    assert (row["pairing_code"], row["pairing_code_generated_at"], row["pairing_code_expires_at"]) == (None, None, None)
    assert row["pairing_code_attempts"] == 2

    assert first not in caplog.text
    assert second not in caplog.text
    assert first not in repr(mirror.sync_status(KEY))


async def test_clear_pairing_code_keeps_the_attempt_count(pg_url: str, make_mirror: MakeMirror) -> None:
    await add_driver(pg_url, DRIVER)
    mirror = await make_mirror(pg_url)
    pair(mirror, "K7Q2M9XA")
    mirror.clear_pairing_code(key=KEY, driver_id=DRIVER)
    await mirror.drain()

    row = await usuario(pg_url, DRIVER)
    assert (row["pairing_code"], row["pairing_code_expires_at"], row["pairing_code_attempts"]) == (None, None, 1)


async def test_a_missing_driver_row_is_reported_and_never_invented(pg_url: str, make_mirror: MakeMirror) -> None:
    sync = SyncLog()
    mirror = await make_mirror(pg_url, on_sync=sync)

    record(mirror, None, Phase.PENDING)
    pair(mirror, "K7Q2M9XA")
    await mirror.drain()

    assert await execute(pg_url, "SELECT * FROM usuarios") == []
    assert [r["to_phase"] for r in await history(pg_url, DRIVER)] == ["Pending"]
    status = mirror.sync_status(KEY)
    assert (status.synced, status.reason) == (False, SyncReason.DRIVER_ROW_MISSING)
    assert DRIVER in status.message
    assert sync.reasons(KEY) == [SyncReason.DRIVER_ROW_MISSING]  # once, not once per write
    assert mirror.counters.rows_missing == 2

    await add_driver(pg_url, DRIVER)
    record(mirror, Phase.PENDING, Phase.PAIRING, minute=1)
    await mirror.drain()
    assert (await usuario(pg_url, DRIVER))["whatsapp_status"] == "connecting"
    assert sync.reasons(KEY) == [SyncReason.DRIVER_ROW_MISSING, SyncReason.SYNCED]


async def test_driver_ids_with_quotes_and_sql_are_stored_and_matched_literally(
    pg_url: str, make_mirror: MakeMirror
) -> None:
    nasty = "o'brien\"; DROP TABLE usuarios;--"
    lookalikes = ["o", "%s %(id)s {0}", "'; UPDATE usuarios SET whatsapp_status = 'connected'; --"]
    for driver_id in [nasty, *lookalikes]:
        await add_driver(pg_url, driver_id)
    mirror = await make_mirror(pg_url)

    record(mirror, None, Phase.CONNECTED, driver_id=nasty, state="open")
    pair(mirror, "K7Q2M9XA", driver_id=nasty)
    await mirror.drain()

    assert (await usuario(pg_url, nasty))["whatsapp_status"] == "connected"
    assert (await usuario(pg_url, nasty))["pairing_code_attempts"] == 1
    for driver_id in lookalikes:
        row = await usuario(pg_url, driver_id)
        assert (row["whatsapp_status"], row["pairing_code_attempts"]) == (None, 0)
    assert [r["driver_id"] for r in await history(pg_url, nasty)] == [nasty]
    assert mirror.sync_status(KEY).synced


async def test_configured_table_with_uuid_ids(pg_url: str, make_mirror: MakeMirror) -> None:
    await execute(
        pg_url,
        """CREATE SCHEMA app;
           CREATE TABLE app."Motoristas" (uid uuid PRIMARY KEY, estado_whatsapp text, codigo varchar(8),
                                          codigo_gerado timestamptz, codigo_expira timestamptz, tentativas int)""",
    )
    driver_id = "5f0c6e7a-3d2b-4c1e-9a8f-0b1c2d3e4f50"
    await execute(pg_url, """INSERT INTO app."Motoristas" (uid) VALUES (%s)""", [driver_id])
    settings = MirrorSettings(
        schema="app",
        table="Motoristas",
        id_column="uid",
        status_column="estado_whatsapp",
        pairing_code_column="codigo",
        pairing_generated_at_column="codigo_gerado",
        pairing_expires_at_column="codigo_expira",
        pairing_attempts_column="tentativas",
    )
    mirror = await make_mirror(pg_url, settings)

    pair(mirror, "K7Q2M9XA", driver_id=driver_id)
    record(mirror, None, Phase.PAIRING, driver_id=driver_id)
    record(mirror, None, Phase.PENDING, key=InstanceKey("drivers", "bob"), driver_id="bob")  # cannot be a uuid
    await mirror.drain()

    (row,) = await execute(pg_url, """SELECT * FROM app."Motoristas" """)
    assert (row["estado_whatsapp"], row["codigo"], row["tentativas"]) == ("connecting", "K7Q2M9XA", 1)
    assert mirror.sync_status(KEY).synced
    bob = mirror.sync_status(InstanceKey("drivers", "bob"))
    assert (bob.synced, bob.reason) == (False, SyncReason.DRIVER_ROW_REJECTED)
    assert "InvalidTextRepresentation" in bob.message
    assert len(await history(pg_url, "bob")) == 1  # the history row survives the rejected update
    assert await execute(pg_url, "SELECT * FROM usuarios") == []


async def test_a_write_postgres_can_never_store_does_not_wedge_the_queue(pg_url: str, make_mirror: MakeMirror) -> None:
    await add_driver(pg_url, DRIVER)
    mirror = await make_mirror(pg_url)

    record(mirror, None, Phase.CONNECTED, state="op\x00en")
    record(mirror, None, Phase.DISCONNECTED, minute=1, state="close")
    await asyncio.wait_for(mirror.drain(), 10)

    assert [r["to_phase"] for r in await history(pg_url, DRIVER)] == ["Disconnected"]
    assert (await usuario(pg_url, DRIVER))["whatsapp_status"] == "disconnected"
    assert mirror.counters.writes_dropped == 1


async def test_postgres_down_when_the_mirror_starts(pg_stoppable: StoppableDatabase, make_mirror: MakeMirror) -> None:
    url = pg_stoppable.url
    await add_driver(url, DRIVER)
    pg_stoppable.server.stop()
    sync = SyncLog()

    mirror = await make_mirror(url, on_sync=sync)
    record(mirror, None, Phase.PENDING)
    record(mirror, Phase.PENDING, Phase.PAIRING, minute=1)
    await eventually(lambda: not mirror.sync_status(KEY).synced)
    assert mirror.sync_status(KEY).pending == 2
    assert mirror.lag_seconds() > 0

    await asyncio.to_thread(pg_stoppable.server.start)
    await asyncio.wait_for(mirror.drain(), 15)

    assert [r["to_phase"] for r in await history(url, DRIVER)] == ["Pending", "Pairing"]
    assert sync.reasons(KEY) == [SyncReason.DATABASE_UNAVAILABLE, SyncReason.SYNCED]
    assert mirror.lag_seconds() == 0


async def test_stopping_during_an_outage_gives_up_after_the_timeout(
    pg_stoppable: StoppableDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    pg_stoppable.server.stop()
    mirror = StatusMirror(pg_stoppable.url, FAST)
    await mirror.start()
    record(mirror, None, Phase.PENDING)

    started = time.monotonic()
    await mirror.stop(timeout=0.5)

    assert time.monotonic() - started < 5
    assert "1 database writes for 1 instances not written" in caplog.text


async def test_postgres_restarting_mid_run_loses_and_duplicates_nothing(
    pg_stoppable: StoppableDatabase, make_mirror: MakeMirror
) -> None:
    url = pg_stoppable.url
    ana, bia, caio = (InstanceKey("drivers", name) for name in ("ana", "bia", "caio"))
    drivers = {key: f"driver-{key.name}" for key in (ana, bia, caio)}
    for driver_id in drivers.values():
        await add_driver(url, driver_id)
    sync = SyncLog()
    mirror = await make_mirror(url, on_sync=sync)
    expected: dict[InstanceKey, list[Phase]] = {key: [] for key in drivers}

    def observe(key: InstanceKey, to_phase: Phase) -> None:
        from_phase = expected[key][-1] if expected[key] else None
        record(mirror, from_phase, to_phase, key=key, driver_id=drivers[key], minute=len(expected[key]))
        expected[key].append(to_phase)

    for key in drivers:
        observe(key, Phase.PENDING)
    await mirror.drain()

    # A burst of flapping for one driver, with Postgres crashing while it is being written.
    for i in range(40):
        observe(ana, Phase.CONNECTED if i % 2 == 0 else Phase.DISCONNECTED)
    await asyncio.to_thread(pg_stoppable.server.stop, "immediate")

    # While it is down the operator keeps observing.
    observe(bia, Phase.PAIRING)
    pair(mirror, "K7Q2M9XA", key=bia, driver_id=drivers[bia])
    observe(caio, Phase.CONNECTING)
    observe(caio, Phase.UNKNOWN)
    observe(ana, Phase.LOGGED_OUT)
    await eventually(lambda: all(not mirror.sync_status(key).synced for key in drivers))
    await asyncio.sleep(2)
    assert all(mirror.sync_status(key).reason is SyncReason.DATABASE_UNAVAILABLE for key in drivers)

    await asyncio.to_thread(pg_stoppable.server.start)
    await asyncio.wait_for(mirror.drain(), 20)

    for key, driver_id in drivers.items():
        rows = await history(url, driver_id)
        assert [r["to_phase"] for r in rows] == expected[key]
        assert len({r["event_id"] for r in rows}) == len(rows)
        assert sync.reasons(key) == [SyncReason.DATABASE_UNAVAILABLE, SyncReason.SYNCED]
    statuses = {r["id"]: r["whatsapp_status"] for r in await execute(url, "SELECT id, whatsapp_status FROM usuarios")}
    assert statuses == {"driver-ana": "disconnected", "driver-bia": "connecting", "driver-caio": "connecting"}
    assert (await usuario(url, "driver-bia"))["pairing_code_attempts"] == 1
    assert mirror.counters.write_failures > 0
