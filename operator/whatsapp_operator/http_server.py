"""The operator's own HTTP server (aiohttp, which kopf brings): Evolution's webhooks come in here.
kopf's liveness endpoint is a separate server, on its own port."""

from __future__ import annotations

import socket

from aiohttp import web


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (port 0: any free one); raises ValueError with the reason."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


class HttpServer:
    def __init__(self, listen: str, app: web.Application) -> None:
        self.host, self.port = parse_listen(listen)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)

    async def start(self) -> str:
        """Listen; returns the base URL (with the real port when 0 was asked for)."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address in a URL
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Requests in flight finish (up to 5 s); new connections are refused."""
        await self._runner.cleanup()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a URL that must be known before the server starts (the demo's and the
    tests' EvolutionServer names the receiver before the operator runs)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
