"""What the kopf handlers share: passed to kopf as its `memo`, one per operator process."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from whatsapp_operator.config import Config
from whatsapp_operator.kube import KubeApi
from whatsapp_operator.prober import Key, ServerProber

if TYPE_CHECKING:
    from whatsapp_operator.mirror import StatusMirror, SyncStatus

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    config: Config
    kube: KubeApi = dataclasses.field(default_factory=KubeApi)
    probers: dict[Key, ServerProber] = dataclasses.field(default_factory=dict)
    mirror: StatusMirror | None = None

    def prober(self, namespace: str, server: str) -> ServerProber | None:
        return self.probers.get((namespace, server))

    def on_sync(self, key: str, sync: SyncStatus) -> None:
        """The mirror's verdict on one instance changed: route it to the prober that owns it."""
        namespace, _, name = key.partition("/")
        status = "True" if sync.synced else "False"
        reason = "Synced" if sync.synced else (sync.reason or "Lagging")
        for prober in self.probers.values():
            if (namespace, name) in prober.tracked:
                prober.database_synced((namespace, name), status, reason, sync.message or "")
                return
