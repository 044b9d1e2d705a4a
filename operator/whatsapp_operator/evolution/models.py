"""Typed answers of Evolution API v2.3.6, read from its JSON.

Parsers raise KeyError, TypeError or ValueError on a body of the wrong shape; the client turns those
into `MalformedResponse`. Pairing codes, QR payloads, instance tokens and webhook headers are
credentials, so they are left out of every `repr` and can never reach a log line that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

# One enum of Evolution's states for the whole operator: core's, which the state machine reads.
from whatsapp_operator.core.phases import EvolutionState as ConnectionState


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is {type(value).__name__}, not a string")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _str(data, key)


def _optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"{key} is {type(value).__name__}, not an integer")
    return value


def _optional_state(data: Mapping[str, Any], key: str) -> ConnectionState | None:
    value = _optional_str(data, key)
    return None if value is None else ConnectionState(value)


def _object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class LiveState:
    """``{"instance": {"instanceName", "state"}}``: the state Evolution holds in memory, as connectionState
    answers it (and connect on an open instance); fetchInstances' `connectionStatus` lags it.

    `state` is None when the instance exists in Evolution's database but is not loaded in its memory.
    """

    name: str
    state: ConnectionState | None

    @classmethod
    def from_json(cls, body: Any) -> Self:
        instance = _object(_object(body)["instance"])
        return cls(name=_str(instance, "instanceName"), state=_optional_state(instance, "state"))


@dataclass(frozen=True)
class QRCode:
    """What connect returns while the instance is (or starts) connecting.

    Any field may be missing right after the call (Evolution waits only 2 s for the socket) or stale
    from a previous cycle; `count` is the number of QR refreshes so far. `code` is the raw QR payload,
    not the pairing code; `base64` is the QR as a PNG data URL.
    """

    count: int
    pairing_code: str | None = field(default=None, repr=False)
    code: str | None = field(default=None, repr=False)
    base64: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, body: Any) -> Self:
        data = _object(body)
        return cls(
            count=_optional_int(data, "count") or 0,
            pairing_code=_optional_str(data, "pairingCode"),
            code=_optional_str(data, "code"),
            base64=_optional_str(data, "base64"),
        )


ConnectResult = LiveState | QRCode
"""connect and restart answer either "already open" (a `LiveState`) or the current `QRCode`."""


def connect_result(body: Any) -> ConnectResult:
    return LiveState.from_json(body) if "instance" in _object(body) else QRCode.from_json(body)


@dataclass(frozen=True)
class CreatedInstance:
    """create's answer; `token` is the instance's own API key (``hash``), `qrcode` only with ``qrcode=True``."""

    name: str
    instance_id: str
    status: ConnectionState | None
    token: str = field(repr=False)
    qrcode: QRCode | None = None

    @classmethod
    def from_json(cls, body: Any) -> Self:
        data = _object(body)
        instance = _object(data["instance"])
        qrcode = data.get("qrcode")
        return cls(
            name=_str(instance, "instanceName"),
            instance_id=_str(instance, "instanceId"),
            status=_optional_state(instance, "status"),
            token=_str(data, "hash"),
            qrcode=None if qrcode is None else QRCode.from_json(qrcode),
        )


@dataclass(frozen=True)
class InstanceInfo:
    """A fetchInstances row. `connection_status` is the database's value and lags the live state (use
    connection_state for that); the row is for the owner's identity and the last disconnection."""

    id: str
    name: str
    connection_status: ConnectionState | None
    owner_jid: str | None
    profile_name: str | None
    number: str | None
    integration: str | None
    disconnection_reason_code: int | None
    disconnection_at: datetime | None

    @classmethod
    def from_json(cls, row: Any) -> Self:
        data = _object(row)
        disconnection_at = _optional_str(data, "disconnectionAt")
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name"),
            connection_status=_optional_state(data, "connectionStatus"),
            owner_jid=_optional_str(data, "ownerJid"),
            profile_name=_optional_str(data, "profileName"),
            number=_optional_str(data, "number"),
            integration=_optional_str(data, "integration"),
            disconnection_reason_code=_optional_int(data, "disconnectionReasonCode"),
            disconnection_at=None if disconnection_at is None else datetime.fromisoformat(disconnection_at),
        )


def instance_list(body: Any) -> list[InstanceInfo]:
    if not isinstance(body, list):
        raise TypeError(f"expected a JSON array, got {type(body).__name__}")
    return [InstanceInfo.from_json(row) for row in body]


@dataclass(frozen=True)
class NumberCheck:
    """One entry of onWhatsapp's answer: whether WhatsApp knows that JID."""

    jid: str
    exists: bool

    @classmethod
    def from_json(cls, entry: Any) -> Self:
        data = _object(entry)
        exists = data.get("exists")
        if not isinstance(exists, bool):
            raise TypeError(f"exists must be a boolean, got {type(exists).__name__}")
        return cls(jid=_str(data, "jid"), exists=exists)


def number_checks(body: Any) -> list[NumberCheck]:
    if not isinstance(body, list):
        raise TypeError(f"expected a JSON array, got {type(body).__name__}")
    return [NumberCheck.from_json(entry) for entry in body]


@dataclass(frozen=True)
class SentMessage:
    """sendText's answer: the message key Evolution will report in later message webhooks."""

    id: str
    remote_jid: str
    status: str | None

    @classmethod
    def from_json(cls, body: Any) -> Self:
        data = _object(body)
        key = _object(data["key"])
        return cls(id=_str(key, "id"), remote_jid=_str(key, "remoteJid"), status=_optional_str(data, "status"))


@dataclass(frozen=True)
class WebhookSettings:
    """An instance's webhook. `events` are UPPER_SNAKE names (``CONNECTION_UPDATE``); empty means all.
    `headers` are sent verbatim on every delivery and usually hold the shared secret (or ``jwt_key``)."""

    url: str
    events: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    enabled: bool = True
    by_events: bool = False
    base64: bool = False

    def to_json(self) -> dict[str, Any]:
        """The request form (create's inline ``webhook``, and set's nested one); `events` always a list,
        because Evolution fails on a missing one."""
        return {
            "enabled": self.enabled,
            "url": self.url,
            "events": list(self.events),
            "headers": dict(self.headers),
            "byEvents": self.by_events,
            "base64": self.base64,
        }

    @classmethod
    def from_stored(cls, row: Any) -> Self:
        """The stored form (set's and find's answers), whose names differ from the request's."""
        data = _object(row)
        events = data.get("events") or []
        headers = _object(data.get("headers") or {})
        if not isinstance(events, list) or not all(isinstance(event, str) for event in events):
            raise TypeError("events must be a list of strings")
        if not all(isinstance(value, str) for value in headers.values()):
            raise TypeError("header values must be strings")
        return cls(
            url=_str(data, "url"),
            events=tuple(events),
            headers=dict(headers),
            enabled=bool(data.get("enabled")),
            by_events=bool(data.get("webhookByEvents")),
            base64=bool(data.get("webhookBase64")),
        )
