"""Helper process: the strict Kubernetes API emulator, so that the operator talks HTTP to a separate
API server and the benchmark counts PATCHes where they arrive, not where the client says it sent them.

Commands (one JSON line each, see bench.harness.serve): the methods of `Helper`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from bench.harness import API_KEY, WEBHOOK_SECRET, reply, serve
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.manifests import (
    instance_manifest,
    secret_manifest,
    server_manifest,
    status_api_secret_manifest,
    webhook_spec,
)

PREFIX = "bench"  # the simulator names a group's instances bench-00001, bench-00002...
CREATE_CONCURRENCY = 16


def instance_names(count: int) -> list[str]:
    return [f"{PREFIX}-{n:05d}" for n in range(1, count + 1)]


class Helper:
    def __init__(self, cluster: EmulatedCluster) -> None:
        self.cluster = cluster
        self.instance_ref = cluster.emulator.resolve("whatsappinstances").ref

    async def server(self, *, sim_url: str, probe: dict[str, Any], webhook_url: str | None = None) -> dict[str, Any]:
        """The Secret and one EvolutionServer `default` with the given `spec.probe`; with `webhook_url`,
        its `spec.webhook` names that receiver and the Secret holds the webhook secret too."""
        if webhook_url is None:
            await self.cluster.create(secret_manifest(API_KEY))
            await self.cluster.create(server_manifest(sim_url, probe=probe))
        else:
            await self.cluster.create(secret_manifest(API_KEY, webhook_secret=WEBHOOK_SECRET))
            await self.cluster.create(server_manifest(sim_url, probe=probe, webhook=webhook_spec(webhook_url)))
        return {}

    async def status_api_secret(self, *, token: str) -> dict[str, Any]:
        """The status API's token Secret (`--status-api-secret default/status-api`)."""
        await self.cluster.create(status_api_secret_manifest(token))
        return {}

    async def server_status(self) -> dict[str, Any]:
        return {"status": (await self.cluster.get("evolutionservers", "default")).get("status") or {}}

    async def instances(self, *, count: int) -> dict[str, Any]:
        """WhatsAppInstances bench-00001... (several requests in flight, as `kubectl apply` of many)."""
        started = time.monotonic()
        names = iter(instance_names(count))

        async def creator() -> None:
            for name in names:
                await self.cluster.create(instance_manifest(name))

        await asyncio.gather(*(creator() for _ in range(CREATE_CONCURRENCY)))
        return {"created": count, "seconds": round(time.monotonic() - started, 2)}

    async def phases(self) -> dict[str, Any]:
        """How many instances show each `.status.phase` (None: no status yet), read in-process."""
        counts: collections.Counter[str | None] = collections.Counter()
        for key, obj in self.cluster.emulator.objects.items():
            if key[0] == self.instance_ref and not obj.deleted:
                counts[(obj.raw.get("status") or {}).get("phase")] += 1
        return {"phases": {str(phase): n for phase, n in counts.items()}}

    async def writes(self) -> dict[str, Any]:
        """Write requests received so far, by kind; a steady round must add no status PATCH."""
        count = self.cluster.emulator.writes
        return {
            "instance_status_patches": count("whatsappinstances", subresource="status", verb="patch"),
            "server_status_patches": count("evolutionservers", subresource="status", verb="patch"),
            "instance_writes": count("whatsappinstances"),
            "all_writes": len(self.cluster.emulator.write_log),
        }


async def main() -> None:
    async with EmulatedCluster() as cluster:
        helper = Helper(cluster)
        reply({"url": cluster.url})
        await serve(
            {
                "server": helper.server,
                "server_status": helper.server_status,
                "status_api_secret": helper.status_api_secret,
                "instances": helper.instances,
                "phases": helper.phases,
                "writes": helper.writes,
            }
        )


if __name__ == "__main__":
    asyncio.run(main())
