"""What can go wrong talking to Evolution, in classes the operator can act on.

`EvolutionUnavailable` and its subclasses say nothing about the instance: the server could not be
asked (the operator moves instances to Unknown, never to Disconnected). Every other class is an
answer from a working server about this request. No error carries the API key or request headers.
"""

from __future__ import annotations


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
