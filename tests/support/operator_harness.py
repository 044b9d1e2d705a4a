"""pytest fixtures running the real operator (`operate()`) against the strict Kubernetes emulator and
the Evolution simulator, all on the test's own event loop so that looptime fast-forwards every clock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.manifests import (
    NAMESPACE,
    STATUS_API_SECRET,
    peering_manifest,
    secret_manifest,
    server_manifest,
    status_api_secret_manifest,
    webhook_spec,
)
from whatsapp_operator.devkit.manifests import instance_manifest as instance_manifest
from whatsapp_operator.devkit.manifests import phase_changes as phase_changes
from whatsapp_operator.devkit.manifests import phases_seen as phases_seen
from whatsapp_operator.devkit.manifests import statuses_seen as statuses_seen
from whatsapp_operator.devkit.simulator import Simulator
from whatsapp_operator.devkit.simulator.instance import SimInstance
from whatsapp_operator.engine.runner import running
from whatsapp_operator.engine.runtime import Runtime
from whatsapp_operator.engine.settings import Config
from whatsapp_operator.http_server import free_port

API_KEY = "simulator-api-key"
WEBHOOK_SECRET = "shared-webhook-secret-of-32-bytes-or-more"
STATUS_API_TOKEN = "status-api-token-of-the-tests-0123456789"


@contextlib.asynccontextmanager
async def backends(
    callback_secret: str | None = None, *, tokens: Mapping[str, str] | None = None, **server_spec: Any
) -> AsyncIterator[tuple[EmulatedCluster, Simulator]]:
    """The API server (with the EvolutionServer "default" and its Secret, which holds WEBHOOK_SECRET
    too) and Evolution, for operators to run against; the emulator's complaints fail the test at the end.
    No liveness checks unless `server_spec` asks for them.
    `tokens`: the bearer tokens the API server requires (EmulatedCluster's)."""
    # Liveness checks bring a Connected instance's probe forward at a random time within their
    # interval: tests that count probes, or see changes only by webhook, would meet them by chance.
    # Liveness tests ask for them (spec.probe.livenessIntervalSeconds).
    server_spec["probe"] = {"livenessIntervalSeconds": 0, **(server_spec.get("probe") or {})}
    async with EmulatedCluster(tokens=tokens) as kube:
        sim = Simulator(api_key=API_KEY, seed=1)
        await sim.start()
        try:
            await kube.create(secret_manifest(API_KEY, webhook_secret=WEBHOOK_SECRET, callback_secret=callback_secret))
            assert sim.base_url is not None
            await kube.create(server_manifest(sim.base_url, **server_spec))
            yield kube, sim
        finally:
            await sim.stop()
        violations = kube.violations()
    assert not violations, "a real API server would have dropped or refused:\n" + "\n".join(violations)


# `whatsapp-operator run` as a process of its own, with what the tests leave off.
RUN = [str(Path(sys.executable).with_name("whatsapp-operator")), "run", "--log-format", "plain"]
RUN += ["--liveness", "off", "--webhook-listen", "off", "--metrics-listen", "off"]


def outside_a_cluster() -> dict[str, str]:
    """This environment without the in-cluster hint: kopf logs in from what the test gives it."""
    return {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}


def operator_runtime(
    kube: EmulatedCluster, database_url: str | None = None, webhook_listen: str = "127.0.0.1:0", **settings: Any
) -> Runtime:
    """`settings`: more of `Config`'s fields, or others than these (`kube_server=None`: log in as
    `run` does, through the kubeconfig)."""
    defaults: dict[str, Any] = {
        "kube_server": kube.url,
        "liveness": None,
        "database_url": database_url,
        "webhook_listen": webhook_listen,
        "metrics_listen": "127.0.0.1:0",  # a free port: scraped through runtime.metrics_url
    }
    return Runtime(Config(**(defaults | settings)))


@contextlib.asynccontextmanager
async def environment(
    *,
    database_url: str | None = None,
    webhooks: bool = False,
    callback_secret: str | None = None,
    status_api: bool = False,
    peering: str | None = None,
    **server_spec: Any,
) -> AsyncIterator[tuple[EmulatedCluster, Simulator, Runtime]]:
    """The whole job started from the test body, so that every clock is looptime's from the start
    (fixtures run before looptime takes over the loop's clock, and timers armed there misfire).
    `database_url` turns the Postgres mirror on; `webhooks` (with it) the EvolutionServer's webhook,
    which names the operator's receiver, so that Evolution's events reach the operator; `status_api`
    the status API's token Secret (STATUS_API_TOKEN), named in the operator's settings; `peering` a
    ClusterKopfPeering of that name, which the operator joins (kopf waits for it to exist)."""
    listen = "127.0.0.1:0"
    if webhooks:
        listen = f"127.0.0.1:{free_port()}"
        server_spec["webhook"] = webhook_spec(f"http://{listen}/webhooks/evolution")
    async with backends(callback_secret, **server_spec) as (kube, sim):
        settings: dict[str, Any] = {}
        if status_api:
            await kube.create(status_api_secret_manifest(STATUS_API_TOKEN))
            settings["status_api_secret"] = (NAMESPACE, STATUS_API_SECRET)
        if peering is not None:
            await kube.create(peering_manifest(peering))
            settings["peering"] = peering
        runtime = operator_runtime(kube, database_url, listen, **settings)
        async with running(runtime):
            yield kube, sim, runtime


def phase_is(*phases: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in phases


async def wait_instance(
    kube: EmulatedCluster, name: str, predicate: Callable[[dict[str, Any]], bool], within: float = 120
) -> dict[str, Any]:
    """The WhatsAppInstance `name` once it exists and `predicate` holds for it."""
    async with asyncio.timeout(within):
        obj = await kube.wait_for("whatsappinstances", name, lambda o: o is not None and predicate(o))
    assert obj is not None
    return obj


async def wait_phase(kube: EmulatedCluster, name: str, *phases: str, within: float = 120) -> dict[str, Any]:
    return await wait_instance(kube, name, phase_is(*phases), within)


async def exhaust_remediation(kube: EmulatedCluster, sim: Simulator, name: str) -> dict[str, Any]:
    """A new instance stuck connecting three times in a row: three forced logouts, then the hour's
    budget is spent (Stuck, reason RemediationExhausted). Returns the instance then."""
    sim.add_instance(name, "connecting")
    await kube.create(instance_manifest(name))
    for episode in range(1, 4):
        await wait_phase(kube, name, "Pairing", within=60)
        assert len(requests_to(sim, "DELETE", f"/instance/logout/{name}")) == episode
        sim.act(name, "stick")
        await wait_phase(kube, name, "Connecting", within=60)
    return await wait_instance(kube, name, lambda o: condition(o, "Stuck")["reason"] == "RemediationExhausted", 60)


async def wait_event(kube: EmulatedCluster, name: str, reason: str, within: float = 30) -> list[dict[str, Any]]:
    """Events are posted by kopf in the background: wait for them."""
    async with asyncio.timeout(within):
        while not (events := kube.emulator.events(name=name, reason=reason)):
            await kube.emulator.next_change()
    return events


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"].get("conditions", []) if c["type"] == type_)


def requests_to(sim: Simulator, method: str, prefix: str) -> list[Any]:
    return [r for r in sim.requests if r.method == method and r.path.startswith(prefix)]


def loop_now() -> float:
    return asyncio.get_running_loop().time()


def utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


class IssuedCodes:
    """Every pairing code and QR payload the simulator issues, with when (the loop's time): read from
    the QRCODE_UPDATED events it emits, which it emits whether or not a webhook listens."""

    def __init__(self, simulator: Simulator) -> None:
        self.issued: list[tuple[str, float, str, str | None]] = []  # instance, at, QR payload, pairing code
        emit = simulator.emit

        def recording(instance: SimInstance, event: str, data: Any) -> asyncio.Task[None] | None:
            qrcode = (data or {}).get("qrcode") if event == "qrcode.updated" else None
            if qrcode:
                self.issued.append((instance.name, simulator.loop.time(), qrcode["code"], qrcode.get("pairingCode")))
            return emit(instance, event, data)

        simulator.emit = recording  # type: ignore[method-assign]  # observed, not replaced

    def pairing_codes(self, instance: str) -> list[tuple[float, str]]:
        return [(at, code) for name, at, _, code in self.issued if name == instance and code]

    def secrets(self) -> set[str]:
        return {secret for _, _, qr, code in self.issued for secret in (qr, code) if secret}
