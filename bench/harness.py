"""What the benchmarks share: child processes, their CPU and memory read from /proc, and the one JSON
object each benchmark prints.

Every piece runs in a process of its own (the simulator, the Kubernetes API emulator, the measured
side), so that the CPU seconds and peak RSS reported for the measured side are its own and not the
load generator's. Helper processes speak one JSON object per line on stdin/stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

API_KEY = "bench-api-key"
# The EvolutionServer's webhook secret (Evolution's jwt_key); 32 bytes or more, as HS256 wants.
WEBHOOK_SECRET = "bench-webhook-secret-3f9c1a7e5b2d4c6e8a0b"
ANSWER_SECONDS = 600.0  # the longest a helper may take to answer (a 10,000-instance setup or round)
STOP_SECONDS = 30.0


class BenchError(RuntimeError):
    """The benchmark cannot produce an honest figure; it exits non-zero with this message."""


@dataclass(frozen=True)
class Usage:
    """A process's CPU time (user + system) and memory, as the kernel accounts them."""

    cpu_seconds: float
    rss_mib: float
    peak_rss_mib: float  # VmHWM: the high-water mark of the resident set

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 2) for key, value in asdict(self).items()}


def usage(pid: int | str = "self") -> Usage:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime and stime, fields 14 and 15
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    kib = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM")}
    return Usage(cpu, kib["VmRSS"] / 1024, kib["VmHWM"] / 1024)


def self_cpu_seconds() -> float:
    """This process's CPU time at microsecond resolution (/proc counts in 10 ms ticks)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile: a value that was actually observed, never an interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no samples to take a percentile of")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


def spread(values: Iterable[float], digits: int = 3) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "min": round(ordered[0], digits),
        "median": round(statistics.median(ordered), digits),
        "max": round(ordered[-1], digits),
    }


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "loadavg_1m_at_start": round(load[0], 2),
    }


def machine_busy() -> tuple[int, int]:
    """Jiffies of every core: (busy, total), from /proc/stat."""
    busy, _, total = machine_jiffies()
    return busy, total


def machine_jiffies() -> tuple[int, int, int]:
    """Jiffies of every core: (busy, stolen by the hypervisor, total), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, fields[7], sum(fields)


def machine_shares(since: tuple[int, int, int]) -> dict[str, float]:
    """How busy every core was, and how much the hypervisor stole, since `since` (machine_jiffies())."""
    busy, stolen, total = (after - before for after, before in zip(machine_jiffies(), since, strict=True))
    return {"machine_busy_share": round(busy / total, 3), "machine_stolen_share": round(stolen / total, 3)}


# -- child processes ---------------------------------------------------------------------------


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def operator_command(*args: str) -> list[str]:
    """`whatsapp-operator ...` from the same environment as this interpreter."""
    script = Path(sys.executable).with_name("whatsapp-operator")
    return [str(script), *args] if script.exists() else python_module("whatsapp_operator", *args)


@contextlib.asynccontextmanager
async def limit(seconds: float, what: str) -> AsyncIterator[None]:
    """Fail the benchmark loudly when `what` takes longer than `seconds`, rather than hang."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise BenchError(f"{what} took longer than {seconds:.0f} s") from None


class Child:
    """A helper process; its stderr goes to a log file whose tail explains a failure."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @classmethod
    async def spawn(cls, name: str, argv: list[str], *, env: Mapping[str, str] | None = None) -> Child:
        """`env`: variables added to this process's environment for the child."""
        fd, path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=fd,
                limit=2**24,
                env={**os.environ, **env} if env else None,
            )
        finally:
            os.close(fd)
        return cls(name, process, Path(path))

    @property
    def pid(self) -> int:
        return self.process.pid

    def usage(self) -> Usage:
        if self.process.returncode is not None:
            raise BenchError(f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}")
        return usage(self.pid)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def readline(self) -> str:
        assert self.process.stdout is not None
        try:
            async with limit(ANSWER_SECONDS, f"an answer from {self.name}"):
                line = await self.process.stdout.readline()
        except BenchError as exc:
            raise BenchError(f"{exc}:\n{self.tail()}") from None
        if not line:
            await self.process.wait()
            raise BenchError(f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}")
        return line.decode()

    async def receive(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(await self.readline())
        if "error" in answer:
            raise BenchError(f"{self.name}: {answer['error']}")
        return answer

    async def ask(self, cmd: str, **params: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **params}).encode() + b"\n")
        await self.process.stdin.drain()
        return await self.receive()

    async def stop(self) -> None:
        """SIGTERM (the operator and the simulator shut down cleanly on it), SIGKILL if ignored."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.log.unlink(missing_ok=True)


async def start_simulator(stack: contextlib.AsyncExitStack, scenario: Mapping[str, Any]) -> tuple[Child, str]:
    """`whatsapp-operator simulator` playing `scenario`; returns it with its base URL."""
    with tempfile.NamedTemporaryFile("w", prefix="bench-scenario-", suffix=".json", delete=False) as file:
        json.dump(scenario, file)
    stack.callback(os.unlink, file.name)
    argv = operator_command("simulator", "--port", "0", "--api-key", API_KEY, "--seed", "1", "--log-level", "WARNING")
    child = await Child.spawn("simulator", [*argv, "--scenario", file.name])
    stack.push_async_callback(child.stop)
    while "listening on " not in (line := await child.readline()):
        pass
    return child, line.split("listening on ", 1)[1].split()[0]


async def start_cluster(stack: contextlib.AsyncExitStack) -> tuple[Child, str]:
    """The strict Kubernetes API emulator in a helper process (bench/cluster.py)."""
    child = await Child.spawn("cluster", python_module("bench.cluster"))
    stack.push_async_callback(child.stop)
    return child, str((await child.receive())["url"])


def loopback_listen() -> str:
    """`127.0.0.1:<a free port>` for the operator's webhook receiver, known before it starts."""
    from whatsapp_operator.http_server import free_port

    return f"127.0.0.1:{free_port('127.0.0.1')}"


def operator_argv(kube_url: str, *extra: str, webhook_listen: str | None = None, metrics: bool = True) -> list[str]:
    """The operator's command line. Its HTTP server (the status API, and the webhook receiver with
    `--database-url`) listens on `webhook_listen`, by default a free loopback port: never the default
    0.0.0.0:8081, which another run or a real operator on this machine may hold. Its metrics listen on
    any free loopback port (`metrics=False`: no such flag, for builds older than it)."""
    listen = webhook_listen or loopback_listen()
    return operator_command(
        "run", "--kube-server", kube_url, "--liveness", "off", "--log-format", "plain",
        "--webhook-listen", listen, *(("--metrics-listen", "127.0.0.1:0") if metrics else ()), *extra,
    )  # fmt: skip


def shown(argv: list[str]) -> str:
    """A command line as a reader would type it (the script's path replaced by its name)."""
    return " ".join(["whatsapp-operator", *argv[1:]] if argv[0].endswith("whatsapp-operator") else argv)


async def poll(done: Callable[[], Awaitable[bool]], every: float) -> None:
    """Wait for a condition in another process, or one that no event announces."""
    while not await done():  # noqa: ASYNC110  # nothing to await: polling is the only way
        await asyncio.sleep(every)


async def wait_quiet(cluster: Child, quiet: float = 5.0) -> float:
    """Seconds until the API server received its last write, once none has come for `quiet` seconds:
    kopf's own per-object work (finalizers) may still run after every status says Connected."""
    started = time.monotonic()
    count, changed = -1, started

    async def still() -> bool:
        nonlocal count, changed
        now, latest = time.monotonic(), (await cluster.ask("writes"))["all_writes"]
        if latest != count:
            count, changed = latest, now
        return now - changed >= quiet

    await poll(still, 0.5)
    return changed - started


async def wait_converged(cluster: Child, instances: int) -> float:
    """Seconds until the API server shows every instance Connected (polled twice a second)."""
    started = time.monotonic()

    async def converged() -> bool:
        return bool((await cluster.ask("phases"))["phases"].get("Connected") == instances)

    await poll(converged, 0.5)
    return time.monotonic() - started


# -- the helper side of the protocol -----------------------------------------------------------


def reply(answer: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


async def serve(handlers: Mapping[str, Callable[..., Awaitable[dict[str, Any]]]]) -> None:
    """Answer commands read from stdin, one JSON line each, until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        try:
            reply(await handlers[command.pop("cmd")](**command))
        except Exception as exc:
            traceback.print_exc()
            reply({"error": f"{type(exc).__name__}: {exc}"})


# -- the benchmark's own output ----------------------------------------------------------------


Benchmark = Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]


def main(benchmark: str, parser: argparse.ArgumentParser, run: Benchmark) -> int:
    """Print exactly one JSON object: the figures, or an "error" and a non-zero exit status."""
    args = parser.parse_args()
    try:
        result = asyncio.run(run(args))
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"benchmark": benchmark, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"benchmark": benchmark, **result}))
    return 0
