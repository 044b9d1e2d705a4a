"""Manifests of our resources and their Secret, and what the API emulator kept of an object's statuses:
shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from whatsapp_operator import GROUP, VERSION

if TYPE_CHECKING:
    from whatsapp_operator.devkit.kube_emulator import EmulatedCluster

API_VERSION = f"{GROUP}/{VERSION}"
NAMESPACE = "default"
SERVER = "default"
SECRET, SECRET_KEY, WEBHOOK_SECRET_KEY = "evolution", "apiKey", "webhookSecret"
CALLBACK_SECRET_KEY = "callbackSecret"
STATUS_API_SECRET = "status-api"


def secret_manifest(
    api_key: str, name: str = SECRET, webhook_secret: str | None = None, callback_secret: str | None = None
) -> dict[str, Any]:
    """Evolution's API key, and the webhook and callback secrets when there are (`webhook_spec` and
    `notifier_spec` refer to them)."""
    values = {SECRET_KEY: api_key} | ({WEBHOOK_SECRET_KEY: webhook_secret} if webhook_secret else {})
    values |= {CALLBACK_SECRET_KEY: callback_secret} if callback_secret else {}
    return _secret(name, values)


def status_api_secret_manifest(
    token: str, previous: str | None = None, name: str = STATUS_API_SECRET
) -> dict[str, Any]:
    """The status API's bearer token (`--status-api-secret default/<name>`), and the one it replaces."""
    return _secret(name, {"token": token} | ({"previous-token": previous} if previous else {}))


def _secret(name: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }


def peering_manifest(name: str) -> dict[str, Any]:
    """The ClusterKopfPeering an active/standby pair joins (kopf creates none: it waits for it)."""
    return {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}


def webhook_spec(url: str) -> dict[str, Any]:
    """An EvolutionServer's `webhook`: the operator's receiver, and the Secret key of its secret."""
    return {"url": url, "authSecretRef": {"name": SECRET, "key": WEBHOOK_SECRET_KEY}}


def notifier_spec(sender: str, callback_url: str | None = None) -> dict[str, Any]:
    """An EvolutionServer's `notifier`: the sender instance, and the application's callback."""
    callback = {"callback": {"url": callback_url, "secretRef": {"name": SECRET, "key": CALLBACK_SECRET_KEY}}}
    return {"senderInstance": sender} | (callback if callback_url else {})


def server_manifest(url: str, name: str = SERVER, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "EvolutionServer",
        "metadata": {"name": name},
        "spec": {"url": url, "apiKeySecretRef": {"name": SECRET, "key": SECRET_KEY}, **spec},
    }


def instance_manifest(
    name: str, *, driver_id: str | None = None, phone: str = "(11) 98765-4321", **spec: Any
) -> dict[str, Any]:
    """A WhatsAppInstance named `name` for the driver `driver_id` (default: the same)."""
    driver_id = name if driver_id is None else driver_id
    return {
        "apiVersion": API_VERSION,
        "kind": "WhatsAppInstance",
        "metadata": {"name": name},
        "spec": {"driverId": driver_id, "phoneNumber": phone, "driverName": f"Driver {driver_id}", **spec},
    }


def statuses_seen(cluster: EmulatedCluster, name: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every version of a WhatsAppInstance's `.status`, oldest first: the emulator keeps them all."""
    ref = cluster.emulator.resolve("whatsappinstances").ref
    return [(version or {}).get("status") or {} for version in cluster.emulator.objects[ref, namespace, name].history]


def phase_changes(cluster: EmulatedCluster, name: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The first status of each phase the object went through, in order."""
    changes: list[dict[str, Any]] = []
    for status in statuses_seen(cluster, name, namespace):
        if status.get("phase") and (not changes or changes[-1]["phase"] != status["phase"]):
            changes.append(status)
    return changes


def phases_seen(cluster: EmulatedCluster, name: str, namespace: str = NAMESPACE) -> list[str]:
    """Every phase the object's status ever had, in order."""
    return [status["phase"] for status in phase_changes(cluster, name, namespace)]
