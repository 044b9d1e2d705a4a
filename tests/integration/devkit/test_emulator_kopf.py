"""A tiny real kopf operator against the strict emulator: kopf's whole flow works there, strictly."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import kopf
import pytest

from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.devkit.kube_emulator import EmulatedCluster

MANIFEST = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "WhatsAppInstance",
    "metadata": {"generateName": "driver-"},
    "spec": {"driverId": "d-1", "phoneNumber": "(11) 98765-4321"},
}


def settings() -> kopf.OperatorSettings:
    """kopf's progress in annotations: the CRD declares no `status.kopf` (the API server would prune it)."""
    result = kopf.OperatorSettings()
    result.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    result.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    result.persistence.finalizer = f"{GROUP}/finalizer"
    return result


def registry(deleted: list[str], **status: Any) -> kopf.OperatorRegistry:
    """Accepts instances (phase Pending, plus `status`), follows spec.suspend, records deletions."""
    result = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, "whatsappinstances")

    @kopf.on.create(*resource, registry=result)
    async def accept(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update({"phase": "Pending", **status})
        kopf.info(body, reason="Accepted", message="Waiting for Evolution.")

    @kopf.on.update(*resource, field="spec.suspend", registry=result)
    async def suspend(new: bool, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Suspended" if new else "Pending"

    @kopf.on.delete(*resource, registry=result)
    async def remove(name: str, **_: Any) -> None:
        deleted.append(name)

    return result


def phase(value: str) -> Any:
    return lambda obj: obj is not None and obj.get("status", {}).get("phase") == value


@pytest.mark.parametrize("namespaces", [(), ("default",)], ids=["clusterwide", "namespaced"])
async def test_kopf_creates_updates_and_deletes_through_the_strict_api(
    kube: EmulatedCluster, namespaces: Collection[str]
) -> None:
    deleted: list[str] = []
    name = (await kube.create(MANIFEST))["metadata"]["name"]
    async with (
        asyncio.timeout(10),
        kube.operator(registry=registry(deleted), settings=settings(), namespaces=namespaces),
    ):
        accepted = await kube.wait_for("wai", name, phase("Pending"))
        assert accepted["metadata"]["finalizers"] == [f"{GROUP}/finalizer"]
        assert accepted["metadata"]["generation"] == 1  # kopf's annotations and status are not spec
        while not kube.emulator.events(name=name, reason="Accepted"):
            await kube.emulator.next_change()

        await kube.patch("wai", name, {"spec": {"suspend": True}})
        suspended = await kube.wait_for("wai", name, phase("Suspended"))
        assert suspended["metadata"]["generation"] == 2

        await kube.delete("wai", name)
        await kube.wait_for("wai", name, lambda obj: obj is None)
        assert deleted == [name]

    kopf_writes = kube.emulator.writes("whatsappinstances", user_agent="kopf")
    assert kube.emulator.writes("whatsappinstances", subresource="status", user_agent="kopf") == 2
    assert kopf_writes >= 4  # finalizer, annotations per handled change, finalizer release


async def test_kopf_is_quiet_once_converged(kube: EmulatedCluster) -> None:
    """Its own writes come back as watch events; a no-op must not echo (it would loop forever)."""
    name = (await kube.create(MANIFEST))["metadata"]["name"]
    async with asyncio.timeout(10), kube.operator(registry=registry([]), settings=settings()):
        await kube.wait_for("wai", name, phase("Pending"))
        writes = kube.emulator.writes(user_agent="kopf")
        version = kube.emulator.resource_version
        await asyncio.sleep(1)
        assert kube.emulator.writes(user_agent="kopf") == writes
        assert kube.emulator.resource_version == version


async def test_an_undeclared_status_field_written_by_kopf_is_pruned_and_recorded(kube: EmulatedCluster) -> None:
    name = (await kube.create(MANIFEST))["metadata"]["name"]
    undeclared = registry([], pairingCode="ABCD-1234")  # a real API server drops it without a word
    async with asyncio.timeout(10), kube.operator(registry=undeclared, settings=settings()):
        accepted = await kube.wait_for("wai", name, phase("Pending"))
    assert "pairingCode" not in accepted["status"]
    assert kube.violations() == [f"pruned whatsappinstances default/{name}: status.pairingCode"]
    kube.emulator.pruned.clear()  # provoked on purpose: the fixture fails the test on any left over


async def test_an_invalid_status_written_by_kopf_is_refused_and_recorded(kube: EmulatedCluster) -> None:
    name = (await kube.create(MANIFEST))["metadata"]["name"]
    async with asyncio.timeout(10), kube.operator(registry=registry([], forcedLogouts=-1), settings=settings()):
        while not kube.violations():
            await kube.emulator.next_write()  # a refused write changes nothing: no change to wait for
    assert kube.violations()[0] == (
        f"patch whatsappinstances/status default/{name}:"
        " status.forcedLogouts: Invalid value: -1: status.forcedLogouts in body should be greater than or equal to 0"
    )
    assert "status" not in kube.emulator.read("wai", name)
    kube.emulator.write_log.clear()  # provoked on purpose


@pytest.mark.looptime
async def test_the_harness_runs_under_fake_time(kube: EmulatedCluster) -> None:
    result = kopf.OperatorRegistry()

    @kopf.timer(GROUP, VERSION, "whatsappinstances", interval=60, initial_delay=60, registry=result)
    async def tick(patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = "Connected"

    name = (await kube.create(MANIFEST))["metadata"]["name"]
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(120), kube.operator(registry=result, settings=settings()):
        await kube.wait_for("wai", name, phase("Connected"))
    assert loop.time() - start >= 60
