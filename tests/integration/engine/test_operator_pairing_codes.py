"""The application's pairing columns follow the code's life: a code goes from the row when it dies, and
the attempt count starts again with a new pairing attempt (docs/drift.md, "Pairing codes")."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.app_db import Usuarios, settle
from tests.support.operator_harness import IssuedCodes, environment, instance_manifest, wait_event, wait_phase
from tests.support.pg import eventually

pytestmark = pytest.mark.looptime


def code_of(db: Usuarios, driver_id: str) -> tuple[str | None, int | None]:
    row = db.row(driver_id)
    return row["pairing_code"], row["pairing_code_attempts"]


async def test_a_forced_logout_takes_the_old_code_from_the_row_and_starts_a_new_attempt(pg_url: str) -> None:
    db = Usuarios(pg_url)
    db.add("gil")
    async with environment(database_url=pg_url) as (kube, sim, operator):
        codes = IssuedCodes(sim)
        await kube.create(instance_manifest("gil"))
        await wait_phase(kube, "gil", "Pairing")
        await asyncio.sleep(100)  # codes rotate every 45 s: the attempt counts them
        await settle(operator)
        shown, attempts = code_of(db, "gil")
        old_codes = {code for _, code in codes.pairing_codes("gil")}
        assert shown in old_codes
        assert attempts == len(old_codes) >= 3

        sim.act("gil", "stick")  # connecting with no code for good: the driver's pairing is over
        await wait_event(kube, "gil", "ForcedLogout", within=300)
        await eventually(lambda: code_of(db, "gil")[0] not in (None, *old_codes), within=60)
        assert code_of(db, "gil")[1] == 1, "the fresh pairing's first code is a new attempt"


async def test_logged_out_while_pairing_leaves_no_code_in_the_row(pg_url: str) -> None:
    db = Usuarios(pg_url)
    db.add("hana")
    async with environment(database_url=pg_url) as (kube, sim, operator):
        await kube.create(instance_manifest("hana"))
        await wait_phase(kube, "hana", "Pairing")
        await settle(operator)
        assert code_of(db, "hana")[0] is not None
        sim.act("hana", "disconnect", 401)
        await wait_phase(kube, "hana", "LoggedOut")
        await settle(operator)
        row = db.row("hana")
        assert (row["pairing_code"], row["pairing_code_generated_at"], row["pairing_code_expires_at"]) == (None,) * 3
        assert row["whatsapp_status"] == "disconnected"


async def test_pairing_by_qr_puts_the_current_qr_in_its_own_column_until_it_dies(pg_url: str) -> None:
    db = Usuarios(pg_url)
    db.add("iara")
    async with environment(database_url=pg_url) as (kube, sim, operator):
        await kube.create(instance_manifest("iara", pairing={"method": "qrcode"}))
        await wait_phase(kube, "iara", "Pairing")
        await settle(operator)
        row = db.row("iara")
        qrs = [sim.instances["iara"].qr["code"]]
        assert row["pairing_qr_code"] == qrs[0], "the QR Evolution shows now"
        assert row["pairing_code"] is None
        assert row["pairing_code_expires_at"] is not None
        assert row["pairing_code_attempts"] == 1
        await asyncio.sleep(50)  # Evolution replaces the QR after 45 s
        await settle(operator)
        qrs.append(sim.instances["iara"].qr["code"])
        assert db.row("iara")["pairing_qr_code"] == qrs[1] != qrs[0]
        assert db.row("iara")["pairing_code_attempts"] == 2

        sim.act("iara", "pair")
        await wait_phase(kube, "iara", "Connected")
        await settle(operator)
        row = db.row("iara")
        assert (row["pairing_qr_code"], row["pairing_code_expires_at"]) == (None, None)
        assert row["whatsapp_status"] == "connected"
        for version in kube.emulator.objects[kube.emulator.resolve("whatsappinstances").ref, "default", "iara"].history:
            assert not any(qr in str(version) for qr in qrs), "a QR payload reached the resource"
        assert not any(qr in str(event) for event in kube.emulator.events(name="iara") for qr in qrs)
