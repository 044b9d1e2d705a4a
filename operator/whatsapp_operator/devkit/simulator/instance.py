"""One simulated instance: Evolution's Baileys connection life cycle, driven by event-loop timers.

An instance holds at most one timer, armed only while something is about to happen (next QR, reconnect,
logout), so ten thousand idle instances cost no tasks and no callbacks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from whatsapp_operator.devkit.simulator.webhooks import WebhookConfig

# Baileys reasons after which Evolution gives up (the session is gone); on any other it reconnects at once,
# without a close webhook.
TERMINAL_REASONS = frozenset({401, 402, 403, 406})

STARTS = ("open", "connecting", "pairing", "close")
ACTIONS = ("drop", "disconnect", "stick", "pair", "qr_limit", "vanish", "zombie")
DEFAULT_REASONS = {"drop": 428, "disconnect": 401}

# The Setting row Evolution writes at create when no setting is given.
DEFAULT_SETTINGS: dict[str, Any] = {
    "rejectCall": False,
    "msgCall": "",
    "groupsIgnore": False,
    "alwaysOnline": False,
    "readMessages": False,
    "readStatus": False,
    "syncFullHistory": False,
    "wavoipToken": "",
}

# Baileys' pairing-code alphabet (Crockford base32 without 0, I, O, U).
PAIRING_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"


class ActionNotApplicable(RuntimeError):
    """The action makes no sense in the instance's current state (e.g. `pair` on an open instance)."""


def validate_action(action: str, reason: int | None, heals: bool | None = None) -> int | None:
    """Check an action, its reason and `heals` (zombie only); returns the reason to use (the action's
    default if none given)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})")
    if heals is not None and (action != "zombie" or not isinstance(heals, bool)):
        raise ValueError("heals is a boolean, and only zombie takes it")
    if reason is None:
        return DEFAULT_REASONS.get(action)
    if isinstance(reason, bool) or not isinstance(reason, int):
        raise ValueError(f"reason must be an integer status code, not {reason!r}")
    if action == "drop" and reason in TERMINAL_REASONS:
        raise ValueError(f"drop needs a transient reason; {reason} is terminal (use disconnect)")
    if action == "disconnect" and reason not in TERMINAL_REASONS:
        raise ValueError(f"disconnect needs a terminal reason ({', '.join(map(str, sorted(TERMINAL_REASONS)))})")
    if action not in DEFAULT_REASONS:
        raise ValueError(f"{action} takes no reason")
    return reason


def utc_now_iso() -> str:
    """Timestamps as Evolution prints them (UTC, milliseconds, trailing Z)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Timings:
    """Delays of the simulated server, in seconds of the event loop's clock."""

    qr_interval: float = 45.0  # Evolution's qrTimeout: every QR is replaced after this long
    first_qr_delay: float = 1.0  # socket start -> first QR (pairing code included)
    reconnect_delay: float = 3.0  # a paired socket's reconnect -> open
    logout_delay: float = 0.2  # logout answers first; the 401 close follows (fire and forget)
    removal_delay: float = 0.5  # REMOVE_INSTANCE delivered -> the instance's rows deleted (its cleanup)
    connect_wait: float = 2.0  # GET connect sleeps this long after starting a socket
    create_qr_wait: float = 5.0  # create with qrcode:true sleeps this long


class InstanceHost(Protocol):
    """What an instance needs from the simulator that owns it."""

    timings: Timings
    qr_limit: int
    rng: random.Random

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def emit(self, instance: SimInstance, event: str, data: Any) -> asyncio.Task[None] | None: ...


@dataclass(slots=True, eq=False)
class SimInstance:
    """In-memory state (what connectionState shows) and DB row (what fetchInstances shows) of one instance."""

    name: str
    host: InstanceHost = field(repr=False)
    token: str
    number: str | None = None  # the DB `number` given at create
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    integration: str = "WHATSAPP-BAILEYS"
    state: str = "close"
    status_reason: int | None = None
    last_disconnect_reason: int | None = None
    # Evolution's `instance.qrcode`: the QR counter and the last QR's fields, never cleared on open or logout.
    qr: dict[str, Any] = field(default_factory=lambda: {"count": 0})
    phone_number: str | None = None  # pairing-mode number of the current socket, reused by reconnects
    paired: bool = False  # has session credentials: a new socket opens instead of showing QR codes
    stuck: bool = False
    # Open in memory, dead on the wire (contract 2.13); a reconnect heals it if `zombie_heals`.
    zombie: bool = False
    zombie_heals: bool = True
    wuid: str | None = None
    profile_name: str | None = None
    profile_picture_url: str | None = None
    db_status: str = "close"
    disconnection_reason_code: int | None = None
    disconnection_object: str | None = None
    disconnection_at: str | None = None
    created_at: str = field(default_factory=utc_now_iso)
    updated_at: str = field(default_factory=utc_now_iso)
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    webhook: WebhookConfig | None = None
    deleting: bool = False
    _qr_live: bool = False  # the current socket has shown a QR that can still be scanned
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def qr_count(self) -> int:
        return int(self.qr.get("count", 0))

    @property
    def pairing_code(self) -> str | None:
        return self.qr.get("pairingCode")

    def qr_object(self) -> dict[str, Any]:
        """GET connect's body while connecting: whatever the last QR left, possibly just {count}."""
        return {key: self.qr[key] for key in ("pairingCode", "code", "base64", "count") if key in self.qr}

    def snapshot(self) -> dict[str, Any]:
        """The admin API's view of the instance."""
        return {
            "name": self.name,
            "id": self.id,
            "state": self.state,
            "status_reason": self.status_reason,
            "last_disconnect_reason": self.last_disconnect_reason,
            "db_status": self.db_status,
            "token": self.token,
            "number": self.number,
            "phone_number": self.phone_number,
            "qr_count": self.qr_count,
            "pairing_code": self.pairing_code,
            "paired": self.paired,
            "stuck": self.stuck,
            "zombie": self.zombie,
            "wuid": self.wuid,
            "webhook_url": self.webhook.url if self.webhook else None,
            "deleting": self.deleting,
        }

    # ----------------------------------------------------------------------------------------- sockets

    def begin(self, start: str) -> None:
        """Put a pre-existing instance in a scenario start state, as if the server had been up for a while."""
        if start == "open":
            self._mark_open()
        elif start == "connecting":
            self.stuck = True
            self._set_state("connecting", 200)
            self.db_status = "connecting"
        elif start == "pairing":
            self.start_socket(self.number or _fake_number(self.name))
            self._next_qr()  # already waiting for a scan: the first code is out
        elif start != "close":
            raise ValueError(f"start must be one of {', '.join(STARTS)}, not {start!r}")

    def start_socket(self, number: str | None) -> None:
        """Baileys' createClient: announce `connecting`, then open (paired) or show QR codes (not paired)."""
        self.zombie = self.zombie and not self.zombie_heals
        self.phone_number = number or None
        self._qr_live = False
        self._set_state("connecting", 200)
        self.host.emit(self, "connection.update", {"instance": self.name, "state": "connecting", "statusReason": 200})
        if self.stuck:
            self.cancel()
        elif self.paired:
            self._schedule(self.host.timings.reconnect_delay, self._open)
        else:
            self._schedule(self.host.timings.first_qr_delay, self._next_qr)

    def restart(self) -> None:
        """POST restart: the socket is closed with a non-Boom error, which Evolution treats as transient."""
        self._schedule(0, self._reconnect)

    def logout(self) -> None:
        """DELETE logout: answered at once, the 401 close and its webhooks follow shortly (fire and forget)."""
        self._schedule(self.host.timings.logout_delay, lambda: self.terminate(401, "Intentional Logout"))

    def terminate(self, code: int, message: str) -> None:
        """A terminal close: session deleted, status/logout/close webhooks, DB updated, instance kept."""
        self.cancel()
        self.paired = self.stuck = self.zombie = self._qr_live = False
        self.last_disconnect_reason = code
        self._set_state("close", code)
        now = utc_now_iso()
        payload = {"statusCode": code, "error": HTTPStatus(code).phrase, "message": message}
        error = {"data": None, "isBoom": True, "isServer": False, "output": {"statusCode": code, "payload": payload}}
        last_disconnect = {"error": error, "date": now}
        self.db_status = "close"
        self.disconnection_reason_code = code
        self.disconnection_object = json.dumps(last_disconnect, separators=(",", ":"))
        self.disconnection_at = now
        self.updated_at = now
        self.host.emit(
            self,
            "status.instance",
            {
                "instance": self.name,
                "status": "closed",
                "disconnectionAt": now,
                "disconnectionReasonCode": code,
                "disconnectionObject": self.disconnection_object,
            },
        )
        self.host.emit(self, "logout.instance", None)
        self.host.emit(self, "connection.update", {"instance": self.name, "state": "close", "statusReason": code})

    def cancel(self) -> None:
        """Disarm the pending timer (instance removed, simulator stopped, or a new plan)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ----------------------------------------------------------------------------------------- actions

    def act(self, action: str, reason: int | None, heals: bool | None = None) -> None:
        """Apply a scenario action (all but `vanish`, which the simulator handles)."""
        if action == "stick":
            self._stick()
            return
        if action == "zombie":
            if self.state != "open":
                raise ActionNotApplicable(f"zombie needs an open instance; {self.name} is {self.state}")
            self.zombie, self.zombie_heals = True, heals is not False
            return
        if self.state != "connecting" and action in ("pair", "qr_limit"):
            raise ActionNotApplicable(f"{action} needs a connecting instance; {self.name} is {self.state}")
        if self.state == "close" and action in ("drop", "disconnect"):
            raise ActionNotApplicable(f"{action} needs an open or connecting instance; {self.name} is close")
        if action == "drop":
            self.last_disconnect_reason = reason
            self._reconnect()
        elif action == "disconnect":
            self.terminate(reason or 401, "Connection Failure")
        elif action == "pair":
            self._pair()
        elif action == "qr_limit":
            self._refuse()
        else:
            raise ValueError(f"unknown action {action!r}")

    def _stick(self) -> None:
        """Connecting for good: no QR, no open, until a logout (which clears it)."""
        self.stuck = True
        if self.state == "connecting":
            self.cancel()
            self._qr_live = False
        else:
            self.start_socket(self.phone_number)

    def _pair(self) -> None:
        """The phone scanned the QR or typed the code: WhatsApp asks for a restart (515), the new socket opens."""
        if self.stuck or not self._qr_live:
            raise ActionNotApplicable(f"{self.name} has no QR code or pairing code outstanding")
        self.paired = True
        self.last_disconnect_reason = 515
        self._reconnect()

    # ----------------------------------------------------------------------------------------- internals

    def _reconnect(self) -> None:
        """Evolution's answer to a transient close: a new socket at once, no close webhook."""
        self.start_socket(self.phone_number)

    def _next_qr(self) -> None:
        rng = self.host.rng
        if self.qr_count >= self.host.qr_limit:
            self._refuse()
            return
        payload = ",".join(
            [
                "2@" + base64.b64encode(rng.randbytes(48)).decode(),
                *(base64.b64encode(rng.randbytes(32)).decode() for _ in range(3)),
            ]
        )
        pairing_code = "".join(rng.choices(PAIRING_ALPHABET, k=8)) if self.phone_number else None
        image = "data:image/png;base64," + base64.b64encode(_fake_qr_png(payload)).decode()
        self.qr.update(pairingCode=pairing_code, code=payload, base64=image, count=self.qr_count + 1)
        self._qr_live = True
        self.db_status = "connecting"
        self.host.emit(
            self,
            "qrcode.updated",
            {"qrcode": {"instance": self.name, "pairingCode": pairing_code, "code": payload, "base64": image}},
        )
        self._schedule(self.host.timings.qr_interval, self._next_qr)

    def _refuse(self) -> None:
        """QR limit reached: `refused` in webhooks only, then close with the counter reset; the DB is not told."""
        self.host.emit(
            self, "qrcode.updated", {"message": "QR code limit reached, please login again", "statusCode": 500}
        )
        self.host.emit(
            self,
            "connection.update",
            _without_none(
                {
                    "instance": self.name,
                    "state": "refused",
                    "statusReason": 428,
                    "wuid": self.wuid,
                    "profileName": self.profile_name,
                    "profilePictureUrl": self.profile_picture_url,
                }
            ),
        )
        self.cancel()
        self._qr_live = False
        self.qr = {"count": 0}
        self.state = "close"

    def _open(self) -> None:
        self._timer = None
        self._mark_open()
        self.host.emit(
            self,
            "connection.update",
            {
                "instance": self.name,
                "wuid": self.wuid,
                "profileName": self.profile_name,
                "profilePictureUrl": self.profile_picture_url,
                "state": "open",
                "statusReason": 200,
            },
        )

    def _mark_open(self) -> None:
        digits = self.phone_number or self.number or _fake_number(self.name)
        self.paired = True
        self.wuid = f"{digits}@s.whatsapp.net"
        self.profile_name = f"Sim {self.name}"
        self.profile_picture_url = f"https://pps.whatsapp.net/v/sim/{digits}.jpg"
        self._set_state("open", 200)
        self.db_status = "open"
        self.updated_at = utc_now_iso()

    def _set_state(self, state: str, reason: int) -> None:
        self.state = state
        self.status_reason = reason

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        self.cancel()
        self._timer = self.host.loop.call_later(delay, callback)


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    """JavaScript drops undefined fields when serialising."""
    return {key: value for key, value in data.items() if value is not None}


def _fake_number(name: str) -> str:
    """A stable Brazilian mobile number for an instance paired by QR (the scanning phone is unknown)."""
    return "55119" + str(int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10**8).zfill(8)


def _fake_qr_png(payload: str) -> bytes:
    """A small valid PNG that differs per QR payload (not scannable; a browser can display it)."""
    bits = hashlib.sha256(payload.encode()).digest()
    rows = b"".join(b"\x00" + bits[row * 2 : row * 2 + 2] for row in range(16))  # 16x16, 1 bit per pixel

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 16, 16, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
