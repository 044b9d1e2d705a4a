"""The Evolution client's default transport (aiohttp's pool) against a bare aiohttp server: what the
simulator-backed contract tests do not show, the pool's bound and answers that arrive compressed."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from whatsapp_operator.evolution import ConnectionState, EvolutionClient

pytestmark = pytest.mark.looptime

API_KEY = "transport-key-51c0"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serves one handler for every connectionState; yields its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/instance/connectionState/{name}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def state_of(request: web.Request) -> web.Response:
    return web.json_response({"instance": {"instanceName": request.match_info["name"], "state": "open"}})


async def test_no_more_connections_than_max_connections(serve: Callable[[Handler], Awaitable[str]]) -> None:
    in_flight: list[int] = [0]
    peak: list[int] = [0]
    peers: set[object] = set()

    async def slow_state(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.05)
        in_flight[0] -= 1
        return state_of(request)

    async with EvolutionClient(await serve(slow_state), API_KEY, max_connections=2) as client:
        states = await asyncio.gather(*(client.connection_state(f"drv-{i}") for i in range(8)))
    assert {state.state for state in states} == {ConnectionState.OPEN}
    assert peak[0] == 2
    assert len(peers) == 2  # kept alive and reused, not reopened


async def test_a_compressed_answer_is_decoded_once_and_the_key_is_sent(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    keys: list[str | None] = []

    async def gzipped_state(request: web.Request) -> web.Response:
        keys.append(request.headers.get("apikey"))
        response = state_of(request)
        response.enable_compression(web.ContentCoding.gzip)
        return response

    async with EvolutionClient(await serve(gzipped_state), API_KEY) as client:
        state = await client.connection_state("drv-1")
    assert state.name == "drv-1"
    assert state.state is ConnectionState.OPEN
    assert keys == [API_KEY]
