"""Driver notifications, without I/O: what a decision is, the texts, and when to try a channel again.

One notification per disconnection episode (the state machine decides, `machine.Notify`), delivered
on each of its channels: `whatsapp` (a message from the server's sender instance), `event` (a
Kubernetes Event on the WhatsAppInstance) and `callback` (a signed POST to the application).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
from collections.abc import Mapping

CHANNELS = ("whatsapp", "event", "callback")
MAX_NAME = 253  # a Kubernetes object name (a DNS subdomain)
KINDS = ("disconnected", "logged_out", "reconnected")


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # refused for good (a number not on WhatsApp, a 4xx): never retried
    DEAD = "dead"  # still failing at the deadline


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """One decision to tell a driver. (instance_uid, episode) names it: there is never a second."""

    instance_uid: str
    episode: datetime.datetime  # when the instance had connected: the episode the driver lost
    namespace: str
    name: str  # the WhatsAppInstance's
    instance: str  # the Evolution instance's: never the sender
    server: str
    driver_id: str
    driver_name: str
    phone: str  # E.164
    kind: str  # "disconnected" | "logged_out" | "reconnected"
    reason: int | None  # Evolution's status reason at the decision
    decided_at: datetime.datetime
    channels: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One channel of one notification, claimed for an attempt (`attempts` counts it)."""

    id: int  # the notification's
    channel: str
    attempts: int
    notification: Notification


@dataclasses.dataclass(frozen=True)
class Delivered:
    at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Retry:
    """Try again later (with backoff), until the deadline."""

    error: str


@dataclasses.dataclass(frozen=True)
class Wait:
    """Not an attempt: the channel cannot be tried yet (the sender instance is not connected)."""

    error: str


@dataclasses.dataclass(frozen=True)
class Fail:
    """Refused for good: retrying cannot help."""

    error: str


Outcome = Delivered | Retry | Wait | Fail


@dataclasses.dataclass(frozen=True)
class DeliveryPolicy:
    deadline: datetime.timedelta = datetime.timedelta(hours=6)  # after the decision: then dead
    backoff: datetime.timedelta = datetime.timedelta(seconds=30)  # before the 2nd attempt; doubles
    max_backoff: datetime.timedelta = datetime.timedelta(minutes=30)
    wait: datetime.timedelta = datetime.timedelta(seconds=30)  # between looks at a sender not ready

    def next_attempt(
        self, delivery: Delivery, outcome: Retry | Wait, now: datetime.datetime
    ) -> datetime.datetime | None:
        """When to try again, or None: past the deadline, the delivery is dead."""
        if isinstance(outcome, Wait):
            delay = self.wait
        else:
            delay = min(self.backoff * 2 ** max(delivery.attempts - 1, 0), self.max_backoff)
        at = now + delay
        return at if at <= delivery.notification.decided_at + self.deadline else None


# The texts: Portuguese, for drivers in Brazil. An EvolutionServer's ConfigMap may replace either
# (`spec.notifier.messagesConfigMapRef`); a template knows `{greeting}` and `{name}` (the first name)
# and nothing else, so no template can carry a pairing code or a QR payload.
MESSAGES = {
    "disconnected": (
        "{greeting} o WhatsApp que você conectou ao app de motorista foi desconectado."
        " Abra o app para conectá-lo de novo e continuar recebendo corridas."
    ),
    "logged_out": (
        "{greeting} a sessão do WhatsApp que você conectou ao app de motorista foi encerrada."
        " Abra o app e pareie o WhatsApp novamente para continuar recebendo corridas."
    ),
    "reconnected": "{greeting} o WhatsApp do seu app de motorista está conectado de novo. Boas corridas!",
}


def templates(overrides: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The texts with a ConfigMap's `overrides` applied, and what was wrong with those left out."""
    chosen, problems = dict(MESSAGES), []
    for key, template in overrides.items():
        if key not in MESSAGES:
            problems.append(f"{key!r} is not a message (known: {', '.join(MESSAGES)})")
            continue
        try:
            text = template.format(greeting="Olá,", name="")
        except (KeyError, IndexError, ValueError) as exc:
            problems.append(
                f"{key!r} is not a valid template ({type(exc).__name__}: {exc}); only {{greeting}} and {{name}}"
            )
            continue
        if not text.strip():
            problems.append(f"{key!r} is empty")
            continue
        chosen[key] = template
    return chosen, problems


def message(notification: Notification, texts: Mapping[str, str] = MESSAGES) -> str:
    name = notification.driver_name.strip().split(" ")[0] if notification.driver_name.strip() else ""
    greeting = f"Olá, {name}," if name else "Olá,"
    return texts[notification.kind].format(greeting=greeting, name=name)


def event_name(notification: Notification) -> str:
    """The DriverNotified Event's name, from what names the notification (instance uid, episode, kind),
    not from an outbox id: memory ids start again at 1 after a restart, and a new Event named like
    an old one would be refused (409) and taken for delivered. A repeat of one notification is that
    harmless 409."""
    # The episode as an instant: Postgres may hand it back in its session's time zone.
    key = f"{notification.instance_uid}/{notification.episode.timestamp()}/{notification.kind}"
    suffix = f".notified-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    # An object name is at most 253 characters, and the part before a dot ends alphanumeric.
    return notification.name[: MAX_NAME - len(suffix)].rstrip(".-") + suffix


def event_message(notification: Notification) -> str:
    """The DriverNotified Event's text: what was said, without the driver's number."""
    what = {"logged_out": "the session ended", "disconnected": "the link dropped", "reconnected": "the link is back"}
    episode = f"{notification.episode:%Y-%m-%dT%H:%M:%SZ}"
    return f"driver {notification.driver_id} notified: {what[notification.kind]} (episode from {episode})"
