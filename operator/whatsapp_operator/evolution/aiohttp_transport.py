"""An httpx transport that carries requests on aiohttp's connection pool.

httpcore's pool scans every pooled connection on every request and every response (a `getpeername`
per idle one), so a probe costs more the more connections sit idle: at fleet scale that, not the
network, bounded the probe round (docs/performance.md). aiohttp's pool hands out an idle connection
without a scan. httpx stays the client's interface: its timeouts, its exceptions, its tests' mocks.
"""

from __future__ import annotations

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Up to `max_connections` connections, all kept alive for `keepalive_expiry` seconds when idle.

    Each request's httpx timeouts apply: `pool` to getting a connection (waiting for a free one or
    opening one), `connect` to opening it, `read` to each read; aiohttp has no write timeout, and a
    request body here is small. aiohttp's failures come out as the httpx exceptions they correspond
    to. Responses are handed over undecoded, so that httpx decodes what it asked for.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        """Made on first use: an aiohttp session belongs to the running event loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_expiry),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            connect=timeouts.get("pool"), sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        try:
            async with self._ensure_session().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                content = await response.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out getting a connection", request=request) from exc
        except TimeoutError as exc:  # aiohttp's SocketTimeoutError, or a timeout around the whole read
            raise httpx.ReadTimeout(str(exc) or "timed out reading the answer", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            content=content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
