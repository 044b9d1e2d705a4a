"""One copy of the Evolution webhook samples, so the envelope, auth, queue and receiver tests post the same thing."""

from __future__ import annotations

import time
from typing import Any

import jwt

SECRET = "the-evolution-server-webhook-secret-32b"
INSTANCE_TOKEN = "0C1F6A52-7D1B-4C55-9C1B-2F1D6B4E9A77"
PAIRING_CODE = "K7Q2M9XA"
QR_PAYLOAD = "2@c2VjcmV0LXFyLXBheWxvYWQ=,Zm9v,YmFy,YmF6"
QR_IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"
NUMBER = "5511987654321"


def token(secret: str = SECRET, **claims: Any) -> str:
    """A token shaped like Evolution's: HS256, iat, exp = iat + 600, app evolution, action webhook.
    A claim given as None is left out."""
    now = int(time.time())
    payload = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook", **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm="HS256")


def envelope(
    event: str = "connection.update",
    data: Any = None,
    *,
    state: str = "open",
    status_reason: int = 200,
    **fields: Any,
) -> dict[str, Any]:
    """What Evolution posts (webhook.controller's emit), with overridable fields. A connection.update
    without `data` reports `state` with `status_reason`."""
    if data is None and event == "connection.update":
        data = {"instance": "drv-1", "state": state, "statusReason": status_reason}
    return {
        "event": event,
        "instance": "drv-1",
        "data": data,
        "destination": "http://operator:8080/webhooks/evolution",
        "date_time": "2025-10-21T10:00:00.000Z",
        "sender": f"{NUMBER}@s.whatsapp.net",
        "server_url": "https://evolution.example",
        "apikey": INSTANCE_TOKEN,
        **fields,
    }


def qrcode_updated(**fields: Any) -> dict[str, Any]:
    """A qrcode.updated envelope carrying the pairing code, the QR payload and its image."""
    qrcode = {"instance": "drv-1", "pairingCode": PAIRING_CODE, "code": QR_PAYLOAD, "base64": QR_IMAGE}
    return envelope("qrcode.updated", {"qrcode": qrcode}, **fields)
