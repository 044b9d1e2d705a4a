"""The notification texts and the retry policy: when a failing channel is tried again, and when it is dead."""

from __future__ import annotations

import dataclasses
import datetime
import re

from whatsapp_operator.core.notifications import (
    MESSAGES,
    Delivery,
    DeliveryPolicy,
    Notification,
    Retry,
    Wait,
    event_name,
    message,
    templates,
)

T0 = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)


def notification(kind: str = "logged_out", driver_name: str = "Maria Souza") -> Notification:
    return Notification(
        instance_uid="uid-1",
        episode=T0 - datetime.timedelta(hours=1),
        namespace="drivers",
        name="driver-a",
        instance="driver-a",
        server="default",
        driver_id="a",
        driver_name=driver_name,
        phone="+5511987654321",
        kind=kind,
        reason=401,
        decided_at=T0,
        channels=("whatsapp",),
    )


def delivery(attempts: int) -> Delivery:
    return Delivery(1, "whatsapp", attempts, notification())


def test_texts_greet_the_driver_by_first_name_and_say_what_to_do() -> None:
    assert message(notification("logged_out")).startswith("Olá, Maria, a sessão do WhatsApp")
    assert "pareie o WhatsApp novamente" in message(notification("logged_out"))
    assert "foi desconectado" in message(notification("disconnected"))
    for nameless in ("", "  "):
        assert message(notification(driver_name=nameless)).startswith("Olá, a sessão")


def test_failed_attempts_back_off_doubling_up_to_the_cap() -> None:
    policy = DeliveryPolicy()
    delays = [(policy.next_attempt(delivery(n), Retry("5xx"), T0) - T0).total_seconds() for n in range(1, 9)]  # type: ignore[operator]
    assert delays == [30, 60, 120, 240, 480, 960, 1800, 1800]


def test_a_sender_not_ready_is_looked_at_again_soon_whatever_the_attempts() -> None:
    again = DeliveryPolicy().next_attempt(delivery(7), Wait("sender closed"), T0)
    assert again == T0 + datetime.timedelta(seconds=30)


def test_past_the_deadline_a_delivery_is_dead() -> None:
    policy = DeliveryPolicy(deadline=datetime.timedelta(hours=6))
    late = T0 + datetime.timedelta(hours=6) - datetime.timedelta(seconds=10)
    assert policy.next_attempt(delivery(1), Retry("5xx"), late) is None
    assert policy.next_attempt(delivery(1), Wait("sender closed"), late) is None
    assert policy.next_attempt(delivery(1), Retry("5xx"), T0 + datetime.timedelta(hours=5)) is not None


def test_a_configmap_replaces_texts_and_what_it_gets_wrong_is_named() -> None:
    texts, problems = templates(
        {"logged_out": "{greeting} pareie de novo, {name}.", "disconnected": "{code}", "x": ""}
    )
    assert message(notification("logged_out"), texts) == "Olá, Maria, pareie de novo, Maria."
    assert texts["disconnected"] == MESSAGES["disconnected"], "a bad template leaves the default"
    assert problems == [
        "'disconnected' is not a valid template (KeyError: 'code'); only {greeting} and {name}",
        "'x' is not a message (known: disconnected, logged_out, reconnected)",
    ]
    assert templates({"logged_out": "  "})[1] == ["'logged_out' is empty"]


def test_an_event_name_is_a_valid_object_name_for_the_longest_instance_names() -> None:
    """The DriverNotified Event is named after its instance: a 253-character instance name must
    still give a name the API server takes (at most 253 characters, each dot-separated part ending
    alphanumeric), distinct per episode."""
    subdomain = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
    assert event_name(notification()).startswith("driver-a.notified-")
    for long in ("d" * 253, "d" * 226 + "-" + "d" * 26, "a" * 200 + "." + "b" * 52):
        n = dataclasses.replace(notification(), name=long)
        name = event_name(n)
        assert len(name) <= 253
        assert subdomain.fullmatch(name), name
        assert name != event_name(dataclasses.replace(n, episode=T0))
        assert name != event_name(dataclasses.replace(n, kind="reconnected")), "the episode's other message"
