"""The drift query on the application's table, whatever the type of its id column."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.support.pg import execute
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import InstanceKey
from whatsapp_operator.db.app_table import AppTable, Expected
from whatsapp_operator.db.mirror import MirrorSettings

SETTINGS = MirrorSettings(
    schema="app",
    table="Motoristas",
    id_column="uid",
    status_column="estado",
    pairing_code_column="codigo",
    pairing_generated_at_column="gerado",
    pairing_expires_at_column="expira",
    pairing_attempts_column="tentativas",
)


def expect(driver_id: str, status: str | None, *, no_code: bool = False) -> Expected:
    return Expected(InstanceKey("drivers", driver_id), driver_id, driver_id, Phase.CONNECTED, status, no_code)


@pytest.mark.parametrize(
    ("id_type", "ids", "not_an_id"),
    [
        ("uuid", [str(uuid.UUID(int=n)) for n in (1, 2, 3)], "bob"),
        ("bigint", ["1", "2", "3"], "9" * 30),
        ("integer", ["1", "2", "3"], "x1"),
        ("varchar(40)", ["ana", "bia", "caio"], None),
    ],
)
async def test_the_drift_query_finds_exactly_the_rows_that_disagree(
    pg_url: str, id_type: str, ids: list[str], not_an_id: str | None
) -> None:
    await execute(
        pg_url,
        f"""CREATE SCHEMA app;
            CREATE TABLE app."Motoristas" (uid {id_type} PRIMARY KEY, estado text, codigo text,
                                           gerado timestamptz, expira timestamptz, tentativas int)""",  # type: ignore[arg-type]
    )
    agreeing, stale_status, stale_code = ids
    for driver_id, status, code in ((agreeing, "connected", None), (stale_status, "connected", None),
                                    (stale_code, "disconnected", "K7Q2M9XA")):  # fmt: skip
        await execute(
            pg_url,
            """INSERT INTO app."Motoristas" (uid, estado, codigo) VALUES (%s, %s, %s)""",
            [driver_id, status, code],
        )
    expected = [
        expect(agreeing, "connected", no_code=True),
        expect(stale_status, "disconnected"),
        expect(stale_code, "disconnected", no_code=True),
        expect(ids[0].upper() if id_type == "uuid" else agreeing, "connected"),  # the same row, spelt otherwise
    ]
    if not_an_id is not None:
        expected.append(expect(not_an_id, "connected"))  # cannot be in the table: not compared, no error
    table = AppTable(SETTINGS)
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        drifted = await table.drifted(conn, expected)

    found = {d.expected.driver_id: (d.status, d.stale_code, d.found()) for d in drifted}
    assert found == {
        stale_status: ("connected", False, "status was 'connected'"),
        stale_code: ("disconnected", True, "a dead pairing code was shown"),
    }
