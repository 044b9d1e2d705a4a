"""The mirror's verdict on one instance, shown as its condition DatabaseSynced."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SyncReason(enum.StrEnum):
    SYNCED = "Synced"
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    DRIVER_ROW_MISSING = "DriverRowMissing"
    DRIVER_ROW_REJECTED = "DriverRowRejected"


@dataclass(frozen=True)
class SyncStatus:
    """An instance's DatabaseSynced condition; equality ignores the message and the pending count so
    that the callback fires on real state changes only."""

    synced: bool
    reason: SyncReason
    message: str = field(default="", compare=False)
    pending: int = field(default=0, compare=False)


SYNCED = SyncStatus(True, SyncReason.SYNCED, "the database matches the last observed phase")
