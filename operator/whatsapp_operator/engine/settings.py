"""The operator's settings: flags over `WHATSAPP_OPERATOR_*` variables over defaults, validated at start.

Each setting is one `Setting` in `SETTINGS` (flag, parser, help) beside its field and default in
`Config`; the argparse flags, the environment lookup and docs/settings.md are derived from them
(`python -m whatsapp_operator.engine.settings` prints that page).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from whatsapp_operator.db.connection import DatabaseConfigError, connection_params
from whatsapp_operator.db.mirror import MirrorSettings
from whatsapp_operator.http_server import parse_listen

ENV_PREFIX = "WHATSAPP_OPERATOR_"
_APP = MirrorSettings()  # the application's table and columns, as the migrations create them


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
    webhook_listen: str | None = "0.0.0.0:8081"  # the HTTP server: the status API, webhooks with database_url
    status_api_secret: tuple[str, str] | None = None  # (namespace, name) of the status API's token Secret
    metrics_listen: str | None = "0.0.0.0:9102"  # Prometheus' scrape endpoint, /metrics
    log_format: str = "json"
    verbose: bool = False
    notify_cooldown: float = 1800.0
    notify_deadline: float = 21600.0  # a delivery still failing this long after the decision is dead
    app_schema: str = _APP.schema
    app_table: str = _APP.table
    app_id_column: str = _APP.id_column
    app_status_column: str = _APP.status_column
    app_pairing_code_column: str = _APP.pairing_code_column
    app_pairing_generated_at_column: str = _APP.pairing_generated_at_column
    app_pairing_expires_at_column: str = _APP.pairing_expires_at_column
    app_pairing_attempts_column: str = _APP.pairing_attempts_column
    app_qr_code_column: str = _APP.qr_code_column

    def mirror_settings(self) -> MirrorSettings:
        return dataclasses.replace(
            _APP,
            schema=self.app_schema,
            table=self.app_table,
            id_column=self.app_id_column,
            status_column=self.app_status_column,
            pairing_code_column=self.app_pairing_code_column,
            pairing_generated_at_column=self.app_pairing_generated_at_column,
            pairing_expires_at_column=self.app_pairing_expires_at_column,
            pairing_attempts_column=self.app_pairing_attempts_column,
            qr_code_column=self.app_qr_code_column,
        )


# -- parsers: a str in, the value out, ValueError with the reason -----------------------------------


def _namespaces(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    for n in names:
        if not re.fullmatch(r"[a-z0-9*?\[\]!-]{1,63}", n):
            raise ValueError(f"{n!r} is not a namespace name or pattern")
    return names


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ValueError(f"must be a {'/'.join(schemes)} URL, got {value!r}")
        return value

    return parse


def _database_url(value: str) -> str:
    try:
        connection_params(value)  # the very check every database command makes
    except DatabaseConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be an integer, got {value!r}") from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"must be a number of seconds, got {value!r}") from None
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be {' or '.join(map(repr, choices))}, got {value!r}")
        return value

    return parse


def _or_off(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda value: None if value == "off" else parse(value)


def _listen(value: str) -> str:
    try:
        parse_listen(value)
    except ValueError as exc:
        raise ValueError(f": {exc}") from None
    return value


_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _namespaced_name(value: str) -> tuple[str, str]:
    namespace, sep, name = value.partition("/")
    if not sep or not _DNS_NAME.fullmatch(namespace) or not _DNS_NAME.fullmatch(name):
        raise ValueError(f"must be NAMESPACE/NAME, got {value!r}")
    return namespace, name


def _boolean(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def _identifier(value: str) -> str:
    """A Postgres name: always quoted in SQL, so only its length and NUL can be wrong."""
    if not 0 < len(value.encode()) <= 63 or "\0" in value:
        raise ValueError(f"must be a Postgres identifier of 1 to 63 bytes, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Setting:
    field: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    repeatable: bool = False  # `--namespace a --namespace b`, or comma-separated
    switch: bool = False  # a flag without a value

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.field.upper()

    @property
    def default(self) -> Any:
        return next(f.default for f in dataclasses.fields(Config) if f.name == self.field)


def _column(field: str, flag: str, what: str) -> Setting:
    return Setting(field, flag, _identifier, f"the application's {what}")


SETTINGS: tuple[Setting, ...] = (
    Setting("namespaces", "--namespace", _namespaces, "watch this namespace (globs allowed); default: all", True),
    Setting("kube_server", "--kube-server", _url("http", "https"), "Kubernetes API URL, bypassing in-cluster login"),
    Setting("database_url", "--database-url", _database_url, "the application's Postgres URL; also $DATABASE_URL"),
    Setting("peering", "--peering", str, "kopf peering name for an active/standby pair; default: standalone"),
    Setting("priority", "--priority", _integer, "peering priority of this replica"),
    Setting("liveness", "--liveness", _or_off(_url("http")), "liveness endpoint URL to serve, or 'off'"),
    Setting(
        "webhook_listen",
        "--webhook-listen",
        _or_off(_listen),
        "the operator's HTTP server host:port (the status API; webhooks with a database) or 'off'",
    ),
    Setting(
        "status_api_secret",
        "--status-api-secret",
        _namespaced_name,
        "the status API's bearer token: Secret NAMESPACE/NAME, key 'token' (docs/status-api.md); unset: it answers 503",
    ),
    Setting("metrics_listen", "--metrics-listen", _or_off(_listen), "Prometheus metrics host:port (/metrics) or 'off'"),
    Setting("log_format", "--log-format", _choice("json", "plain"), "log line format: json or plain"),
    Setting("verbose", "--verbose", _boolean, "debug logging", switch=True),
    Setting("notify_cooldown", "--notify-cooldown", _seconds, "seconds between two notifications of a driver"),
    Setting("notify_deadline", "--notify-deadline", _seconds, "seconds a notification is retried before it is dead"),
    _column("app_schema", "--app-schema", "schema of the drivers' table"),
    _column("app_table", "--app-table", "drivers' table"),
    _column("app_id_column", "--app-id-column", "driver id column (matched against spec.driverId)"),
    _column("app_status_column", "--app-status-column", "WhatsApp status column (connected/connecting/disconnected)"),
    _column("app_pairing_code_column", "--app-pairing-code-column", "pairing code column"),
    _column("app_pairing_generated_at_column", "--app-pairing-generated-at-column", "pairing code creation column"),
    _column("app_pairing_expires_at_column", "--app-pairing-expires-at-column", "pairing code expiry column"),
    _column("app_pairing_attempts_column", "--app-pairing-attempts-column", "pairing attempts counter column"),
    _column("app_qr_code_column", "--app-qr-code-column", "QR code column (qrcode pairing; unused if absent)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        help_text = f"{s.help} (env {s.env})"
        if s.switch:
            parser.add_argument(s.flag, dest=s.field, action="store_true", default=None, help=help_text)
        elif s.repeatable:
            parser.add_argument(s.flag, dest=s.field, action="append", help=f"{help_text}; repeatable")
        else:
            parser.add_argument(s.flag, dest=s.field, help=help_text)


def _raw(s: Setting, args: argparse.Namespace | None, env: Mapping[str, str]) -> str | None:
    value = getattr(args, s.field, None) if args is not None else None
    if value is True:
        return "true"
    if isinstance(value, list):
        return ",".join(value)
    if value is None:
        value = env.get(s.env)
        if value is None and s.field == "database_url":
            value = env.get("DATABASE_URL") or None
    return value


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Flags win over `WHATSAPP_OPERATOR_*` variables, which win over the defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = _raw(s, args, env)
        if raw is None:
            continue
        try:
            values[s.field] = s.parse(raw)
        except ValueError as exc:
            reason = str(exc)
            raise ConfigError(f"{s.flag} / {s.env}{'' if reason.startswith(':') else ' '}{reason}") from None
    return Config(**values)


def markdown() -> str:
    """docs/settings.md: every setting with its flag, variable and default."""
    lines = [
        "# Settings of `whatsapp-operator run`",
        "",
        "Each is a flag or an environment variable; a flag wins over the variable, which wins over the default.",
        "Generated from `whatsapp_operator/engine/settings.py` by `python -m whatsapp_operator.engine.settings`.",
        "",
        "| flag | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = s.default
        shown = "—" if default in (None, ()) else f"`{default}`"
        lines.append(f"| `{s.flag}` | `{s.env}` | {shown} | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
