from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from whatsapp_operator.db.connection import connection_params
from whatsapp_operator.db.mirror import MirrorSettings
from whatsapp_operator.engine import settings as config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_without_flags_or_environment():
    c = config.load(parse(), environ={})
    assert c.namespaces == ()
    assert c.peering is None
    assert c.database_url is None
    assert c.notify_cooldown == 1800.0
    assert c.webhook_listen == "0.0.0.0:8081"  # beside kopf's liveness endpoint on 8080


def test_flags_win_over_environment():
    env = {"WHATSAPP_OPERATOR_PEERING": "from-env", "WHATSAPP_OPERATOR_NAMESPACES": "a,b"}
    c = config.load(parse("--peering", "from-flag"), environ=env)
    assert c.peering == "from-flag"
    assert c.namespaces == ("a", "b")


def test_the_status_api_secret_is_a_namespace_and_a_name():
    assert config.load(parse(), environ={}).status_api_secret is None
    env = {"WHATSAPP_OPERATOR_STATUS_API_SECRET": "whatsapp-operator/status-api"}
    assert config.load(parse(), environ=env).status_api_secret == ("whatsapp-operator", "status-api")


def test_database_url_falls_back_to_DATABASE_URL():
    c = config.load(parse(), environ={"DATABASE_URL": "postgresql://u@db/app"})
    assert c.database_url == "postgresql://u@db/app"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--priority", "high"), "--priority / WHATSAPP_OPERATOR_PRIORITY must be an integer, got 'high'"),
        (("--log-format", "xml"), "must be 'json' or 'plain'"),
        (("--database-url", "mysql://x"), "WHATSAPP_OPERATOR_DATABASE_URL the database URL must start with"),
        (("--kube-server", "localhost:6443"), "must be a http/https URL"),
        (("--namespace", "Bad_NS"), "'Bad_NS' is not a namespace name"),
        (("--notify-cooldown", "-1"), "must not be negative"),
        (("--webhook-listen", "8081"), "--webhook-listen / WHATSAPP_OPERATOR_WEBHOOK_LISTEN: expected host:port"),
        (("--webhook-listen", "0.0.0.0:http"), "expected host:port, got '0.0.0.0:http'"),
        (("--webhook-listen", "0.0.0.0:70000"), "expected host:port"),
        (("--status-api-secret", "status-api"), "--status-api-secret / WHATSAPP_OPERATOR_STATUS_API_SECRET must be"),
        (("--status-api-secret", "ns/Bad_Name"), "must be NAMESPACE/NAME, got 'ns/Bad_Name'"),
        (("--status-api-secret", "a/b/c"), "must be NAMESPACE/NAME"),
    ],
)
def test_invalid_settings_are_rejected_with_the_flag_named(argv, message):
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load(parse(*argv), environ={})


def test_liveness_can_be_switched_off():
    assert config.load(parse("--liveness", "off"), environ={}).liveness is None


def test_webhook_receiver_address_or_off():
    assert config.load(parse(), environ={"WHATSAPP_OPERATOR_WEBHOOK_LISTEN": "127.0.0.1:9000"}).webhook_listen == (
        "127.0.0.1:9000"
    )
    assert config.load(parse("--webhook-listen", "off"), environ={}).webhook_listen is None


def test_docs_settings_page_is_the_generated_one():
    page = Path(__file__).parents[3] / "docs" / "settings.md"
    assert page.read_text() == config.markdown(), "run: python -m whatsapp_operator.engine.settings > docs/settings.md"


def test_every_config_field_is_a_setting_with_a_flag_and_a_variable():
    fields = {f.name for f in dataclasses.fields(config.Config)}
    assert {s.field for s in config.SETTINGS} == fields
    assert len({s.flag for s in config.SETTINGS}) == len(fields)


def test_a_sqlalchemy_style_database_url_is_accepted_as_libpq_reads_it():
    url = "postgresql+psycopg://app:s3cret@db.internal:5433/drivers"
    assert config.load(parse("--database-url", url), environ={}).database_url == url
    params = connection_params(url)
    assert [params[k] for k in ("host", "port", "dbname", "user")] == ["db.internal", "5433", "drivers", "app"]


def test_the_application_table_and_columns_are_settings():
    env = {"WHATSAPP_OPERATOR_APP_TABLE": "Motoristas", "WHATSAPP_OPERATOR_APP_ID_COLUMN": "uid"}
    c = config.load(parse("--app-schema", "app", "--app-status-column", "estado_whatsapp"), environ=env)
    mirror = c.mirror_settings()
    assert (mirror.schema, mirror.table, mirror.id_column, mirror.status_column) == (
        "app",
        "Motoristas",
        "uid",
        "estado_whatsapp",
    )
    assert mirror.pairing_code_column == MirrorSettings().pairing_code_column  # untouched: the default
    with pytest.raises(config.ConfigError, match="--app-table / WHATSAPP_OPERATOR_APP_TABLE must be a Postgres"):
        config.load(parse("--app-table", "x" * 64), environ={})
