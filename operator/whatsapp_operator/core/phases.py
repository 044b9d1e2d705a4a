"""Phases of a WhatsAppInstance, the Evolution states they are read from, and what each phase means
for the application's database."""

from __future__ import annotations

import enum


class EvolutionState(enum.StrEnum):
    """An instance's connection state as Evolution's API reports it (`evolution.ConnectionState`).
    Webhooks also carry `refused` (the QR limit), which the API never answers."""

    OPEN = "open"
    CONNECTING = "connecting"
    CLOSE = "close"


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PAIRING = "Pairing"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"
    LOGGED_OUT = "LoggedOut"
    NOT_FOUND = "NotFound"
    UNKNOWN = "Unknown"
    SUSPENDED = "Suspended"


# `usuarios.whatsapp_status` per phase; None means "leave the column as it is" (we do not know better).
DB_STATUS: dict[Phase, str | None] = {
    Phase.PENDING: "connecting",
    Phase.PAIRING: "connecting",
    Phase.CONNECTING: "connecting",
    Phase.CONNECTED: "connected",
    Phase.DISCONNECTED: "disconnected",
    Phase.LOGGED_OUT: "disconnected",
    Phase.NOT_FOUND: "disconnected",
    Phase.UNKNOWN: None,
    Phase.SUSPENDED: None,
}
