"""Where the CPU goes: a py-spy sample of a running process, or a cProfile file, summed up by library
(the file a function is in) and by function.

py-spy samples the operator from outside at 100 Hz without slowing it much; cProfile instruments
every call and so inflates cheap, frequent ones. Either way the shares rank where time goes; the
benchmarks' CPU seconds, measured without a profiler, are the figures.
"""

from __future__ import annotations

import asyncio
import collections
import pstats
import re
import shutil
import sys
from pathlib import Path
from typing import Any

# Path fragments that name a library; the first that matches a function's file wins.
LIBRARIES = (
    "whatsapp_operator", "httpx", "httpcore", "aiohttp", "yarl", "multidict", "tenacity", "kopf", "json",
    "logging", "asyncio", "selectors", "socket",
)  # fmt: skip
TOP = 25
RATE = 100  # py-spy samples per second
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def library(filename: str) -> str:
    if filename.startswith(("~", "<")) or not filename:
        return "builtins"
    parts = Path(filename).parts
    return next((name for name in LIBRARIES if name in parts or f"{name}.py" in parts), "other")


def _summed(own: collections.Counter[tuple[str, str]], unit: str, total: float) -> dict[str, Any]:
    by_library: collections.Counter[str] = collections.Counter()
    for (file, _), amount in own.items():
        by_library[library(file)] += amount
    return {
        unit: round(total, 2),
        "share_by_library": {name: round(amount / total, 3) for name, amount in by_library.most_common()},
        "top_own": [
            {"function": f"{function} ({Path(file).name})", "own_share": round(amount / total, 3)}
            for (file, function), amount in own.most_common(TOP)
        ],
    }


def summary(path: str) -> dict[str, Any]:
    """A cProfile statistics file: own time by library and the functions with the most."""
    own: collections.Counter[tuple[str, str]] = collections.Counter()
    for (file, line, function), (_, _, tottime, _, _) in pstats.Stats(path).stats.items():  # type: ignore[attr-defined]
        own[file, f"{function}:{line}"] += tottime
    return {"file": path} | _summed(own, "own_seconds", sum(own.values()))


def prepare(directory: str) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise FileNotFoundError("py-spy is not installed (pip install -e '.[bench]')")
    return found


async def sample(pid: int, seconds: float, path: str) -> asyncio.subprocess.Process:
    """py-spy recording `pid` for `seconds` into `path` (collapsed stacks, one line per stack)."""
    argv = [py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds)), "--rate", str(RATE)]
    return await asyncio.create_subprocess_exec(
        *argv, "--format", "raw", "--output", path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def sampled(recorder: asyncio.subprocess.Process, path: str) -> dict[str, Any]:
    """The recording's leaf frames (where each sample was spending its time), summed up."""
    await recorder.wait()
    return collapsed(path)


def collapsed(path: str) -> dict[str, Any]:
    own: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        match = _FRAME.match(stack.rsplit(";", 1)[-1])
        own[(match["file"], match["function"]) if match else ("", stack)] += int(count)
    return {"file": path} | _summed(own, "samples", sum(own.values()))
