"""The three ways a notification reaches someone, each attempt turned into an `Outcome`.

- `whatsapp`: a text from the EvolutionServer's sender instance (never the driver's own) to the
  driver's number. A sender that is not `open` is no attempt: the message waits (`Wait`) and the
  server's SenderReady condition says why. A number not on WhatsApp fails at once.
- `event`: a Warning Event `DriverNotified` on the WhatsAppInstance, named after the notification
  (`event_name`), so a repeated attempt whose first answer was lost finds it there (409) and counts
  it delivered.
- `callback`: the application's signed POST (`callbacks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from whatsapp_operator import GROUP, VERSION, callbacks
from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core.notifications import (
    MESSAGES,
    Delivered,
    Delivery,
    Fail,
    Notification,
    Outcome,
    Retry,
    Wait,
    event_message,
    event_name,
    message,
    templates,
)
from whatsapp_operator.core.phone import InvalidPhoneNumber, evolution_number
from whatsapp_operator.core.status import rfc3339
from whatsapp_operator.evolution import errors as evo_errors
from whatsapp_operator.evolution.models import ConnectionState
from whatsapp_operator.kube import KubeApi, KubeError

if TYPE_CHECKING:
    from whatsapp_operator.engine.prober import ServerProber

PHASES = {"disconnected": "Disconnected", "logged_out": "LoggedOut", "reconnected": "Connected"}


class Channels:
    def __init__(self, probers: Callable[[str, str], ServerProber | None], kube: KubeApi) -> None:
        """`probers(namespace, name)`: this replica's prober of an EvolutionServer, if it runs one."""
        self._probers = probers
        self._kube = kube
        self._clock = LoopClock()
        self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def deliver(self, delivery: Delivery) -> Outcome:
        n = delivery.notification
        prober = self._probers(n.namespace, n.server)
        if prober is None:
            return Wait(f"EvolutionServer {n.namespace}/{n.server} is not being probed by this replica")
        if delivery.channel == "whatsapp":
            return await self._whatsapp(prober, n)
        if delivery.channel == "event":
            return await self._event(delivery)
        return await self._callback(prober, delivery)

    async def _whatsapp(self, prober: ServerProber, n: Notification) -> Outcome:
        sender = prober.spec.sender_instance
        if sender is None:
            return Fail("the EvolutionServer has no spec.notifier.senderInstance")
        if sender == n.instance:
            return Fail("the sender instance is the driver's own instance")
        try:
            live = await prober.client.connection_state(sender)
        except evo_errors.InstanceNotFound:
            return _not_ready(prober, "SenderNotFound", f"sender instance {sender!r} does not exist")
        except evo_errors.EvolutionError as exc:
            return Retry(f"reading the sender's state: {type(exc).__name__}")
        if live.state is not ConnectionState.OPEN:
            state = live.state.value if live.state is not None else "not loaded"
            return _not_ready(prober, "SenderNotConnected", f"sender instance {sender!r} is {state}")
        prober.recorder.sender_ready(True, "SenderConnected", f"sender instance {sender!r} is open")
        texts = await self._texts(prober)
        try:
            await prober.client.send_text(sender, evolution_number(n.phone), message(n, texts))
        except InvalidPhoneNumber:
            return Fail("the driver's number is not a valid phone number")
        except evo_errors.NumberNotOnWhatsApp:
            return Fail("the driver's number is not on WhatsApp")
        except evo_errors.NotConnected:
            return _not_ready(prober, "SenderNotConnected", f"sender instance {sender!r} lost its connection")
        except evo_errors.EvolutionError as exc:
            return Retry(f"sendText: {type(exc).__name__}")
        return Delivered(self._clock.now())

    async def _texts(self, prober: ServerProber) -> Mapping[str, str]:
        """The server's texts, read at each message: an edited ConfigMap applies to the next one."""
        name = prober.spec.messages_configmap
        if name is None:
            return MESSAGES
        try:
            texts, problems = templates(await self._kube.read_configmap(prober.namespace, name))
        except KubeError as exc:
            texts, problems = MESSAGES, [f"ConfigMap {name} unreadable (HTTP {exc.status or 'unreachable'})"]
        prober.recorder.messages_checked(problems)
        return texts

    async def _event(self, delivery: Delivery) -> Outcome:
        n = delivery.notification
        involved = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WhatsAppInstance",
            "name": n.name,
            "namespace": n.namespace,
            "uid": n.instance_uid,
        }
        try:
            await self._kube.create_event(
                involved,
                type="Normal" if n.kind == "reconnected" else "Warning",
                reason="DriverNotified",
                message=event_message(n),
                name=event_name(n),
            )
        except KubeError as exc:
            if exc.status != 409:  # 409: an earlier attempt stored it
                return Retry(f"posting the Event: HTTP {exc.status or 'unreachable'}")
        return Delivered(self._clock.now())

    async def _callback(self, prober: ServerProber, delivery: Delivery) -> Outcome:
        callback = prober.callback
        if callback is None:
            return Fail("the EvolutionServer has no spec.notifier.callback")
        url, key = callback
        message_id = f"notification-{delivery.id}"  # the same on every attempt: the application dedups on it
        return await callbacks.post(self._http, url, key, message_id, payload(delivery), self._clock.now())


def _not_ready(prober: ServerProber, reason: str, text: str) -> Wait:
    prober.recorder.sender_ready(False, reason, text)
    return Wait(text)


def payload(delivery: Delivery) -> dict[str, Any]:
    """What the application's callback receives: no phone number, no pairing code."""
    n = delivery.notification
    return {
        "type": f"whatsapp.{n.kind}",
        "notificationId": delivery.id,
        "driverId": n.driver_id,
        "instance": n.name,
        "namespace": n.namespace,
        "phase": PHASES[n.kind],
        "reason": n.reason,
        "occurredAt": rfc3339(n.decided_at),
    }
