"""What the kopf handlers share: passed to kopf as its `memo`, one per operator process."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from whatsapp_operator.config import Config
from whatsapp_operator.kube import KubeApi
from whatsapp_operator.prober import Key, ServerProber
from whatsapp_operator.resources import InstanceSpec

if TYPE_CHECKING:
    from whatsapp_operator.mirror import StatusMirror, SyncStatus

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    config: Config
    kube: KubeApi = dataclasses.field(default_factory=KubeApi)
    probers: dict[Key, ServerProber] = dataclasses.field(default_factory=dict)
    mirror: StatusMirror | None = None
    # Every live WhatsAppInstance, for a server's prober to load when it (re)starts. Not a kopf index:
    # kopf holds every handler back until its indices are complete, and that wait grows with the
    # square of the object count (529 s before the first probe after a restart at 10,000 instances).
    instances: dict[Key, InstanceSpec] = dataclasses.field(default_factory=dict)

    def prober(self, namespace: str, server: str) -> ServerProber | None:
        return self.probers.get((namespace, server))

    def instances_of(self, namespace: str, server: str) -> list[InstanceSpec]:
        return [s for s in self.instances.values() if s.namespace == namespace and s.server == server]

    def instance_seen(self, spec: InstanceSpec) -> None:
        """Track it under its server's prober, and only there (its serverRef may have changed).
        Without a prober yet, the server's daemon loads it from `instances` when it starts."""
        self.instances[spec.key] = spec
        owner = self.prober(spec.namespace, spec.server)
        for prober in self.probers.values():
            if prober is not owner:
                prober.forget(spec.key)
        if owner is not None:
            owner.update(spec)

    def instance_gone(self, key: Key) -> None:
        self.instances.pop(key, None)
        for prober in self.probers.values():
            prober.forget(key)

    def on_sync(self, key: str, sync: SyncStatus) -> None:
        """The mirror's verdict on one instance changed: route it to the prober that owns it."""
        namespace, _, name = key.partition("/")
        status = "True" if sync.synced else "False"
        reason = "Synced" if sync.synced else (sync.reason or "Lagging")
        for prober in self.probers.values():
            if (namespace, name) in prober.tracked:
                prober.database_synced((namespace, name), status, reason, sync.message or "")
                return
