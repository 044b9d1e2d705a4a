"""Issue #4 end to end: the Postgres mirror through the real operator (`operate()` against the strict
Kubernetes emulator, the Evolution simulator on loopback and a real embedded Postgres).

Time, a mix:

- The scenario tests run under looptime, as test_operator.py does, so that 45 s code rotations, 30 s
  stuck deadlines and probe rounds cost milliseconds and each phase sequence is the same on every run.
  Postgres is the one actor outside the event loop: while the loop waits for it alone, looptime moves
  the fake clock on to the next timer (psycopg polls every 0.1 s, so the clock runs a few hundred times
  faster than real time while a query is out). The tests are written so that this cannot change
  their outcome: nothing the operator decides waits for Postgres (the mirror is a queue beside the
  probe path), so phases depend on the loop's timers alone; the tests read Postgres with blocking
  calls, which stop the loop and its clock; they compare Postgres with the cluster only after
  `settle()`, at points where no instance is due to change however far the clock moves meanwhile;
  and they assert no DatabaseSynced condition, which an early timeout of the mirror (a slow connect
  seen on the fast clock) may flip for a moment.
- The Postgres outage and the shutdown flush run in real time. psycopg_pool schedules its reconnection
  attempts on `time.monotonic()` while it waits on the loop's clock, so under looptime the fake clock
  races ahead while the pool waits in real time, and the mirror's flush at stop is bounded by a
  loop-clock timeout that the racing clock can end before Postgres answers. These two wait for
  conditions, never sleep, and use probe_soon and, where a deadline matters, the CRD's smallest
  thresholds (probe.intervalSeconds and remediation.stuckAfterSeconds 5). The outage is a real stop
  of the embedded server for a real minute: about 100 s of this file's run time.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

import pytest

from tests.support.app_db import Usuarios, settle
from tests.support.operator_harness import (
    IssuedCodes,
    condition,
    environment,
    instance_manifest,
    loop_now,
    phase_changes,
    statuses_seen,
    wait_instance,
    wait_phase,
)
from tests.support.pg import StoppableDatabase
from whatsapp_operator.core.pairing import CODE_LIFETIME
from whatsapp_operator.core.phases import DB_STATUS, Phase
from whatsapp_operator.core.resources import instance_name_for
from whatsapp_operator.core.status import rfc3339
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.simulator.instance import Timings
from whatsapp_operator.engine.prober import ServerProber
from whatsapp_operator.engine.runtime import Runtime

pytestmark = pytest.mark.looptime

LOGGERS = ("", "kopf", "psycopg", "psycopg.pool", "httpx", "httpcore", "aiohttp", "whatsapp_operator")


def prober(runtime: Runtime) -> ServerProber:
    return runtime.probers[("default", "default")]


def expected_db_status(phases: list[str]) -> str | None:
    """`whatsapp_status` after these phases: that of the last one that writes one (Unknown and
    Suspended leave the column alone)."""
    written = [status for phase in phases if (status := DB_STATUS[Phase(phase)]) is not None]
    return written[-1] if written else None


def assert_mirrored(
    kube: EmulatedCluster,
    db: Usuarios,
    name: str,
    phases: list[str],
    *,
    forced: Collection[int] = (),
    driver_id: str | None = None,
) -> None:
    """The instance went through exactly `phases` (those at the indexes in `forced` reached by a forced
    logout), and the history and `whatsapp_status` say exactly that: one row per change, in order, with
    the state, reason and time its status showed."""
    driver_id = name if driver_id is None else driver_id
    changes = phase_changes(kube, name)
    assert [c["phase"] for c in changes] == phases
    rows = db.history(driver_id)
    assert [(r["from_phase"], r["to_phase"]) for r in rows] == list(zip(["Pending", *phases[:-1]], phases, strict=True))
    assert [r["forced"] for r in rows] == [i in forced for i in range(len(phases))]
    shown = [(c.get("state"), c.get("statusReason")) for c in changes]
    assert [(r["state"], r["status_reason"]) for r in rows] == shown
    assert [rfc3339(r["occurred_at"]) for r in rows] == [c["lastTransitionTime"] for c in changes]
    assert {(r["namespace"], r["instance"], r["evolution_instance"]) for r in rows} == {
        ("default", name, changes[-1]["instanceName"])
    }
    assert db.row(driver_id)["whatsapp_status"] == expected_db_status(phases)


def db_synced_seen(statuses: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """The DatabaseSynced condition's (status, reason) through these statuses, repeats folded."""
    seen: list[tuple[str, str]] = []
    for status in statuses:
        synced = next((c for c in status.get("conditions", ()) if c["type"] == "DatabaseSynced"), None)
        if synced is not None and (not seen or seen[-1] != (synced["status"], synced["reason"])):
            seen.append((synced["status"], synced["reason"]))
    return seen


def db_synced_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: any(
        c["type"] == "DatabaseSynced" and c["status"] == status for c in obj.get("status", {}).get("conditions", ())
    )


async def test_lifecycle_leaves_whatsapp_status_and_history_matching_every_phase(pg_url: str) -> None:
    db = Usuarios(pg_url)
    db.add("ana", "bia", "caio", "duda")
    async with environment(database_url=pg_url) as (kube, simulator, operator):

        async def ana() -> None:
            """New: pairs, survives three transient drops (each seen mid-reconnect, the first while the
            code it paired with would still be valid had its socket not ended), then a terminal 401."""
            await kube.create(instance_manifest("ana"))
            await wait_phase(kube, "ana", "Pairing")
            simulator.act("ana", "pair")
            await wait_phase(kube, "ana", "Connected")
            for reason in (515, 428, 440):
                simulator.act("ana", "drop", reason)
                prober(operator).probe_soon(("default", "ana"))
                await wait_phase(kube, "ana", "Connecting")
                await wait_phase(kube, "ana", "Connected")
            simulator.act("ana", "disconnect", 401)
            await wait_phase(kube, "ana", "LoggedOut")

        async def bia() -> None:
            """Stuck connecting: forced out and into pairing after 30 s, then suspended."""
            simulator.add_instance("bia", "connecting")
            await kube.create(instance_manifest("bia"))
            await wait_phase(kube, "bia", "Pairing")
            await kube.patch("whatsappinstances", "bia", {"spec": {"suspend": True}})
            await wait_phase(kube, "bia", "Suspended")

        async def caio() -> None:
            """Connected, vanishes from Evolution (recreated), pairs again, suspended and resumed."""
            simulator.add_instance("caio", "open")
            await kube.create(instance_manifest("caio"))
            await wait_phase(kube, "caio", "Connected")
            simulator.act("caio", "vanish")
            prober(operator).probe_soon(("default", "caio"))
            await wait_phase(kube, "caio", "Pairing")
            simulator.act("caio", "pair")
            await wait_phase(kube, "caio", "Connected")
            for suspend, phase in ((True, "Suspended"), (False, "Connected")):
                await kube.patch("whatsappinstances", "caio", {"spec": {"suspend": suspend}})
                await wait_phase(kube, "caio", phase)

        async def duda() -> None:
            """New, never pairs: codes rotate for the whole scenario."""
            await kube.create(instance_manifest("duda"))
            await wait_phase(kube, "duda", "Pairing")

        await asyncio.gather(ana(), bia(), caio(), duda())
        # Evolution goes away for good: every probed instance ends Unknown, which writes no status.
        simulator.add_fault("outage", None)
        for name in ("ana", "caio", "duda"):
            await wait_phase(kube, name, "Unknown", within=300)
        await settle(operator)

        reconnects = ["Connecting", "Connected"] * 3
        assert_mirrored(kube, db, "ana", ["Pairing", "Connected", *reconnects, "LoggedOut", "Unknown"])
        assert_mirrored(kube, db, "bia", ["Connecting", "Pairing", "Suspended"], forced={1})
        phases = ["Connected", "NotFound", "Pairing", "Connected", "Suspended", "Connected", "Unknown"]
        assert_mirrored(kube, db, "caio", phases)
        assert_mirrored(kube, db, "duda", ["Pairing", "Unknown"])


async def test_pairing_codes_reach_only_the_driver_row(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    for logger in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=logger)
    db = Usuarios(pg_url)
    db.add("eva")
    async with environment(database_url=pg_url) as (kube, simulator, operator):
        codes = IssuedCodes(simulator)
        await kube.create(instance_manifest("eva"))
        expiry = None
        codes_seen = 5  # the first, then four rotations
        for seen in range(1, codes_seen + 1):
            obj = await wait_instance(
                kube, "eva", lambda o, old=expiry: o.get("status", {}).get("pairingCodeExpiresAt") not in (None, old)
            )
            expiry = obj["status"]["pairingCodeExpiresAt"]
            assert len(codes.pairing_codes("eva")) == seen, "the operator saw each code Evolution issued"
            if seen == codes_seen:
                simulator.act("eva", "pair")  # now, while the operator knows every code issued
                break
            await settle(operator)
            row = db.row("eva")
            # One attempt per code issued, in order (settling may have let the clock run on to a
            # later code than the status showed: its row must then be counted the same way).
            assert row["pairing_code_attempts"] >= seen
            issued_at, code = codes.pairing_codes("eva")[row["pairing_code_attempts"] - 1]
            assert row["pairing_code"] == code
            # Seen in connect's answer, which comes at most connect_wait after the QR: the row dates
            # the code from then at the latest, at every rotation (no drift), never before it existed.
            generated_at = prober(operator).clock.at(issued_at)
            lag = row["pairing_code_generated_at"] - generated_at
            assert datetime.timedelta(0) <= lag <= datetime.timedelta(seconds=Timings().connect_wait)
            assert row["pairing_code_expires_at"] - row["pairing_code_generated_at"] == CODE_LIFETIME

        await wait_phase(kube, "eva", "Connected")
        await settle(operator)
        row = db.row("eva")
        assert (row["pairing_code"], row["pairing_code_generated_at"], row["pairing_code_expires_at"]) == (None,) * 3
        assert row["pairing_code_attempts"] == codes_seen
        assert row["whatsapp_status"] == "connected"

    secrets = codes.secrets()
    assert len(secrets) == 2 * codes_seen
    for (resource, namespace, name), obj in kube.emulator.objects.items():
        for version in obj.history:
            assert not any(s in str(version) for s in secrets), f"a code in {resource}: {namespace}/{name}"
    assert kube.emulator.events(name="eva"), "events were posted, and none of them carries a code"
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not any(s in logged for s in secrets), "a code was logged"


@pytest.mark.looptime(False)  # real time: see the module's docstring
async def test_a_minute_without_postgres_ends_with_the_mirror_complete(
    pg_stoppable: StoppableDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    db = Usuarios(pg_stoppable.url)
    db.add("fabio", "gabi", "hugo", "ines")
    fast = {"probe": {"intervalSeconds": 5}, "remediation": {"stuckAfterSeconds": 5}}  # the CRD's minimums
    async with environment(database_url=pg_stoppable.url, **fast) as (kube, simulator, operator):
        codes = IssuedCodes(simulator)
        for name in ("fabio", "hugo", "ines"):
            simulator.add_instance(name, "open")
            await kube.create(instance_manifest(name))
        await kube.create(instance_manifest("gabi"))
        for name in ("fabio", "hugo", "ines"):
            await wait_phase(kube, name, "Connected", within=10)
        await wait_phase(kube, "gabi", "Pairing", within=10)
        await settle(operator)
        assert db.row("gabi")["pairing_code"] is not None
        running = prober(operator)
        before = {name: len(statuses_seen(kube, name)) for name in ("fabio", "gabi", "hugo", "ines")}

        pg_stoppable.server.stop()
        stopped_at = loop_now()
        simulator.act("fabio", "disconnect", 401)
        simulator.act("gabi", "pair")
        simulator.act("ines", "stick")  # connecting for good: forced out and into pairing 5 s later
        for name, phase in (("fabio", "LoggedOut"), ("gabi", "Connected"), ("ines", "Pairing")):
            await wait_phase(kube, name, phase, within=30)
        for name in ("fabio", "gabi", "ines"):
            obj = await wait_instance(kube, name, db_synced_is("False"), within=30)
            assert condition(obj, "DatabaseSynced")["reason"] == "DatabaseUnavailable"
        await asyncio.sleep(max(0.0, stopped_at + 60 - loop_now()))
        pg_stoppable.server.start()

        # The mirror retries with backoff up to 30 s, after a 5 s wait for a connection.
        for name in ("fabio", "gabi", "ines"):
            await wait_instance(kube, name, db_synced_is("True"), within=60)
        await settle(operator)

        assert_mirrored(kube, db, "fabio", ["Connected", "LoggedOut"])
        assert_mirrored(kube, db, "gabi", ["Pairing", "Connected"])
        assert_mirrored(kube, db, "hugo", ["Connected"])
        assert_mirrored(kube, db, "ines", ["Connected", "Connecting", "Pairing"], forced={2})
        assert db.row("gabi")["pairing_code"] is None
        assert db.row("ines")["pairing_code"] in {code for _, code in codes.pairing_codes("ines")}
        for name in ("fabio", "gabi", "ines"):
            assert db_synced_seen(statuses_seen(kube, name)[before[name] :]) == [
                ("False", "DatabaseUnavailable"),
                ("True", "Synced"),
            ]
        assert not db_synced_seen(statuses_seen(kube, "hugo")[before["hugo"] :]), "nothing of hugo's was waiting"
        assert prober(operator) is running, "the operator and its prober ran throughout"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "nothing failed unexpectedly"


async def test_driver_ids_with_quotes_and_sql_are_stored_and_matched_literally(pg_url: str) -> None:
    pairs, waits = """o'brien"; DROP TABLE usuarios;--""", "x'); DELETE FROM whatsapp_operator.transitions; --"
    db = Usuarios(pg_url)
    db.add(pairs, waits, "o", "x")  # the ids' prefixes: rows a broken quoting would hit
    async with environment(database_url=pg_url) as (kube, simulator, operator):
        for name, driver_id in (("quote-pairs", pairs), ("quote-waits", waits)):
            await kube.create(instance_manifest(name, driverId=driver_id))
        for name, driver_id in (("quote-pairs", pairs), ("quote-waits", waits)):
            obj = await wait_phase(kube, name, "Pairing")
            assert obj["status"]["instanceName"] == instance_name_for(driver_id)
            assert instance_name_for(driver_id) in simulator.instances
        simulator.act(instance_name_for(pairs), "pair")
        await wait_phase(kube, "quote-pairs", "Connected")
        await settle(operator)

        assert_mirrored(kube, db, "quote-pairs", ["Pairing", "Connected"], driver_id=pairs)
        assert_mirrored(kube, db, "quote-waits", ["Pairing"], driver_id=waits)
        waiting = db.row(waits)
        assert waiting["pairing_code"] == simulator.instances[instance_name_for(waits)].pairing_code
        assert waiting["pairing_code_attempts"] == 1
        assert {r["id"]: r["whatsapp_status"] for r in db.query("SELECT * FROM usuarios")} == {
            pairs: "connected",
            waits: "connecting",
            "o": None,
            "x": None,
        }
        assert {r["driver_id"] for r in db.query("SELECT driver_id FROM whatsapp_operator.transitions")} == {
            pairs,
            waits,
        }


@pytest.mark.looptime(False)  # real time: see the module's docstring
async def test_stopping_the_operator_lands_the_writes_it_recorded(pg_url: str) -> None:
    db = Usuarios(pg_url)
    db.add("jon")
    async with environment(database_url=pg_url) as (kube, simulator, operator):
        simulator.add_instance("jon", "open")
        await kube.create(instance_manifest("jon"))
        await wait_phase(kube, "jon", "Connected", within=10)
        simulator.act("jon", "disconnect", 401)
        prober(operator).probe_soon(("default", "jon"))
        await wait_phase(kube, "jon", "LoggedOut", within=10)
    assert_mirrored(kube, db, "jon", ["Connected", "LoggedOut"])
