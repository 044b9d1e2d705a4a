"""`whatsapp-operator migrate` against a real Postgres: idempotent, concurrent-safe, clear when it fails."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from whatsapp_operator.db import migrate
from whatsapp_operator.db.connection import DATABASE_URL_ENV

ALL_MIGRATIONS = [
    "0001_operator_schema",
    "0002_usuarios_minimal",
    "0003_usuarios_pairing_code",
    "0004_webhook_inbox",
    "0005_notifications",
    "0006_reconnected_notifications",
    "0007_transition_repairs",
    "0008_usuarios_qr_code",
]
PAIRING_COLUMNS = {
    "pairing_code": ("character varying", None),
    "pairing_code_generated_at": ("timestamp with time zone", None),
    "pairing_code_expires_at": ("timestamp with time zone", None),
    "pairing_code_attempts": ("integer", "0"),
}

# The migrate command exactly as the console script runs it, without importing the other subcommands.
MIGRATE_SCRIPT = (
    "import argparse, sys\n"
    "from whatsapp_operator.db import migrate\n"
    "parser = argparse.ArgumentParser(prog='whatsapp-operator migrate')\n"
    "migrate.add_arguments(parser)\n"
    "sys.exit(migrate.run(parser.parse_args(sys.argv[1:])))\n"
)


def migrate_process(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in DATABASE_URL_ENV}
    return subprocess.Popen(
        [sys.executable, "-c", MIGRATE_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def schema_snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Everything a migration can change that a user would notice: columns, indexes, comments."""
    with psycopg.connect(url) as conn:
        return {
            "columns": conn.execute(
                """SELECT table_schema, table_name, column_name, data_type, character_maximum_length,
                          column_default, is_nullable,
                          col_description(format('%I.%I', table_schema, table_name)::regclass, ordinal_position)
                   FROM information_schema.columns
                   WHERE table_schema IN ('public', 'whatsapp_operator')
                   ORDER BY table_schema, table_name, column_name"""
            ).fetchall(),
            "indexes": conn.execute(
                """SELECT schemaname, indexname, indexdef FROM pg_indexes
                   WHERE schemaname IN ('public', 'whatsapp_operator') ORDER BY 1, 2"""
            ).fetchall(),
        }


def usuarios_columns(url: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT column_name, data_type, column_default FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = 'usuarios'"""
        ).fetchall()
    return {name: (data_type, default) for name, data_type, default in rows}


def test_migrating_twice_applies_everything_once_and_changes_nothing_the_second_time(pg_empty_url: str) -> None:
    assert migrate.apply_migrations(pg_empty_url) == ALL_MIGRATIONS
    first = schema_snapshot(pg_empty_url)

    assert migrate.apply_migrations(pg_empty_url) == []
    assert schema_snapshot(pg_empty_url) == first

    columns = usuarios_columns(pg_empty_url)
    assert {"id", "nome", "telefone", "whatsapp_status"} <= columns.keys()
    assert {name: columns[name] for name in PAIRING_COLUMNS} == PAIRING_COLUMNS
    index_names = {name for _, name, _ in first["indexes"]}
    assert "idx_usuarios_pairing_code_expires_at" in index_names
    assert "transitions_driver_id_occurred_at_idx" in index_names
    assert {"webhook_inbox_due_idx", "webhook_inbox_done_idx", "webhook_inbox_dedup_key_key"} <= index_names
    comments = {row[2]: row[7] for row in first["columns"] if row[1] == "usuarios"}
    assert comments["pairing_code"] == "Código de pareamento de 8 dígitos (válido por ~60s)"
    assert comments["pairing_code_attempts"] == "Número de tentativas de uso do código"


def test_migrating_an_application_table_that_already_has_some_pairing_columns(pg_empty_url: str) -> None:
    with psycopg.connect(pg_empty_url) as conn:
        conn.execute(
            """CREATE TABLE public.usuarios (
                   id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                   nome text NOT NULL,
                   telefone text,
                   email text UNIQUE,
                   criado_em timestamptz NOT NULL DEFAULT now(),
                   whatsapp_status text,
                   pairing_code varchar(8),
                   pairing_code_attempts int
               )"""
        )
        insert = "INSERT INTO usuarios (nome, email, pairing_code) VALUES ('Ana', 'ana@example.com', '12345678')"
        driver = conn.execute(insert + " RETURNING id").fetchone()[0]

    assert migrate.apply_migrations(pg_empty_url) == ALL_MIGRATIONS

    columns = usuarios_columns(pg_empty_url)
    assert {name: columns[name] for name in PAIRING_COLUMNS} == PAIRING_COLUMNS
    assert columns["id"][0] == "uuid"
    assert {"email", "criado_em"} <= columns.keys()
    with psycopg.connect(pg_empty_url) as conn:
        row = conn.execute("SELECT nome, email, pairing_code FROM usuarios WHERE id = %s", [driver]).fetchone()
    assert row == ("Ana", "ana@example.com", "12345678")
    assert migrate.apply_migrations(pg_empty_url) == []


def test_two_migrate_processes_at_once_apply_each_migration_exactly_once(pg_empty_url: str) -> None:
    processes = [migrate_process("--database-url", pg_empty_url) for _ in range(2)]
    results = [(process.wait(timeout=30), *process.communicate()) for process in processes]

    assert [code for code, _, _ in results] == [0, 0], results
    outputs = sorted(out.strip() for _, out, _ in results)
    assert outputs == [f"applied: {', '.join(ALL_MIGRATIONS)}", "the database is up to date"]
    with psycopg.connect(pg_empty_url) as conn:
        applied = conn.execute(
            "SELECT migration_id, count(*) FROM whatsapp_operator._yoyo_log WHERE operation = 'apply' GROUP BY 1"
        ).fetchall()
    assert sorted(applied) == [(migration, 1) for migration in ALL_MIGRATIONS]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://admin:hunter2@db/app", "must start with postgresql://"),
        ("postgresql://admin:hunter2@db:port/app", "the port is not a number"),
        ("postgresql://admin:hunter2@db/app?sslmode=sometimes&nonsense=1", "malformed database URL"),
        ("postgresql://admin:hunter2@/app?host=/nonexistent/socket/dir", "cannot reach the database"),
    ],
)
def test_bad_or_unreachable_database_is_one_clear_line_and_a_failing_exit(url: str, message: str) -> None:
    process = migrate_process("--database-url", url)
    code = process.wait(timeout=30)
    out, err = process.communicate()

    assert code == 1
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("whatsapp-operator migrate: error: ")
    assert message in err
    assert "hunter2" not in err


def test_database_url_comes_from_the_environment(pg_empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHATSAPP_OPERATOR_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", pg_empty_url)
    args = argparse.Namespace(database_url=None, migrations_dir=None)

    assert migrate.run(args) == 0
    assert migrate.apply_migrations(pg_empty_url) == []


def test_missing_url_or_migrations_are_reported(
    pg_empty_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in DATABASE_URL_ENV:
        monkeypatch.delenv(name, raising=False)
    assert migrate.run(argparse.Namespace(database_url=None, migrations_dir=None)) == 1
    assert "no database URL" in capsys.readouterr().err

    monkeypatch.setenv(migrate.MIGRATIONS_DIR_ENV, str(tmp_path))
    assert migrate.run(argparse.Namespace(database_url=pg_empty_url, migrations_dir=None)) == 1
    assert f"no migrations found in {tmp_path}" in capsys.readouterr().err
