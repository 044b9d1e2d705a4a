"""The application's table under other names, through the real operator: the schema, the table and every
column set as `whatsapp-operator run` reads them (flags and WHATSAPP_OPERATOR_* variables), a uuid key,
and a driver's pairing code, connection and logout landing in those columns, nowhere else."""

from __future__ import annotations

import argparse
import uuid
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.app_db import settle
from tests.support.operator_harness import backends, condition, instance_manifest, wait_phase
from whatsapp_operator.engine import runner, settings
from whatsapp_operator.engine.runner import running
from whatsapp_operator.engine.runtime import Runtime

pytestmark = pytest.mark.looptime

TABLE = 'frota."Motoristas Ativos"'
COLUMNS = {
    "id": "Motorista ID",
    "status": "estado_whatsapp",
    "code": "codigo",
    "generated_at": "codigo_gerado_em",
    "expires_at": "codigo_expira_em",
    "attempts": "tentativas",
}


def query(url: str, sql: LiteralString, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Blocking, so that looptime's clock stands still while Postgres answers."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def configured(kube_url: str, database_url: str) -> settings.Config:
    """As `run` gets its settings: its own flags, over the environment."""
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    flags = [
        *("--kube-server", kube_url, "--liveness", "off"),
        *("--webhook-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"),
        *("--app-schema", "frota", "--app-id-column", COLUMNS["id"]),
        *("--app-pairing-code-column", COLUMNS["code"]),
    ]
    environ = {
        "WHATSAPP_OPERATOR_DATABASE_URL": database_url,
        "WHATSAPP_OPERATOR_APP_SCHEMA": "ignored: the flag wins",
        "WHATSAPP_OPERATOR_APP_TABLE": "Motoristas Ativos",
        "WHATSAPP_OPERATOR_APP_STATUS_COLUMN": COLUMNS["status"],
        "WHATSAPP_OPERATOR_APP_PAIRING_GENERATED_AT_COLUMN": COLUMNS["generated_at"],
        "WHATSAPP_OPERATOR_APP_PAIRING_EXPIRES_AT_COLUMN": COLUMNS["expires_at"],
        "WHATSAPP_OPERATOR_APP_PAIRING_ATTEMPTS_COLUMN": COLUMNS["attempts"],
    }
    return settings.load(parser.parse_args(flags), environ=environ)


def driver_row(url: str, driver_id: str) -> dict[str, Any]:
    (row,) = query(url, 'SELECT * FROM frota."Motoristas Ativos" WHERE "Motorista ID" = %s', [driver_id])
    return row


async def test_pairing_connection_and_logout_land_in_the_configured_columns(pg_url: str) -> None:
    query(
        pg_url,
        """CREATE SCHEMA frota;
           CREATE TABLE frota."Motoristas Ativos" (
               "Motorista ID" uuid PRIMARY KEY, nome text, estado_whatsapp text, codigo varchar(8),
               codigo_gerado_em timestamptz, codigo_expira_em timestamptz, tentativas int NOT NULL DEFAULT 0)""",
    )
    driver_id, other_id = str(uuid.uuid4()), str(uuid.uuid4())
    for each in (driver_id, other_id):
        query(pg_url, """INSERT INTO frota."Motoristas Ativos" ("Motorista ID", nome) VALUES (%s, 'Maria')""", [each])

    async with backends() as (kube, simulator):
        config = configured(kube.url, pg_url)
        mirror = config.mirror_settings()
        assert (mirror.schema, mirror.table, mirror.id_column, mirror.pairing_attempts_column) == (
            "frota",
            "Motoristas Ativos",
            "Motorista ID",
            "tentativas",
        )
        async with running(Runtime(config)) as operator:
            await kube.create(instance_manifest("maria", driver_id=driver_id))
            await wait_phase(kube, "maria", "Pairing")
            await settle(operator)
            code = simulator.instances[driver_id].pairing_code  # the Evolution instance is named after the id
            row = driver_row(pg_url, driver_id)
            assert (row["estado_whatsapp"], row["codigo"], row["tentativas"]) == ("connecting", code, 1)
            assert row["codigo_expira_em"] > row["codigo_gerado_em"]

            simulator.act(driver_id, "pair")
            await wait_phase(kube, "maria", "Connected")
            await settle(operator)
            row = driver_row(pg_url, driver_id)
            assert (row["estado_whatsapp"], row["codigo"], row["codigo_gerado_em"], row["codigo_expira_em"]) == (
                "connected",
                None,
                None,
                None,
            )

            simulator.act(driver_id, "disconnect", 401)
            obj = await wait_phase(kube, "maria", "LoggedOut", within=60)
            await settle(operator)
            assert driver_row(pg_url, driver_id)["estado_whatsapp"] == "disconnected"
            assert driver_row(pg_url, driver_id)["codigo"] is None
            assert all(c["type"] != "DatabaseSynced" for c in obj["status"]["conditions"]), "every write landed"
            assert condition(obj, "Ready")["status"] == "False"

    history = query(
        pg_url, "SELECT to_phase FROM whatsapp_operator.transitions WHERE driver_id = %s ORDER BY id", [driver_id]
    )
    assert [r["to_phase"] for r in history] == ["Pairing", "Connected", "LoggedOut"]
    untouched = driver_row(pg_url, other_id)
    assert (untouched["estado_whatsapp"], untouched["codigo"], untouched["tentativas"]) == (None, None, 0)
    assert query(pg_url, "SELECT * FROM public.usuarios") == [], "the default table is not written"
