"""The writes the mirror queues per instance, in the order they were recorded."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from whatsapp_operator.core.notifications import Notification
from whatsapp_operator.core.phases import Phase


@dataclass(frozen=True)
class PhaseChange:
    event_id: uuid.UUID
    namespace: str
    name: str
    evolution_instance: str
    driver_id: str
    from_phase: Phase | None
    to_phase: Phase
    state: str | None
    reason: int | None
    forced: bool
    at: datetime
    notification: Notification | None = None  # decided with this change: inserted in its transaction


@dataclass(frozen=True)
class PairingCode:
    driver_id: str
    code: str | None = field(repr=False)  # a credential: keep it out of any repr that reaches a log
    generated_at: datetime
    expires_at: datetime
    first: bool = False  # the first code of a pairing attempt: the attempt count starts again
    qr: str | None = field(default=None, repr=False)  # qrcode pairing: the QR's payload, a credential too


@dataclass(frozen=True)
class ClearPairingCode:
    driver_id: str


@dataclass(frozen=True)
class NotificationDecided:
    """A decision without a phase change (a forced logout), or re-derived from `.status` at start."""

    notification: Notification


@dataclass(frozen=True)
class Repair:
    """The driver's row disagreed with the operator's view (db.app_table.Drift): rewrite it, and keep
    a history row that says what was found, if the rewrite changed anything."""

    event_id: uuid.UUID
    namespace: str
    name: str
    evolution_instance: str
    driver_id: str
    phase: Phase
    status: str | None  # None: leave the status column alone
    clear_code: bool
    found: str
    at: datetime


Write = PhaseChange | PairingCode | ClearPairingCode | NotificationDecided | Repair


@dataclass(frozen=True)
class Queued:
    write: Write
    enqueued_at: float = field(default_factory=time.monotonic)


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
