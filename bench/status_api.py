"""The status API under a driver fleet's polling: requests per second and latency of
`GET /api/v1/drivers/{driverId}/whatsapp/status` on one operator process with `--instances` instances.

Processes: the simulator (`--instances` open, every answer `--latency-ms` late, so the operator keeps
probing the fleet as in production), the Kubernetes API emulator (bench.cluster) with the token
Secret, the real operator (`whatsapp-operator run --status-api-secret default/status-api`, no
database: the status API needs none), and this process as the driver apps, over `--connections`
keep-alive connections asking for random drivers of the fleet (a minimal HTTP/1.1 client, so that
the load generator takes little of the CPU the operator shares):

1. open loops: `--rates` requests per second in all for `--seconds` (thousands of apps polling every
   5 s: 10,000 drivers are 2,000/s), each connection sending on its own schedule. A request's latency
   counts from its send; how late it was sent is reported beside it (`sent_late_ms`: an answer slower
   than a connection's period delays its next request, and so does this process not getting the CPU
   on a busy machine), and the rate achieved must be the rate asked;
2. saturation: the same connections sending back to back for `--seconds`: the most it answers.

Every answer must be a 200 in the hook's shape; anything else is counted as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import profiling
from bench.cluster import PREFIX, instance_names
from bench.harness import (
    Child,
    limit,
    loopback_listen,
    machine,
    machine_jiffies,
    machine_shares,
    main,
    operator_argv,
    percentile,
    poll,
    self_cpu_seconds,
    shown,
    start_cluster,
    start_simulator,
    wait_converged,
    wait_quiet,
)
from whatsapp_operator.http_server import parse_listen
from whatsapp_operator.status_api import STATUS_PATH

TOKEN = "bench-status-api-token-5f0c2a9e7d4b1c8e"
TARGET_RATE = 3000  # requests per second (issue 13)
TARGET_P99_MS = 20.0
IDLE_SECONDS = 5.0  # the operator's CPU measured before the load: steady probing alone
FIELDS = {"instanceName", "state", "statusReason", "phase", "updatedAt"}


def rates(value: str) -> tuple[float, ...]:
    found = tuple(float(v) for v in value.split(","))
    if not found or min(found) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive rates separated by commas, got {value!r}")
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.status_api", description=__doc__)
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--latency-ms", type=float, default=50.0, help="simulator latency fault on every request")
    p.add_argument("--interval", type=int, default=30, help="the EvolutionServer's spec.probe.intervalSeconds")
    p.add_argument("--connections", type=int, default=200, help="keep-alive connections of the driver apps")
    p.add_argument(
        "--rates", type=rates, default=(2000.0, TARGET_RATE), help="open loops at these requests per second (a,b,...)"
    )
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    p.add_argument(
        "--profile", metavar="DIR", help="py-spy samples the operator during saturation (DIR/saturation.txt)"
    )
    return p


@dataclasses.dataclass
class Load:
    latencies: list[float] = dataclasses.field(default_factory=list)  # seconds, one per request, from its send
    lags: list[float] = dataclasses.field(default_factory=list)  # open loop: how late each was sent
    answers: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    started: float = 0.0  # when measuring started (perf_counter)
    finished: float = 0.0  # the last measured answer

    def figures(self) -> dict[str, Any]:
        errors = sum(n for answer, n in self.answers.items() if answer != "200")
        return {
            "requests": len(self.latencies),
            "seconds": round(self.finished - self.started, 2),
            "requests_per_second": round(len(self.latencies) / (self.finished - self.started)),
            "latency_ms": _milliseconds(self.latencies, ("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)),
            **({"sent_late_ms": _milliseconds(self.lags, ("p50", 50), ("p99", 99), ("max", 100))} if self.lags else {}),
            "errors": errors,
            "answers": dict(self.answers),
        }


def _milliseconds(seconds: list[float], *quantiles: tuple[str, float]) -> dict[str, float]:
    return {name: round(percentile(seconds, q) * 1000, 2) for name, q in quantiles}


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time. A client this small costs the
    machine the operator shares a few tens of microseconds per request, where aiohttp's took about
    as much CPU as the server it measured."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.waiter.set_exception(ValueError("an answer without Content-Length"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def get(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class Apps:
    """The driver apps: one keep-alive connection each, asking for random drivers."""

    def __init__(self, host: str, port: int, drivers: list[str]) -> None:
        self.host, self.port = host, port
        self.requests = [
            f"GET {STATUS_PATH.format(driverId=d)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
            for d in drivers
        ]
        self.random = random.Random(1)
        self.connections: list[Connection] = []

    async def connect(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            _, connection = await loop.create_connection(Connection, self.host, self.port)
            self.connections.append(connection)

    def close(self) -> None:
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.close()

    async def ask(self, connection: Connection, load: Load | None) -> None:
        try:
            status, body = await connection.get(self.random.choice(self.requests))
            answer = str(status) if status != 200 or set(json.loads(body)) == FIELDS else "200, wrong shape"
        except (ConnectionError, ValueError) as exc:
            answer = type(exc).__name__
        if load is not None:
            load.answers[answer] += 1

    async def open_loop(self, rate: float, seconds: float, warmup: float) -> Load:
        """Each connection sends every `connections / rate` s, the connections' schedules staggered."""
        count = len(self.connections)
        load, every = Load(), count / rate
        start = time.perf_counter() + 0.1
        load.started = start + warmup
        end = load.started + seconds

        async def run(connection: Connection, offset: float) -> None:
            due = start + offset
            while due < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent = time.perf_counter()
                measured = due >= load.started
                await self.ask(connection, load if measured else None)
                if measured:
                    load.finished = time.perf_counter()
                    load.latencies.append(load.finished - sent)
                    load.lags.append(sent - due)
                due += every

        await asyncio.gather(*(run(c, i * every / count) for i, c in enumerate(self.connections)))
        return load

    async def saturation(self, seconds: float, warmup: float) -> Load:
        load = Load(started=time.perf_counter() + warmup)
        end = load.started + seconds

        async def run(connection: Connection) -> None:
            while (sent := time.perf_counter()) < end:
                measured = sent >= load.started
                await self.ask(connection, load if measured else None)
                if measured:
                    load.finished = time.perf_counter()
                    load.latencies.append(load.finished - sent)

        await asyncio.gather(*(run(c) for c in self.connections))
        return load


async def answering(apps: Apps) -> bool:
    """The first request: the operator reads the token Secret for it."""
    await apps.connect(1)
    connection = apps.connections.pop()
    try:
        status, _ = await connection.get(apps.requests[0])
    finally:
        assert connection.transport is not None
        connection.transport.close()
    return status == 200


async def measured(
    args: argparse.Namespace, operator: Child, name: str, load: Callable[[], Awaitable[Load]]
) -> dict[str, Any]:
    """One phase's figures, with the CPU the operator, this process and the whole machine spent."""
    before, client_before, started = operator.usage().cpu_seconds, self_cpu_seconds(), time.perf_counter()
    jiffies = machine_jiffies()
    path = f"{args.profile}/{name}.txt"
    sampler = await profiling.sample(operator.pid, args.seconds, path) if args.profile else None
    figures = (await load()).figures()
    if sampler is not None:
        figures["profile"] = await profiling.sampled(sampler, path)
    elapsed = time.perf_counter() - started
    return figures | {
        "operator_cpu_share_of_one_core": round((operator.usage().cpu_seconds - before) / elapsed, 3),
        "client_cpu_share_of_one_core": round((self_cpu_seconds() - client_before) / elapsed, 3),
        **machine_shares(jiffies),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if min(args.instances, args.connections, args.seconds) <= 0:
        raise ValueError("--instances, --connections and --seconds must be positive")
    host = machine()
    if args.profile:
        profiling.prepare(args.profile)
    listen = loopback_listen()
    drivers = instance_names(args.instances)
    scenario = {
        "groups": [{"prefix": PREFIX, "count": args.instances, "start": "open"}],
        "faults": [{"from": 0, "kind": "latency", "ms": args.latency_ms}],
    }
    async with contextlib.AsyncExitStack() as stack:
        _, sim_url = await start_simulator(stack, scenario)
        cluster, kube_url = await start_cluster(stack)
        await cluster.ask("server", sim_url=sim_url, probe={"intervalSeconds": args.interval})
        await cluster.ask("status_api_secret", token=TOKEN)
        argv = operator_argv(kube_url, "--status-api-secret", "default/status-api", webhook_listen=listen)
        operator = await Child.spawn("operator", argv)
        stack.push_async_callback(operator.stop)
        started = time.monotonic()
        await cluster.ask("instances", count=args.instances)
        async with limit(max(600.0, args.instances * 0.1), "the operator's convergence"):
            await wait_converged(cluster, args.instances)
            converged = time.monotonic() - started
            await wait_quiet(cluster)
        # kopf works through the watch events of the convergence for a while after the API server is
        # quiet, and the first probe round follows: measured from then on, only steady probing runs.
        await asyncio.sleep(args.interval)
        before, idle_from = operator.usage().cpu_seconds, time.perf_counter()
        await asyncio.sleep(IDLE_SECONDS)
        idle = (operator.usage().cpu_seconds - before) / (time.perf_counter() - idle_from)

        apps = Apps(*parse_listen(listen), drivers)
        async with limit(60, "the status API's first 200"):
            await poll(lambda: answering(apps), 0.2)
        await apps.connect(args.connections)
        stack.callback(apps.close)
        loads: list[tuple[str, Callable[[], Awaitable[Load]]]] = [
            *(
                (f"open_loop_{r:g}", functools.partial(apps.open_loop, r, args.seconds, args.warmup))
                for r in args.rates
            ),
            ("saturation", functools.partial(apps.saturation, args.seconds, args.warmup)),
        ]
        phases = {name: await measured(args, operator, name, load) for name, load in loads}
        rss = operator.usage().rss_mib
    open_loops = [{"rate_asked": r} | phases[f"open_loop_{r:g}"] for r in args.rates]
    at_target = next((o for o in open_loops if o["rate_asked"] >= TARGET_RATE), None)
    return {
        "machine": host,
        "instances": args.instances,
        "operator_command": shown(argv),
        "convergence_seconds": round(converged, 1),
        "operator_cpu_share_without_requests": round(idle, 3),
        "operator_rss_mib": round(rss, 1),
        "load": {
            "connections": args.connections,
            "keep_alive": True,
            "drivers": "uniformly random among the fleet",
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "background": f"steady probing of the fleet every {args.interval} s, {args.latency_ms:g} ms per answer"
            " (from one interval after the API server went quiet)",
        },
        "open_loops": open_loops,
        "saturation": phases["saturation"],
        "target": {
            "requests_per_second_at_least": TARGET_RATE,
            "p99_ms_under": TARGET_P99_MS,
            "met": at_target is not None
            and at_target["requests_per_second"] >= at_target["rate_asked"] * 0.99
            and at_target["latency_ms"]["p99"] < TARGET_P99_MS
            and at_target["errors"] == 0,
        },
    }


if __name__ == "__main__":
    raise SystemExit(main("status_api", parser(), run))
