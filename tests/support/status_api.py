"""A client of the operator's status API, as the application's backend would call it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from tests.support.operator_harness import STATUS_API_TOKEN


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str]


class StatusClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def get(
        self, driver_id: str, token: str | None = STATUS_API_TOKEN, authorization: str | None = None
    ) -> Answer:
        """`GET /api/v1/drivers/{driverId}/whatsapp/status` with the driverId percent-encoded (a / too)
        and `Authorization: Bearer <token>`, or `authorization` as it is."""
        headers = {"Authorization": authorization or f"Bearer {token}"} if authorization or token else {}
        url = yarl.URL(f"{self.base_url}/api/v1/drivers/{quote(driver_id, safe='')}/whatsapp/status", encoded=True)
        return await self._get(url, headers)

    async def openapi(self) -> Answer:
        return await self._get(yarl.URL(f"{self.base_url}/api/v1/openapi.json"), {})

    async def _get(self, url: yarl.URL, headers: Mapping[str, str]) -> Answer:
        async with self.session.get(url, headers=headers) as response:
            text = await response.text()
            body = json.loads(text) if response.content_type == "application/json" else None
            return Answer(response.status, body, text, response.headers)


@contextlib.asynccontextmanager
async def status_client(base_url: str | None) -> AsyncIterator[StatusClient]:
    assert base_url is not None, "the operator's HTTP server is not listening"
    async with aiohttp.ClientSession() as session:
        yield StatusClient(session, base_url)
