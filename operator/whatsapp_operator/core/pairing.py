"""Pairing codes and QR codes as the operator sees them: when one was made, how long it lives, and
which Evolution call a probe needs next. Only a fingerprint of a code is ever kept, never the code."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib

from whatsapp_operator.core.phases import EvolutionState, Phase

# Evolution replaces a QR (and requests a new pairing code) every 45 s: a code is valid that long.
CODE_LIFETIME = datetime.timedelta(seconds=45)

# Phases observed only once the socket that showed a pairing code is gone (open, closed or deleted).
SOCKET_ENDED = frozenset({Phase.CONNECTED, Phase.UNRESPONSIVE, Phase.DISCONNECTED, Phase.LOGGED_OUT, Phase.NOT_FOUND})


class Move(enum.Enum):
    """The call a probe makes after `connectionState`, before it can tell the machine anything."""

    NONE = "none"  # the state says all
    START_PAIRING = "start-pairing"  # a new instance, closed: connect (with the driver's number)
    NEW_CODE = "new-code"  # connecting with no live code known: connect again to see the current one


def move_after(state: EvolutionState, phase: Phase, code_known: bool) -> Move:
    if state is EvolutionState.CLOSE and phase is Phase.PENDING:
        return Move.START_PAIRING
    if state is EvolutionState.CONNECTING and not code_known:
        return Move.NEW_CODE
    return Move.NONE


@dataclasses.dataclass(slots=True)
class CodeWatch:
    """The last code a connect answer showed for one instance: its fingerprint and its expiry."""

    fingerprint: str | None = None
    valid_until: datetime.datetime | None = None

    def valid(self, now: datetime.datetime) -> datetime.datetime | None:
        """The expiry of the code known to be live, or None."""
        return self.valid_until if self.valid_until is not None and self.valid_until > now else None

    def see(self, secret: str, now: datetime.datetime, *, same_socket: bool) -> datetime.datetime | None:
        """A connect answer showed `secret`: when it was made if it is new, None if it is the last one
        again (Evolution never clears old QR fields). `same_socket`: the answer is a look at the socket
        that showed the last code, not one the call started."""
        fingerprint = hashlib.sha256(secret.encode()).hexdigest()[:16]
        if fingerprint == self.fingerprint:
            return None
        generated_at = self._generated_at(now, same_socket)
        self.fingerprint = fingerprint
        self.valid_until = generated_at + CODE_LIFETIME
        return generated_at

    def _generated_at(self, now: datetime.datetime, same_socket: bool) -> datetime.datetime:
        """Evolution's QR timer replaces a code exactly one lifetime after the last, so a successor seen
        by the look at the last code's expiry dates from that expiry (dating it from the look would
        drift each expiry later). A late look or a new socket dates from now, never too early."""
        last = self.valid_until
        if same_socket and last is not None and last <= now < last + CODE_LIFETIME / 2:
            return last
        return now

    def forget(self) -> None:
        """The code died with its socket: a `connecting` that follows is not this code's pairing."""
        self.valid_until = None
