"""What can go wrong talking to Evolution, in classes the operator can act on.

`EvolutionUnavailable` and its subclasses say nothing about the instance: the server could not be
asked (the operator moves instances to Unknown, never to Disconnected). Every other class is an
answer from a working server about this request. No error carries the API key or request headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

_INSTANCE_MISSING = re.compile(r'^(The "[^"]*" instance does not exist|Instance "[^"]*" not found)$')
_NAME_IN_USE = re.compile(r'^This name "[^"]*" is already in use\.$')
# Logout of a closed instance; sendText from one whose socket is down (a raw Baileys error, 500 or 400).
_NOT_CONNECTED = re.compile(r'^(The "[^"]*" instance is not connected|(Error: )?Connection Closed)$')


class EvolutionError(Exception):
    """Base of every client error: which operation, on which instance, with which HTTP status."""

    def __init__(
        self, detail: str, *, operation: str, instance: str | None = None, status_code: int | None = None
    ) -> None:
        target = operation if instance is None else f"{operation} {instance!r}"
        status = "" if status_code is None else f" (HTTP {status_code})"
        super().__init__(f"{target}: {detail}{status}")
        self.detail = detail
        self.operation = operation
        self.instance = instance
        self.status_code = status_code


class EvolutionUnavailable(EvolutionError):
    """The server could not be reached or did not answer sensibly (refused, 5xx, garbage); retryable."""


class EvolutionTimeout(EvolutionUnavailable):
    """No answer within the timeout."""


class MalformedResponse(EvolutionUnavailable):
    """A success status with a body that is not Evolution's (not JSON, or not the documented shape);
    typically a proxy or something else answering at that URL."""


class CircuitOpen(EvolutionUnavailable):
    """The server's circuit breaker refused the call without sending it.

    `retry_after` is the number of seconds until a trial call is allowed, or None while one is in flight.
    """

    def __init__(self, detail: str, *, operation: str, instance: str | None, retry_after: float | None) -> None:
        super().__init__(detail, operation=operation, instance=instance)
        self.retry_after = retry_after


class SocketTimeout(EvolutionError):
    """A call answered over the instance's WhatsApp socket (onWhatsapp) got no answer in time: Evolution
    took the request and the socket stayed silent. The instance's failure, not the server's: neither
    retried nor counted by the breaker."""


class Unauthorized(EvolutionError):
    """The API key was refused (401)."""


class InstanceNotFound(EvolutionError):
    """Evolution says the instance does not exist (404 with its 'instance does not exist' message)."""


class NameInUse(EvolutionError):
    """Create refused because the name is taken (403), possibly by an instance still being deleted."""


class NotConnected(EvolutionError):
    """The instance has no live WhatsApp connection: logout of a closed instance (400), or sendText from
    one whose socket is down (Baileys' "Connection Closed", 500 or 400). The server itself is fine."""


class BadRequest(EvolutionError):
    """Evolution rejected the request (400); `messages` are its reasons."""

    def __init__(self, messages: tuple[str, ...], *, operation: str, instance: str | None, status_code: int) -> None:
        super().__init__(
            "; ".join(messages) or "bad request", operation=operation, instance=instance, status_code=status_code
        )
        self.messages = messages


class NumberNotOnWhatsApp(BadRequest):
    """sendText refused because the destination number has no WhatsApp account (400)."""


class OperationFailed(EvolutionError):
    """Evolution answered HTTP 200 with ``{"error": true}`` (connect or restart on an instance that is
    closed or not loaded); its message is usually the useless ``[object Object]``."""


class UnexpectedResponse(EvolutionError):
    """An answer this client does not know how to read, such as a 404 for an unknown route (wrong
    base URL or Evolution version); retrying does not help."""


# -- from HTTP to these classes, for every call of the client ------------------------------


def transport_error(
    exc: httpx.TransportError, operation: str, instance: str | None, *, socket_bound: bool
) -> EvolutionError:
    """No answer at all: the server is unavailable, unless the request was sent and only the
    instance's socket was being waited for (`socket_bound` and a read timeout)."""
    if socket_bound and isinstance(exc, httpx.ReadTimeout):
        return SocketTimeout("the instance's socket did not answer in time", operation=operation, instance=instance)
    if isinstance(exc, httpx.TimeoutException):
        return EvolutionTimeout(f"no answer in time ({type(exc).__name__})", operation=operation, instance=instance)
    detail = f"cannot reach the server ({type(exc).__name__}: {exc})"
    return EvolutionUnavailable(detail, operation=operation, instance=instance)


def interpret(response: httpx.Response, operation: str, instance: str | None, parse: Callable[[Any], T]) -> T:
    status = response.status_code
    if not response.is_success:
        raise _error_for(response, operation, instance)
    try:
        body = response.json()
    except ValueError:
        raise MalformedResponse(
            "answer is not JSON", operation=operation, instance=instance, status_code=status
        ) from None
    if isinstance(body, dict) and body.get("error") is True:
        raise OperationFailed(
            f"Evolution reported an error: {body.get('message')}",
            operation=operation,
            instance=instance,
            status_code=status,
        )
    try:
        return parse(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponse(
            f"unexpected answer ({type(exc).__name__}: {exc})",
            operation=operation,
            instance=instance,
            status_code=status,
        ) from None


def _messages(response: httpx.Response) -> list[str | dict[str, Any]]:
    """The reasons in Evolution's error envelope ``{status, error, response: {message}}``, if it is one."""
    try:
        message = response.json()["response"]["message"]
    except (ValueError, KeyError, TypeError):
        return []
    if isinstance(message, str):
        return [message]
    return [m for m in message if isinstance(m, str | dict)] if isinstance(message, list) else []


def _error_for(response: httpx.Response, operation: str, instance: str | None) -> EvolutionError:
    status = response.status_code
    messages = _messages(response)
    texts = tuple(m if isinstance(m, str) else json.dumps(m, sort_keys=True) for m in messages)
    detail = "; ".join(texts)[:300] or response.reason_phrase
    where: dict[str, Any] = {"operation": operation, "instance": instance, "status_code": status}
    if status in (400, 500) and any(_NOT_CONNECTED.match(text) for text in texts):
        # Not a server failure: retrying or tripping the breaker over one closed instance would be wrong.
        return NotConnected("instance is not connected", **where)
    if status >= 500:
        return EvolutionUnavailable(f"server error: {detail}", **where)
    if status == 401:
        return Unauthorized("API key refused", **where)
    if status == 404 and any(_INSTANCE_MISSING.match(text) for text in texts):
        return InstanceNotFound("instance does not exist", **where)
    if status == 403 and any(_NAME_IN_USE.match(text) for text in texts):
        return NameInUse("name already in use", **where)
    if status == 400:
        if any(isinstance(m, dict) and m.get("exists") is False for m in messages):
            return NumberNotOnWhatsApp(texts, **where)
        return BadRequest(texts, **where)
    return UnexpectedResponse(f"unexpected answer: {detail}", **where)
