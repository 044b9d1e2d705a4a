from __future__ import annotations

import argparse

import pytest

from whatsapp_operator.engine import config


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


def test_database_url_falls_back_to_DATABASE_URL():
    c = config.load(parse(), environ={"DATABASE_URL": "postgresql://u@db/app"})
    assert c.database_url == "postgresql://u@db/app"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--priority", "high"), "--priority / WHATSAPP_OPERATOR_PRIORITY must be an integer, got 'high'"),
        (("--log-format", "xml"), "must be 'json' or 'plain'"),
        (("--database-url", "mysql://x"), "--database-url / WHATSAPP_OPERATOR_DATABASE_URL must be a"),
        (("--kube-server", "localhost:6443"), "must be a http/https URL"),
        (("--namespace", "Bad_NS"), "'Bad_NS' is not a namespace name"),
        (("--notify-cooldown", "-1"), "must not be negative"),
        (("--webhook-listen", "8081"), "--webhook-listen / WHATSAPP_OPERATOR_WEBHOOK_LISTEN: expected host:port"),
        (("--webhook-listen", "0.0.0.0:http"), "expected host:port, got '0.0.0.0:http'"),
        (("--webhook-listen", "0.0.0.0:70000"), "expected host:port"),
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
