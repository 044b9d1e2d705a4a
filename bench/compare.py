"""A/B: the operator of another commit and this working tree's, side by side on one machine in one
session, against the same simulator and API emulator, so that a ratio can be quoted where figures
from different machines could not be compared.

The fleet of `--instances` is converged once (by this tree's operator). Then, `--passes` times, in
alternating order, each build's operator is started on it, left to probe every instance once and go
quiet, and measured for one steady round (CPU seconds, writes); then each build's prober runs
`--rounds` capacity rounds (bench.capacity). Each build runs from its own source tree with
`PYTHONPATH` (the other commit's `operator/` from `git archive`), with this environment's packages.

    python -m bench.compare HEAD~1 --instances 10000
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    BenchError,
    Child,
    limit,
    machine,
    main,
    operator_argv,
    poll,
    python_module,
    spread,
    start_cluster,
    start_simulator,
    wait_converged,
    wait_quiet,
)
from bench.probe_round import capacity_stage, fleet, last_request_at, probed_since, steady_round

ROOT = Path(__file__).resolve().parents[1]
Result = dict[str, Any]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("previous", help="the commit to compare with (a git revision of this repository)")
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--interval", type=int, default=30)
    p.add_argument(
        "--liveness-interval",
        type=int,
        default=300,
        help="spec.probe.livenessIntervalSeconds (0: none; a commit from before liveness checks makes none anyway)",
    )
    p.add_argument("--passes", type=int, default=3, help="steady rounds per build, alternating")
    p.add_argument("--rounds", type=int, default=2, help="capacity rounds per build after one warm-up round")
    p.set_defaults(profile=None)  # what bench.probe_round's stages read
    return p


def checkout(revision: str, into: Path) -> str:
    """`operator/` of `revision` under `into`; returns the commit it resolved to."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "operator"], check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return commit


async def spawn_operator(kube_url: str, env: dict[str, str]) -> Child:
    """`python -m whatsapp_operator run ...`: the build is whichever `env`'s PYTHONPATH names (its
    metrics on a free port, if it has them: builds before --metrics-listen refuse the flag)."""
    settings = Path(env["PYTHONPATH"]) / "whatsapp_operator" / "engine" / "settings.py"
    argv = operator_argv(kube_url, metrics="--metrics-listen" in settings.read_text())[1:]
    return await Child.spawn("operator", python_module("whatsapp_operator", *argv), env=env)


async def steady(
    args: argparse.Namespace, cluster: Child, kube_url: str, admin: httpx.AsyncClient, env: dict[str, str]
) -> Result:
    """One build's operator started on the converged fleet: its first round and settling, then one
    measured steady round."""
    mark = await last_request_at(admin)
    operator = await spawn_operator(kube_url, env)
    try:
        started = time.monotonic()

        async def first_round_done() -> bool:
            return len(await probed_since(admin, mark)) >= args.instances

        async with limit(max(300.0, args.instances * 0.05), "an operator's first round on the fleet"):
            await poll(first_round_done, 1.0)
            first_round = time.monotonic() - started
            await wait_quiet(cluster)
        return {"first_round_seconds": round(first_round, 1)} | await steady_round(args, cluster, operator, admin)
    finally:
        await operator.stop()


async def converge(args: argparse.Namespace, cluster: Child, kube_url: str, env: dict[str, str]) -> float:
    operator = await spawn_operator(kube_url, env)
    try:
        started = time.monotonic()
        await cluster.ask("instances", count=args.instances)
        async with limit(max(600.0, args.instances * 0.1), "the fleet's convergence"):
            await wait_converged(cluster, args.instances)
            await wait_quiet(cluster)
        return time.monotonic() - started
    finally:
        await operator.stop()


def compared(sides: dict[str, list[Result]], capacity: dict[str, Result]) -> Result:
    cpu = {side: statistics.median(r["cpu_seconds"] for r in runs) for side, runs in sides.items()}
    seconds = {side: c["seconds"]["median"] for side, c in capacity.items()}
    return {
        "steady_cpu_seconds_median": cpu,
        "steady_cpu_ratio_current_to_previous": round(cpu["current"] / cpu["previous"], 3),
        "capacity_seconds_median": seconds,
        "capacity_seconds_ratio_current_to_previous": round(seconds["current"] / seconds["previous"], 3),
    }


async def run(args: argparse.Namespace) -> Result:
    if min(args.instances, args.passes, args.rounds) < 1:
        raise BenchError("--instances, --passes and --rounds must be positive")
    scenario, probe = fleet(args)
    result: Result = {"instances": args.instances, "latency_ms": args.latency_ms, "machine": machine()}
    async with contextlib.AsyncExitStack() as stack:
        previous_tree = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-previous-")))
        result["previous"] = checkout(args.previous, previous_tree)
        envs = {
            "previous": {"PYTHONPATH": str(previous_tree / "operator")},
            "current": {"PYTHONPATH": str(ROOT / "operator")},
        }
        _, sim_url = await start_simulator(stack, scenario)
        cluster, kube_url = await start_cluster(stack)
        admin = await stack.enter_async_context(httpx.AsyncClient(base_url=sim_url, timeout=60))
        await cluster.ask("server", sim_url=sim_url, probe=probe)
        result["convergence_seconds"] = round(await converge(args, cluster, kube_url, envs["current"]), 1)
        sides: dict[str, list[Result]] = {"previous": [], "current": []}
        for n in range(args.passes):
            for side in ("previous", "current") if n % 2 == 0 else ("current", "previous"):
                sides[side].append(await steady(args, cluster, kube_url, admin, envs[side]))
        capacity = {side: await capacity_stage(args, cluster, kube_url, envs[side]) for side in ("previous", "current")}
    result["steady_rounds"] = sides
    result["steady_cpu_seconds"] = {side: spread(r["cpu_seconds"] for r in runs) for side, runs in sides.items()}
    result["capacity_round"] = capacity
    result["compared"] = compared(sides, capacity)
    return result


if __name__ == "__main__":
    raise SystemExit(main("compare", parser(), run))
