"""What the kopf handlers share: passed to kopf as its `memo`, one per operator process."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from whatsapp_operator.core.resources import InstanceSpec
from whatsapp_operator.engine.config import Config
from whatsapp_operator.engine.prober import Key, ServerProber
from whatsapp_operator.kube import KubeApi
from whatsapp_operator.webhooks.worker import RetryLater

if TYPE_CHECKING:
    from whatsapp_operator.db.mirror import StatusMirror, SyncStatus
    from whatsapp_operator.engine.webhook_service import WebhookService
    from whatsapp_operator.webhooks.inbox import Job

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    config: Config
    kube: KubeApi = dataclasses.field(default_factory=KubeApi)
    probers: dict[Key, ServerProber] = dataclasses.field(default_factory=dict)
    mirror: StatusMirror | None = None
    webhooks: WebhookService | None = None
    # Every live WhatsAppInstance, for a server's prober to load when it (re)starts. Not a kopf index:
    # kopf holds every handler back until its indices are complete, and that wait grows with the
    # square of the object count (529 s before the first probe after a restart at 10,000 instances).
    instances: dict[Key, InstanceSpec] = dataclasses.field(default_factory=dict)
    # The webhook secret of each EvolutionServer, from when its daemon first read it until the server
    # goes: a prober restarting for a changed spec must not make the receiver refuse signed webhooks.
    server_secrets: dict[Key, str] = dataclasses.field(default_factory=dict)
    # The same instances by their name on Evolution, which is all a webhook names.
    by_evolution_name: dict[str, set[Key]] = dataclasses.field(default_factory=dict)

    async def shutdown(self) -> None:
        """Stop taking webhooks, then land the mirror's queued writes. Twice is harmless."""
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.mirror is not None:
            await self.mirror.stop()

    def prober(self, namespace: str, server: str) -> ServerProber | None:
        return self.probers.get((namespace, server))

    def instances_of(self, namespace: str, server: str) -> list[InstanceSpec]:
        return [s for s in self.instances.values() if s.namespace == namespace and s.server == server]

    def instance_seen(self, spec: InstanceSpec) -> None:
        """Track it under its server's prober, and only there (its serverRef may have changed).
        Without a prober yet, the server's daemon loads it from `instances` when it starts."""
        old = self.instances.get(spec.key)
        if old is not None and old.instance_name != spec.instance_name:
            self._unname(old)
        self.instances[spec.key] = spec
        self.by_evolution_name.setdefault(spec.instance_name, set()).add(spec.key)
        owner = self.prober(spec.namespace, spec.server)
        for prober in self.probers.values():
            if prober is not owner:
                prober.forget(spec.key)
        if owner is not None:
            owner.update(spec)

    def instance_gone(self, key: Key) -> None:
        spec = self.instances.pop(key, None)
        if spec is not None:
            self._unname(spec)
        for prober in self.probers.values():
            prober.forget(key)

    def _unname(self, spec: InstanceSpec) -> None:
        keys = self.by_evolution_name.get(spec.instance_name, set())
        keys.discard(spec.key)
        if not keys:
            self.by_evolution_name.pop(spec.instance_name, None)

    def webhook_secrets(self) -> Iterable[str]:
        """What a webhook may be signed with: the secrets of the EvolutionServers this replica runs."""
        return self.server_secrets.values()

    async def process_webhook(self, job: Job) -> str:
        """A webhook about an instance pulls its next probe forward; the probe reads the live state,
        so this does not depend on the order or the content of events. Events about instances no
        WhatsAppInstance uses are done with. Until the instance's server is probed (the operator is
        starting, or is a standby) the job waits, with the queue's backoff."""
        keys = sorted(self.by_evolution_name.get(job.instance, ()))
        if not keys:
            if not self.probers:
                raise RetryLater("no EvolutionServer is being probed yet")
            return f"ignored: no WhatsAppInstance uses Evolution instance {job.instance!r}"
        for namespace, name in keys:
            prober = self.prober(namespace, self.instances[(namespace, name)].server)
            if prober is None or (namespace, name) not in prober.tracked:
                raise RetryLater(f"the EvolutionServer of {namespace}/{name} is not being probed yet")
        for namespace, name in keys:
            self.probers[(namespace, self.instances[(namespace, name)].server)].probe_soon((namespace, name))
        return "probed soon: " + ", ".join(f"{ns}/{n}" for ns, n in keys)

    def on_sync(self, key: str, sync: SyncStatus) -> None:
        """The mirror's verdict on one instance changed: route it to the prober that owns it."""
        namespace, _, name = key.partition("/")
        status = "True" if sync.synced else "False"
        reason = "Synced" if sync.synced else (sync.reason or "Lagging")
        for prober in self.probers.values():
            if (namespace, name) in prober.tracked:
                prober.database_synced((namespace, name), status, reason, sync.message or "")
                return
