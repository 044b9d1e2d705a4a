"""pytest fixtures: a strict in-process Kubernetes API with the project's CRDs, and kopf pointed at it.

Register once, in tests/conftest.py: ``pytest_plugins = ["tests.kube"]``. Then::

    async def test_something(kube: EmulatedCluster) -> None:
        await kube.create(manifest)  # kubectl create -f, in namespace "default"
        async with asyncio.timeout(10), kube.operator(registry=registry, settings=settings):
            await kube.wait_for("wai", "maria", lambda obj: obj and obj.get("status", {}).get("phase") == "Connected")
        assert kube.emulator.writes("whatsappinstances", subresource="status", user_agent="kopf") == 1
        assert kube.emulator.events(name="maria", reason="Connected")

`kube` is a running `whatsapp_operator.devkit.kube_emulator.EmulatedCluster`: `.url`, `.operator()` for
`kopf.operator(vault=...)`, `.operator(...)` to run a kopf registry against it, kubectl's verbs
(`create`, `get`, `list`, `patch`, `replace`, `delete`, `wait_for`), and `.emulator` for the write
counters, Events, pruned fields and stored objects.

At teardown it fails the test if anyone but the test's own verbs wrote a field the CRD does not
declare (a real API server would have pruned it silently) or had a write refused as invalid: see
`EmulatedCluster.violations()`. A test that provokes either on purpose clears
`kube.emulator.pruned` / `kube.emulator.write_log` after asserting on them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from whatsapp_operator.devkit.kube_emulator import EmulatedCluster


@pytest.fixture
async def kube() -> AsyncIterator[EmulatedCluster]:
    async with EmulatedCluster() as cluster:
        yield cluster
        violations = cluster.violations()
    assert not violations, "a real API server would have dropped or refused:\n" + "\n".join(violations)
