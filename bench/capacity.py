"""Helper process: one `ServerProber`, driven directly, to time a capacity round.

In the running operator probes are spread over the interval (jittered deadlines), so a round there
takes exactly `intervalSeconds` whatever the prober could do. To measure what it can do, every
instance is made due at once (`probe_soon`, what a webhook does for one instance) and the round
lasts until each one has been probed and rescheduled. The instances were converged by the operator
beforehand, so this is a steady round: every probe finds what `.status` already says.

Commands (one JSON line each): `round`. With `--profile PATH`, the rounds run under cProfile and its
statistics are written to PATH after each round. Started with the emulator's URL, the namespace and the
EvolutionServer's name; it answers once with the number of instances it loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import time
from typing import Any

import aiohttp
import kopf

from bench.harness import BenchError, reply, self_cpu_seconds, serve, usage
from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.core.resources import InstanceSpec, ServerSpec
from whatsapp_operator.engine.fleet import Member
from whatsapp_operator.engine.prober import ServerProber
from whatsapp_operator.kube import KubeApi

POLL_SECONDS = 0.005
PAGE = 500


async def read_objects(kube_url: str, namespace: str, server: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The EvolutionServer and its instances, listed in pages as an informer would."""
    base = f"{kube_url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}"
    items: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/evolutionservers/{server}") as response:
            response.raise_for_status()
            server_body = await response.json()
        params = {"limit": str(PAGE)}
        while True:
            async with http.get(f"{base}/whatsappinstances", params=params) as response:
                response.raise_for_status()
                page = await response.json()
            items += page["items"]
            if not page["metadata"].get("continue"):
                return server_body, items
            params["continue"] = page["metadata"]["continue"]


class Rounds:
    def __init__(self, prober: ServerProber, profile: str | None = None) -> None:
        self.prober = prober
        self.profile = profile
        self.profiler = cProfile.Profile() if profile else None

    def _probed_since(self, mark: float) -> bool:
        """Every instance is back in the schedule with a deadline set after `mark`: probed."""
        schedule = self.prober.schedule
        if len(schedule) < len(self.prober.tracked):
            return False  # cheap test first: some are still queued or in flight
        return all((schedule.due_at(key) or mark) > mark for key in self.prober.tracked)

    async def round(self) -> dict[str, Any]:
        prober = self.prober
        cpu, started = self_cpu_seconds(), time.monotonic()
        if self.profiler is not None:
            self.profiler.enable()
        for key in prober.tracked:
            prober.probe_soon(key)
        mark = prober.clock.monotonic()
        while not self._probed_since(mark):  # noqa: ASYNC110  # the prober has no "round done" event
            await asyncio.sleep(POLL_SECONDS)
        if self.profiler is not None:
            self.profiler.disable()
            self.profiler.dump_stats(self.profile)  # every round: the process ends by a signal
        return {
            "seconds": round(time.monotonic() - started, 3),
            "cpu_seconds": round(self_cpu_seconds() - cpu, 3),
            "probes": len(prober.tracked),
            "phases": collections.Counter(str(t.state.phase) for t in prober.tracked.values()),
            "usage": usage().as_dict(),
        }


async def main(args: argparse.Namespace) -> None:
    server_body, items = await read_objects(args.kube_url, args.namespace, args.server)
    spec = ServerSpec.parse(server_body["spec"])
    kube = KubeApi()
    await kube.use(kopf.ConnectionInfo(server=args.kube_url, insecure=True))
    api_key = await kube.read_secret(args.namespace, spec.api_key_ref.name, spec.api_key_ref.key)
    prober = ServerProber(namespace=args.namespace, name=args.server, spec=spec, api_key=api_key, kube=kube)
    prober.load(Member.read(InstanceSpec.parse(item), item.get("status") or {}) for item in items)
    if not prober.tracked:
        raise BenchError("no instances to probe")
    task = asyncio.create_task(prober.run())
    try:
        reply({"loaded": len(prober.tracked)})
        await serve({"round": Rounds(prober, args.profile).round})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kube.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kube_url")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--server", default="default")
    parser.add_argument("--profile", help="write cProfile statistics of the rounds to this file")
    asyncio.run(main(parser.parse_args()))
