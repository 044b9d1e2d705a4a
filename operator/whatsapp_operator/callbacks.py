"""The application's notification callback: a JSON POST signed as Standard Webhooks specifies.

Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the base64 part of a `whsec_` secret),
so the application verifies it with any Standard Webhooks library. The answer is translated into a
delivery outcome here and only here: 2xx delivered; 408, 429, 5xx and no answer retried; any other
4xx failed at once (the application refused it, and would again).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
from typing import Any

import httpx

from whatsapp_operator.core.notifications import Delivered, Fail, Outcome, Retry

SECRET_PREFIX = "whsec_"
_RETRIED = {408, 429}


class CallbackSecretInvalid(ValueError):
    """The Secret's value is not `whsec_` followed by base64."""


def signing_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise CallbackSecretInvalid("the callback secret must be whsec_ followed by base64") from None


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def post(
    client: httpx.AsyncClient, url: str, key: bytes, message_id: str, payload: dict[str, Any], now: datetime.datetime
) -> Outcome:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Retry(f"callback unreachable: {type(exc).__name__}")
    if response.is_success:
        return Delivered(now)
    error = f"callback answered HTTP {response.status_code}"
    if 400 <= response.status_code < 500 and response.status_code not in _RETRIED:
        return Fail(error)
    return Retry(error)
