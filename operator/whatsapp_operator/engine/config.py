"""Operator configuration: flags over environment variables over defaults, validated at start."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping
from urllib.parse import urlparse

from whatsapp_operator.http_server import parse_listen

ENV_PREFIX = "WHATSAPP_OPERATOR_"


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag, the variable and the value."""


@dataclasses.dataclass(frozen=True)
class Config:
    namespaces: tuple[str, ...] = ()  # empty: the whole cluster
    kube_server: str | None = None  # an explicit API server URL (demo, tests); else in-cluster/kubeconfig
    database_url: str | None = None  # unset: no Postgres mirror
    peering: str | None = None  # unset: standalone (no active/standby pair)
    priority: int = 0
    liveness: str | None = "http://0.0.0.0:8080/healthz"
    webhook_listen: str | None = "0.0.0.0:8081"  # the webhook receiver (needs database_url)
    log_format: str = "json"
    verbose: bool = False
    notify_cooldown: float = 1800.0


_FIELDS: dict[str, tuple[str, str]] = {
    # field: (flag, help)
    "namespaces": ("--namespace", "watch this namespace (repeatable; glob patterns allowed); default: all"),
    "kube_server": ("--kube-server", "Kubernetes API URL, bypassing in-cluster and kubeconfig login"),
    "database_url": ("--database-url", "Postgres URL of the application's database (status mirror)"),
    "peering": ("--peering", "kopf peering name for an active/standby pair; default: standalone"),
    "priority": ("--priority", "peering priority of this replica"),
    "liveness": ("--liveness", "liveness endpoint URL to serve, or 'off'"),
    "webhook_listen": ("--webhook-listen", "host:port of the webhook receiver (needs a database), or 'off'"),
    "log_format": ("--log-format", "json or plain"),
    "verbose": ("--verbose", "debug logging"),
    "notify_cooldown": ("--notify-cooldown", "seconds between two disconnect notifications of one driver"),
}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for field, (flag, help_text) in _FIELDS.items():
        env = env_name(field)
        if field == "verbose":
            parser.add_argument(flag, action="store_true", default=None, help=f"{help_text} (env {env})")
        elif field == "namespaces":
            parser.add_argument(flag, dest=field, action="append", help=f"{help_text} (env {env}, comma-separated)")
        else:
            parser.add_argument(flag, dest=field, help=f"{help_text} (env {env})")


def _url(value: str, what: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or (not parsed.netloc and parsed.scheme.startswith("http")):
        raise ConfigError(f"{what} must be a {'/'.join(schemes)} URL, got {value!r}")
    return value


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Flags win over `WHATSAPP_OPERATOR_*` variables, which win over the defaults."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for field in _FIELDS:
        value = getattr(args, field, None) if args is not None else None
        if value is None and env_name(field) in env:
            value = env[env_name(field)]
        if value is not None:
            raw[field] = value
    if "database_url" not in raw and env.get("DATABASE_URL"):
        raw["database_url"] = env["DATABASE_URL"]

    values: dict[str, object] = {}
    for field, value in raw.items():
        where = f"{_FIELDS[field][0]} / {env_name(field)}"
        if field == "namespaces":
            items = value if isinstance(value, list) else str(value).split(",")
            names = tuple(n.strip() for item in items for n in str(item).split(",") if n.strip())
            for n in names:
                if not re.fullmatch(r"[a-z0-9*?\[\]!-]{1,63}", n):
                    raise ConfigError(f"{where}: {n!r} is not a namespace name or pattern")
            values[field] = names
        elif field == "verbose":
            values[field] = value is True or str(value).lower() in ("1", "true", "yes", "on")
        elif field == "priority":
            try:
                values[field] = int(str(value))
            except ValueError:
                raise ConfigError(f"{where} must be an integer, got {value!r}") from None
        elif field == "notify_cooldown":
            try:
                seconds = float(str(value))
            except ValueError:
                raise ConfigError(f"{where} must be a number of seconds, got {value!r}") from None
            if seconds < 0:
                raise ConfigError(f"{where} must not be negative, got {value!r}")
            values[field] = seconds
        elif field == "log_format":
            if value not in ("json", "plain"):
                raise ConfigError(f"{where} must be 'json' or 'plain', got {value!r}")
            values[field] = value
        elif field == "liveness":
            values[field] = None if value == "off" else _url(str(value), where, ("http",))
        elif field == "webhook_listen":
            if value != "off":
                try:
                    parse_listen(str(value))
                except ValueError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
            values[field] = None if value == "off" else str(value)
        elif field == "kube_server":
            values[field] = _url(str(value), where, ("http", "https"))
        elif field == "database_url":
            values[field] = _url(str(value), where, ("postgres", "postgresql", "postgresql+psycopg"))
        else:
            values[field] = str(value)
    return Config(**values)  # type: ignore[arg-type]
