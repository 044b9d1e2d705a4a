"""`GET /api/v1/drivers/{driverId}/whatsapp/status`: a driver's WhatsApp link in the shape the
application's `useWhatsappStatus` hook reads, answered from the operator's memory behind a bearer
token; and `GET /api/v1/openapi.json`, the server's OpenAPI document (no token).

Answers (docs/status-api.md), each with `Cache-Control: no-store`: 200 with the status; 401 with
`WWW-Authenticate: Bearer` without a bearer token or with a wrong one; 404 for a driverId no
WhatsAppInstance has; 409 when two or more have it; 503 when no token Secret is configured, and
503 with Retry-After while the token cannot be read or this replica is not the one probing (a
standby, or still starting).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from whatsapp_operator.bearer import BearerToken, Verdict

STATUS_PATH = "/api/v1/drivers/{driverId}/whatsapp/status"
OPENAPI_PATH = "/api/v1/openapi.json"
RETRY_AFTER_SECONDS = 5
HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}  # on every answer

# A driverId's instances: (namespace/name, the answer's JSON body) each; usually one.
Lookup = Callable[[str], Sequence[tuple[str, bytes]]]


class StatusApi:
    def __init__(
        self, *, lookup: Lookup, serving: Callable[[], bool], token: BearerToken | None, document: Mapping[str, Any]
    ) -> None:
        """`serving()`: this replica probes (it is not a standby); `token`: None when not configured."""
        self.lookup = lookup
        self.serving = serving
        self.token = token
        self._document = json.dumps(document).encode()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(STATUS_PATH, self.status)
        app.router.add_get(OPENAPI_PATH, self.openapi)

    async def status(self, request: web.Request) -> web.Response:
        if self.token is None:
            return _error(503, "the status API is not configured: the operator has no --status-api-secret")
        verdict = await self.token.check(request.headers.get("Authorization"))
        if verdict is Verdict.UNAVAILABLE:
            return _error(503, "the status API's token cannot be read yet; retry", retry=True)
        if verdict is not Verdict.VALID:
            challenge = 'Bearer realm="whatsapp-operator"'
            if verdict is Verdict.WRONG:
                challenge += ', error="invalid_token"'  # RFC 6750: none at all for a request without one
            return _error(401, f"{'a wrong' if verdict is Verdict.WRONG else 'no'} bearer token", auth=challenge)
        if not self.serving():
            return _error(503, "this replica is not probing (a standby, or starting); retry", retry=True)
        driver = request.match_info["driverId"]
        found = self.lookup(driver)
        if not found:
            return _error(404, f"no WhatsAppInstance has driverId {driver!r}")
        if len(found) > 1:
            names = [name for name, _ in found]
            return _error(409, f"{len(found)} WhatsAppInstances have driverId {driver!r}", instances=names)
        return _answer(200, found[0][1])

    async def openapi(self, _: web.Request) -> web.Response:
        return _answer(200, self._document)


def _answer(status: int, body: bytes, headers: Mapping[str, str] = HEADERS) -> web.Response:
    # The headers given whole: the content_type argument would be parsed again for every answer.
    return web.Response(status=status, body=body, headers=headers)


def _error(
    status: int, message: str, *, retry: bool = False, auth: str | None = None, instances: list[str] | None = None
) -> web.Response:
    headers = HEADERS | ({"Retry-After": str(RETRY_AFTER_SECONDS)} if retry else {})
    if auth is not None:
        headers["WWW-Authenticate"] = auth
    body: dict[str, Any] = {"error": message} | ({"instances": instances} if instances else {})
    return _answer(status, json.dumps(body).encode(), headers)
