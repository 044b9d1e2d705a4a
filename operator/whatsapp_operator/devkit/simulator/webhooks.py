"""Webhook configuration and delivery the way Evolution does it: envelope, headers, jwt_key, retries."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from whatsapp_operator.devkit.simulator.instance import utc_now_iso

log = logging.getLogger(__name__)

# Evolution's EventController.events: the names a webhook's `events` list may hold.
EVENT_NAMES = (
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE",
    "LOGOUT_INSTANCE",
    "INSTANCE_CREATE",
    "INSTANCE_DELETE",
    "STATUS_INSTANCE",
)

_SENDABLE_URL = re.compile(r"^https?://")


def config_name(event: str) -> str:
    """`connection.update` -> `CONNECTION_UPDATE`, the name used in webhook configuration."""
    return re.sub(r"[.-]", "_", event).upper()


def path_suffix(event: str) -> str:
    """`connection.update` -> `connection-update`, appended to the URL when byEvents is on."""
    return config_name(event).replace("_", "-").lower()


@dataclass(slots=True)
class WebhookConfig:
    """An instance's stored webhook row (one per instance, upserted)."""

    url: str
    enabled: bool = True
    events: list[str] = field(default_factory=list)
    headers: dict[str, Any] | None = None
    by_events: bool = False
    base64: bool = False
    id: str = field(default_factory=lambda: "c" + uuid.uuid4().hex[:24])
    created_at: str = field(default_factory=utc_now_iso)
    updated_at: str = field(default_factory=utc_now_iso)

    @classmethod
    def stored(cls, url: str, enabled: bool, events: list[str], **fields: Any) -> WebhookConfig:
        """Apply Evolution's set() rules: disabled -> no events, enabled with [] -> every event."""
        if not enabled:
            events = []
        elif not events:
            events = list(EVENT_NAMES)
        return cls(url=url, enabled=enabled, events=list(events), **fields)

    @classmethod
    def inline(cls, data: Mapping[str, Any]) -> WebhookConfig:
        """A webhook given inside create (or a scenario): always enabled, whatever `enabled` says."""
        return cls.stored(
            url=data["url"],
            enabled=True,
            events=list(data.get("events") or []),
            headers=dict(data["headers"]) if data.get("headers") is not None else None,
            by_events=bool(data.get("byEvents", False)),
            base64=bool(data.get("base64", False)),
        )

    def wants(self, event: str) -> bool:
        return self.enabled and config_name(event) in self.events

    def target(self, event: str) -> str:
        return f"{self.url}/{path_suffix(event)}" if self.by_events else self.url

    def row(self, instance_id: str) -> dict[str, Any]:
        """The row webhook/set and webhook/find answer with (field names differ from the request's)."""
        return {
            "id": self.id,
            "url": self.url,
            "headers": self.headers,
            "enabled": self.enabled,
            "events": self.events,
            "webhookByEvents": self.by_events,
            "webhookBase64": self.base64,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "instanceId": instance_id,
        }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """WEBHOOK_REQUEST_TIMEOUT_MS and WEBHOOK_RETRY_*; shorten them for demos."""

    max_attempts: int = 10
    initial_delay: float = 5.0
    max_delay: float = 300.0
    jitter: float = 0.2
    exponential: bool = True
    non_retryable: frozenset[int] = frozenset({400, 401, 403, 404, 422})
    timeout: float = 30.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Wait after the `failures`-th failed attempt: doubling, capped, jittered, never below the initial delay."""
        if not self.exponential:
            return self.initial_delay
        base = min(self.initial_delay * 2 ** (failures - 1), self.max_delay)
        return max(self.initial_delay, base + base * self.jitter * rng.uniform(-1, 1))


@dataclass(slots=True)
class Delivery:
    """One delivery attempt, as recorded for inspection."""

    at: float  # seconds since the simulator started
    event: str
    instance: str
    url: str
    attempt: int
    status: int | None = None
    error: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "event": self.event,
            "instance": self.instance,
            "url": self.url,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "payload": self.payload,
        }


class WebhookSender:
    """Fire-and-forget deliveries: each event retries in its own task, so ordering is not guaranteed."""

    def __init__(
        self, policy: RetryPolicy, rng: random.Random, clock: Callable[[], float], record: Callable[[Delivery], None]
    ) -> None:
        self.policy = policy
        self._rng = rng
        self._clock = clock
        self._record = record
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.policy.timeout))

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def send(self, config: WebhookConfig, envelope: dict[str, Any]) -> asyncio.Task[None] | None:
        """Start delivering one event; None when Evolution would skip it silently (no scheme, or not running)."""
        if self._session is None or not _SENDABLE_URL.match(config.url):
            return None
        headers = {str(key): str(value) for key, value in (config.headers or {}).items() if key != "jwt_key"}
        if config.headers and "jwt_key" in config.headers:
            headers["Authorization"] = "Bearer " + _webhook_jwt(str(config.headers["jwt_key"]))
        task = asyncio.get_running_loop().create_task(
            self._deliver(self._session, config.target(envelope["event"]), headers, envelope)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str], envelope: dict[str, Any]
    ) -> None:
        for attempt in range(1, self.policy.max_attempts + 1):
            record = Delivery(self._clock(), envelope["event"], envelope["instance"], url, attempt, payload=envelope)
            self._record(record)
            try:
                async with session.post(url, json=envelope, headers=headers) as response:
                    record.status = response.status
            except TimeoutError:
                record.error = "timeout"
            except aiohttp.ClientError as exc:
                record.error = f"{type(exc).__name__}: {exc}"
            if record.ok or record.status in self.policy.non_retryable:
                return
            if attempt < self.policy.max_attempts:
                await asyncio.sleep(self.policy.delay(attempt, self._rng))
        log.warning("webhook %s for %s to %s failed %d times", envelope["event"], envelope["instance"], url, attempt)


def _webhook_jwt(key: str) -> str:
    """Evolution's bearer token for `jwt_key`: HS256, ten minutes, real wall-clock time (receivers check it)."""
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}, key, algorithm="HS256")
