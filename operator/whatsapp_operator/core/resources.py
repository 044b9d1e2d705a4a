"""Typed views of the two custom resources, read from the raw bodies kopf hands over.

The CRD schema has already validated and defaulted these bodies; the defaults here only matter
for objects written before a field existed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from whatsapp_operator import GROUP

FINALIZER = f"{GROUP}/finalizer"
PAIR_REQUESTED_ANNOTATION = f"{GROUP}/pair-requested-at"
PAIRING_CODE = "pairingCode"  # spec.pairing.method: a code for spec.phoneNumber (the other is qrcode)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def instance_name_for(driver_id: str) -> str:
    """A stable, DNS-safe Evolution instance name for a driver: the id itself when it already is
    a DNS label, else a readable slug plus a hash of the exact id (so two ids never collide)."""
    if _DNS_LABEL.match(driver_id):
        return driver_id
    slug = re.sub(r"[^a-z0-9]+", "-", driver_id.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(driver_id.encode()).hexdigest()[:10]
    return f"wa-{slug}-{digest}" if slug else f"wa-{digest}"


class InstanceKey(NamedTuple):
    """A WhatsAppInstance's identity everywhere in the operator (the mirror, the probers, the fleet)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class SecretRef:
    name: str
    key: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> SecretRef | None:
        if not raw or not raw.get("name") or not raw.get("key"):
            return None
        return cls(str(raw["name"]), str(raw["key"]))


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    url: str
    api_key_ref: SecretRef
    webhook_url: str | None = None
    webhook_auth_ref: SecretRef | None = None
    probe_interval: float = 30.0
    probe_timeout: float = 5.0
    probe_attempts: int = 3
    concurrency: int = 50
    liveness_interval: float = 300.0  # 0: no liveness checks
    liveness_timeout: float = 10.0
    liveness_failure_threshold: int = 2
    liveness_max_failing_share: float = 0.3  # the outage guard: more than this failing is the fleet's fault
    failure_threshold: int = 5
    open_seconds: float = 60.0
    stuck_after: float = 30.0
    max_forced_logouts: int = 3
    max_restarts: int = 3
    sender_instance: str | None = None
    callback_url: str | None = None
    callback_secret_ref: SecretRef | None = None
    messages_configmap: str | None = None  # replaces the texts of the driver messages
    notify_reconnected: bool = False  # "your WhatsApp is back" after a notified disconnection

    @property
    def channels(self) -> tuple[str, ...]:
        """What a notification of this server's instances is delivered on."""
        return (
            *(("whatsapp",) if self.sender_instance else ()),
            "event",
            *(("callback",) if self.callback_url and self.callback_secret_ref else ()),
        )

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ServerSpec:
        api_key_ref = SecretRef.parse(spec.get("apiKeySecretRef"))
        if api_key_ref is None:
            raise ValueError("spec.apiKeySecretRef needs a name and a key")
        probe = spec.get("probe") or {}
        breaker = spec.get("circuitBreaker") or {}
        remediation = spec.get("remediation") or {}
        webhook = spec.get("webhook") or {}
        notifier = spec.get("notifier") or {}
        callback = notifier.get("callback") or {}
        return cls(
            url=str(spec["url"]).rstrip("/"),
            api_key_ref=api_key_ref,
            webhook_url=webhook.get("url") or None,
            webhook_auth_ref=SecretRef.parse(webhook.get("authSecretRef")),
            probe_interval=float(probe.get("intervalSeconds", 30)),
            probe_timeout=float(probe.get("timeoutSeconds", 5)),
            probe_attempts=int(probe.get("attempts", 3)),
            concurrency=int(probe.get("concurrency", 50)),
            liveness_interval=float(probe.get("livenessIntervalSeconds", 300)),
            liveness_timeout=float(probe.get("livenessTimeoutSeconds", 10)),
            liveness_failure_threshold=int(probe.get("livenessFailureThreshold", 2)),
            liveness_max_failing_share=float(probe.get("livenessMaxFailingPercent", 30)) / 100,
            failure_threshold=int(breaker.get("failureThreshold", 5)),
            open_seconds=float(breaker.get("openSeconds", 60)),
            stuck_after=float(remediation.get("stuckAfterSeconds", 30)),
            max_forced_logouts=int(remediation.get("maxForcedLogoutsPerHour", 3)),
            max_restarts=int(remediation.get("maxRestartsPerHour", 3)),
            sender_instance=notifier.get("senderInstance") or None,
            callback_url=callback.get("url") or None,
            callback_secret_ref=SecretRef.parse(callback.get("secretRef")),
            messages_configmap=(notifier.get("messagesConfigMapRef") or {}).get("name") or None,
            notify_reconnected=bool(notifier.get("reconnected", False)),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceSpec:
    """What the operator needs of one WhatsAppInstance's metadata and spec (its status is read once,
    by the fleet: see `engine.fleet`); small on purpose, one per instance."""

    key: InstanceKey
    uid: str
    driver_id: str
    phone: str
    driver_name: str
    instance_name: str
    server: str
    pairing_method: str
    notify: bool
    suspend: bool
    retain: bool
    generation: int
    pair_requested_at: str | None

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def pairs_by_code(self) -> bool:
        return self.pairing_method == PAIRING_CODE

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def body(self) -> dict[str, Any]:
        """Enough of the object for kopf to attach Events to it."""
        return {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "WhatsAppInstance",
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> InstanceSpec:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        driver_id = str(spec["driverId"])
        return cls(
            # Interned: the few distinct namespaces, servers and methods are shared by every instance.
            key=InstanceKey(sys.intern(str(meta.get("namespace", ""))), str(meta["name"])),
            uid=str(meta.get("uid", "")),
            driver_id=driver_id,
            phone=str(spec["phoneNumber"]),
            driver_name=str(spec.get("driverName") or ""),
            instance_name=str(spec.get("instanceName") or instance_name_for(driver_id)),
            server=sys.intern(str((spec.get("serverRef") or {}).get("name") or "default")),
            pairing_method=sys.intern(str((spec.get("pairing") or {}).get("method") or PAIRING_CODE)),
            notify=bool((spec.get("notifications") or {}).get("onDisconnect", True)),
            suspend=bool(spec.get("suspend", False)),
            retain=spec.get("deletionPolicy") == "Retain",
            generation=int(meta.get("generation") or 0),
            pair_requested_at=(meta.get("annotations") or {}).get(PAIR_REQUESTED_ANNOTATION),
        )
