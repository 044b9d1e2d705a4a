"""Phases of a WhatsAppInstance, the Evolution states they are read from, and what each phase means
for the application: its database's `whatsapp_status` and the status API's `state`."""

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
    UNRESPONSIVE = "Unresponsive"  # Evolution says open, the liveness checks say the socket is dead
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
    Phase.UNRESPONSIVE: "disconnected",  # nothing is sent or received: not connected for the application
    Phase.DISCONNECTED: "disconnected",
    Phase.LOGGED_OUT: "disconnected",
    Phase.NOT_FOUND: "disconnected",
    Phase.UNKNOWN: None,
    Phase.SUSPENDED: None,
}


class HookState(enum.StrEnum):
    """The status API's `state`: the values the application's `useWhatsappStatus` hook knows (the
    original plan, Phase 5)."""

    OPEN = "open"
    CLOSE = "close"
    CONNECTING = "connecting"
    UNKNOWN = "UNKNOWN"
    NOT_FOUND = "NOT_FOUND"


# The status API's `state` per phase (docs/status-api.md): `open` only when the driver can be reached,
# UNKNOWN whenever the operator does not look (probes failing, probing suspended).
HOOK_STATE: dict[Phase, HookState] = {
    Phase.PENDING: HookState.CONNECTING,
    Phase.PAIRING: HookState.CONNECTING,
    Phase.CONNECTING: HookState.CONNECTING,
    Phase.CONNECTED: HookState.OPEN,
    Phase.UNRESPONSIVE: HookState.CLOSE,
    Phase.DISCONNECTED: HookState.CLOSE,
    Phase.LOGGED_OUT: HookState.CLOSE,
    Phase.NOT_FOUND: HookState.NOT_FOUND,
    Phase.UNKNOWN: HookState.UNKNOWN,
    Phase.SUSPENDED: HookState.UNKNOWN,
}
