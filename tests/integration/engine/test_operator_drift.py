"""The mirror repairs drift: rows of the application's table that disagree with the operator are
rewritten within one probe interval, recorded in the history, and a fleet of agreeing rows costs one
query per round and no write."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.app_db import Usuarios, settle
from tests.support.operator_harness import environment, instance_manifest, wait_phase
from tests.support.pg import eventually
from whatsapp_operator.db.mirror import StatusMirror

pytestmark = pytest.mark.looptime
INTERVAL = 30  # the EvolutionServer's probe interval, the default


async def test_a_row_changed_behind_the_operators_back_is_repaired_within_one_probe_interval(pg_url: str) -> None:
    db = Usuarios(pg_url)
    db.add("ana", "bia")
    async with environment(database_url=pg_url) as (kube, sim, operator):
        for name in ("ana", "bia"):
            sim.add_instance(name, "open")
            await kube.create(instance_manifest(name))
            await wait_phase(kube, name, "Connected")
        sim.act("ana", "disconnect", 401)
        await wait_phase(kube, "ana", "LoggedOut")
        await settle(operator)
        assert db.row("ana")["whatsapp_status"] == "disconnected"

        # The application (or a write lost in a restart) leaves ana's row saying connected, with a
        # pairing code on it; bia's row is left alone and must stay untouched.
        db.query(
            "UPDATE usuarios SET whatsapp_status = 'connected', pairing_code = 'ABCD1234',"
            " pairing_code_expires_at = now() WHERE id = 'ana'"
        )
        bia_before = db.query("SELECT xmin::text AS version FROM usuarios WHERE id = 'bia'")
        await eventually(lambda: db.row("ana")["whatsapp_status"] == "disconnected", within=INTERVAL + 1)
        await settle(operator)

    row = db.row("ana")
    assert (row["pairing_code"], row["pairing_code_expires_at"]) == (None, None)
    (repair,) = db.repairs("ana")
    assert (repair["from_phase"], repair["to_phase"]) == ("LoggedOut", "LoggedOut")
    assert repair["repaired"] == "status was 'connected', a dead pairing code was shown"
    assert [r["to_phase"] for r in db.history("ana")] == ["Connected", "LoggedOut"], "no phase change recorded"
    assert db.query("SELECT xmin::text AS version FROM usuarios WHERE id = 'bia'") == bia_before
    assert not db.repairs("bia")


@pytest.mark.slow
async def test_a_thousand_agreeing_rows_cost_one_query_per_round_and_no_write(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"drv-{i:04d}" for i in range(1000)]
    db = Usuarios(pg_url)
    db.query("INSERT INTO usuarios (id, nome) SELECT id, id FROM unnest(%s::text[]) AS id", [names])
    rounds: list[int] = []
    find_drift = StatusMirror.find_drift

    async def counted(self: StatusMirror, expected: list) -> list:  # type: ignore[type-arg]
        rounds.append(len(expected))
        return await find_drift(self, expected)

    monkeypatch.setattr(StatusMirror, "find_drift", counted)
    async with environment(database_url=pg_url) as (kube, sim, operator):
        for name in names:
            sim.add_instance(name, "open")
        await asyncio.gather(*(kube.create(instance_manifest(name)) for name in names))
        prober = operator.probers[("default", "default")]
        await eventually(lambda: sum(t.state.phase == "Connected" for t in prober.tracked.values()) == 1000, 300)
        await settle(operator)
        versions = db.query("SELECT id, xmin::text AS version FROM usuarios ORDER BY id")
        history = len(db.query("SELECT id FROM whatsapp_operator.transitions"))
        rounds.clear()
        await asyncio.sleep(5 * INTERVAL)
        assert operator.mirror is not None
        assert operator.mirror.pending() == 0

    assert len(rounds) in (4, 5, 6), "one comparison per probe interval"
    assert set(rounds) == {1000}, "each compares the whole fleet at once"
    assert db.query("SELECT id, xmin::text AS version FROM usuarios ORDER BY id") == versions, "no row was written"
    assert len(db.query("SELECT id FROM whatsapp_operator.transitions")) == history
