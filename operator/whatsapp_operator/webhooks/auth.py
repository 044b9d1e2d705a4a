"""Who may post webhooks: Evolution with the EvolutionServer's shared secret, as a bearer token
(HS256 JWT, what Evolution signs with a webhook's `jwt_key` header: the secret never travels) or
as the plain `X-Webhook-Secret` header (a webhook configured by hand). Pure: no I/O."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

import jwt

HEADER = "X-Webhook-Secret"
LEEWAY_SECONDS = 60  # clock skew between Evolution's host and ours


class BadCredentials(Exception):
    """Answered 401 (Evolution does not retry it). The message never quotes what was presented."""


class NoSecretYet(Exception):
    """No EvolutionServer's secret is known (the operator is starting, or its Secret is unreadable):
    the request cannot be judged now, so it is answered 503 and Evolution retries it."""


def authenticate(headers: Mapping[str, str], secrets: Iterable[str]) -> None:
    """Passes if the request proves one of `secrets` (one per EvolutionServer); raises BadCredentials,
    or NoSecretYet when there is nothing to check against."""
    known = [s for s in secrets if s]
    if not known:
        raise NoSecretYet("no EvolutionServer's webhook secret is known yet")
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":  # auth schemes are case-insensitive (RFC 9110)
        token = token.strip()
        for secret in known:
            if _valid_token(token, secret):
                return
        raise BadCredentials("the bearer token is not signed with a known secret, or has expired")
    presented = headers.get(HEADER)
    if presented is not None:
        # Header bytes that are not UTF-8 arrive as lone surrogates (aiohttp decodes with surrogateescape).
        presented_bytes = presented.encode("utf-8", "surrogateescape")
        if any(hmac.compare_digest(presented_bytes, secret.encode()) for secret in known):
            return
        raise BadCredentials(f"the {HEADER} header does not match a known secret")
    raise BadCredentials(f"no credentials: expected 'Authorization: Bearer <JWT>' or {HEADER}")


def _valid_token(token: str, secret: str) -> bool:
    if not token.isascii():  # a JWT is base64url and dots; PyJWT would fail to encode lone surrogates
        return False
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "iat"]}, leeway=LEEWAY_SECONDS
        )
    except jwt.InvalidTokenError:
        return False
    return claims.get("app") == "evolution" and claims.get("action") == "webhook"
