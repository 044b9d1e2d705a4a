"""Evolution's webhook envelope: validation, the events the operator acts on, and what may be stored.

Pure: no I/O. `qrcode.updated` carries pairing codes and QR payloads, which are credentials, and the
envelope's `apikey` may be the instance token: neither is ever stored or logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any

# The events that say something about an instance's connection; others are acknowledged and dropped.
RELEVANT = frozenset(
    {
        "connection.update",
        "qrcode.updated",
        "status.instance",
        "logout.instance",
        "remove.instance",
        "instance.create",
        "instance.delete",
    }
)
STATES = frozenset({"open", "connecting", "close", "refused"})
_EVENT = re.compile(r"[a-z]+(?:[._-][a-z]+)*")
_SECRET_QR_FIELDS = ("pairingCode", "code", "base64")
MAX_INSTANCE_NAME = 255


class InvalidWebhook(ValueError):
    """The request is not an Evolution webhook we can take: answered 400 (Evolution does not retry it)."""


def path_suffix(event: str) -> str:
    """`connection.update` -> `connection-update`: the segment Evolution appends with byEvents on."""
    return re.sub(r"[._]", "-", event)


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    event: str
    instance: str
    data: Any
    date_time: str | None = None
    server_url: str | None = None

    @property
    def relevant(self) -> bool:
        return self.event in RELEVANT

    @property
    def state(self) -> str | None:
        """`connection.update`'s state (`refused` exists only here)."""
        return self.data.get("state") if self.event == "connection.update" else None

    def stored(self) -> dict[str, Any]:
        """The form kept in the inbox: the envelope without credentials."""
        data = self.data
        if self.event == "qrcode.updated" and isinstance(data, dict) and isinstance(data.get("qrcode"), dict):
            qrcode = {k: v for k, v in data["qrcode"].items() if k not in _SECRET_QR_FIELDS}
            data = {**data, "qrcode": qrcode}
        return {
            "event": self.event,
            "instance": self.instance,
            "data": data,
            "date_time": self.date_time,
            "server_url": self.server_url,
        }

    def dedup_key(self) -> str:
        """Equal for every delivery of one event (Evolution's retries resend the same envelope; the
        instance and global webhooks differ only in `destination`), and computed without credentials."""
        canonical = json.dumps(self.stored(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def parse(body: bytes, suffix: str | None = None) -> Envelope:
    """`suffix`: the by-events path segment the request came on, which must name the body's event."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidWebhook(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidWebhook("the body is not JSON the operator can read: it is nested too deeply") from None
    if not isinstance(raw, dict):
        raise InvalidWebhook("the body must be a JSON object")
    event, instance = raw.get("event"), raw.get("instance")
    if not isinstance(event, str) or not _EVENT.fullmatch(event):
        raise InvalidWebhook("'event' must be an event name such as 'connection.update'")
    if not isinstance(instance, str) or not instance or len(instance) > MAX_INSTANCE_NAME:
        raise InvalidWebhook(f"'instance' must be a non-empty string of at most {MAX_INSTANCE_NAME} characters")
    if suffix is not None and path_suffix(event) != suffix:
        raise InvalidWebhook(f"the path ends in {suffix!r} but the event is {event!r}")
    data = raw.get("data")
    if event == "connection.update" and not (isinstance(data, dict) and data.get("state") in STATES):
        raise InvalidWebhook(f"connection.update needs data.state, one of {sorted(STATES)}")
    date_time, server_url = raw.get("date_time"), raw.get("server_url")
    envelope = Envelope(
        event=event,
        instance=instance,
        data=data,
        date_time=date_time if isinstance(date_time, str) else None,
        server_url=server_url if isinstance(server_url, str) else None,
    )
    if envelope.relevant and not _storable(envelope.stored()):
        # Postgres would refuse it on every retry (and the receiver would answer 503, which Evolution retries).
        raise InvalidWebhook("the webhook holds a NUL character, a lone surrogate, NaN or an infinite number")
    return envelope


def _storable(value: Any) -> bool:
    """Whether Postgres' jsonb and text can hold `value`: no NUL, no lone surrogate, only finite numbers."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True
