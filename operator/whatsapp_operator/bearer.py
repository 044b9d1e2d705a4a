"""The status API's bearer token: read from a Kubernetes Secret, kept in memory, compared in constant time.

The Secret holds the token under `token` and, while a rotation is under way, the one it replaces
under `previous-token`: both are accepted until that key is removed. The Secret is read when the
first request needs it, then again in the background once a request finds the last read older than
REFRESH_SECONDS (a revoked token stops working within about that), and at once, at most every
MISS_SECONDS, for a request whose token matches none (a new token works from its first request, and
wrong tokens cost the API server one read per MISS_SECONDS at most). docs/status-api.md.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
import math

from whatsapp_operator.kube import KubeApi, KubeError, SecretMissing

log = logging.getLogger(__name__)
TOKEN_KEY = "token"
PREVIOUS_KEY = "previous-token"
REFRESH_SECONDS = 60.0
MISS_SECONDS = 5.0
RETRY_SECONDS = 1.0  # while no token is known, a request reads the Secret again at most this often


class Verdict(enum.Enum):
    VALID = "valid"
    MISSING = "missing"  # no bearer token presented
    WRONG = "wrong"
    UNAVAILABLE = "unavailable"  # no token is known to compare with: the Secret cannot be read (yet)


class BearerToken:
    def __init__(self, kube: KubeApi, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace, self.name = namespace, name
        self._tokens: tuple[bytes, ...] = ()
        self._read_at = -math.inf  # when the last read started, on the loop's clock
        self._reading: asyncio.Task[None] | None = None
        self.problem: str | None = None  # why the last read failed (logged once per change)

    async def check(self, authorization: str | None) -> Verdict:
        """The verdict on an `Authorization` header's value."""
        presented = bearer(authorization)
        if presented is None:
            return Verdict.MISSING
        if self._age() >= (REFRESH_SECONDS if self._tokens else RETRY_SECONDS):
            self._start_reading()  # a known token does not wait for it
        if not self._tokens:
            await self._read_under_way()
        if self._matches(presented):
            return Verdict.VALID
        if self._tokens:
            if self._age() >= MISS_SECONDS:
                self._start_reading()
            if await self._read_under_way() and self._matches(presented):
                return Verdict.VALID
        return Verdict.WRONG if self._tokens else Verdict.UNAVAILABLE

    def _matches(self, presented: bytes) -> bool:
        return any(hmac.compare_digest(presented, token) for token in self._tokens)

    def _age(self) -> float:
        return asyncio.get_running_loop().time() - self._read_at

    def _start_reading(self) -> None:
        if self._reading is None or self._reading.done():
            self._read_at = asyncio.get_running_loop().time()
            self._reading = asyncio.create_task(self._read(), name="status API token")

    async def _read_under_way(self) -> bool:
        """Wait for the read in flight, if one is; a request that goes away does not cancel it."""
        if self._reading is None or self._reading.done():
            return False
        await asyncio.shield(self._reading)
        return True

    async def _read(self) -> None:
        where = f"Secret {self.namespace}/{self.name}"
        keys = (TOKEN_KEY, PREVIOUS_KEY)
        try:
            data = await self.kube.read_secret_keys(self.namespace, self.name, keys, required=TOKEN_KEY)
        except SecretMissing as exc:
            self._tokens = ()  # deleted or emptied: what it held is not accepted any more
            self._failed(f"{exc}; the status API answers 503 until it can be read")
            return
        except KubeError as exc:
            # The last tokens stay: an API server's hiccup must not lock the application out.
            self._failed(f"cannot read {where}: {exc}")
            return
        tokens = tuple(value.encode() for key in keys if (value := data.get(key)))
        if not tokens:
            self._tokens = ()
            self._failed(f"{where} has an empty {TOKEN_KEY!r}; the status API answers 503 until it has one")
            return
        if tokens != self._tokens:
            log.info("status API: %d bearer token(s) read from %s", len(tokens), where)
        self._tokens, self.problem = tokens, None

    def _failed(self, problem: str) -> None:
        if problem != self.problem:
            log.warning("status API: %s", problem)
        self.problem = problem


def bearer(authorization: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive, RFC 9110)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    # Header bytes that are not UTF-8 arrive as lone surrogates (aiohttp decodes with surrogateescape).
    return token.encode("utf-8", "surrogateescape")
