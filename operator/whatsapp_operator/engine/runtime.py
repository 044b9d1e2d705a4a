"""What the kopf handlers share: passed to kopf as its `memo`, one per operator process. It owns the
fleet, the probers and the servers' webhook secrets; handlers change them only through its methods."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from whatsapp_operator.core.notifications import Notification
from whatsapp_operator.core.resources import InstanceKey, InstanceSpec
from whatsapp_operator.core.state import ConditionStatus
from whatsapp_operator.db.outbox import Outbox
from whatsapp_operator.engine.channels import Channels
from whatsapp_operator.engine.fleet import Fleet
from whatsapp_operator.engine.metrics import Metrics
from whatsapp_operator.engine.notifier import MemoryOutbox, Notifier, NotifierSettings
from whatsapp_operator.engine.prober import ServerProber
from whatsapp_operator.engine.settings import Config
from whatsapp_operator.kube import KubeApi
from whatsapp_operator.webhooks.news import CLOSER_LOOK, news
from whatsapp_operator.webhooks.worker import RetryLater

if TYPE_CHECKING:
    from whatsapp_operator.db.mirror import StatusMirror
    from whatsapp_operator.db.sync import SyncStatus
    from whatsapp_operator.engine.drift import DriftRepair
    from whatsapp_operator.engine.http_service import HttpService
    from whatsapp_operator.webhooks.inbox import Job

logger = logging.getLogger(__name__)

ServerKey = tuple[str, str]  # (namespace, name) of an EvolutionServer


@dataclasses.dataclass
class Runtime:
    config: Config
    kube: KubeApi = dataclasses.field(default_factory=KubeApi)
    mirror: StatusMirror | None = None
    drift: DriftRepair | None = None  # with a mirror: the rows that disagree, rewritten every round
    http: HttpService | None = None  # the status API and, with a database, the webhook receiver
    notifier: Notifier | None = None
    # How the notifier paces itself; `--notify-deadline` replaces the policy's deadline. Tests in real
    # time shorten its waits (the 30 s between looks at a sender that is not open).
    notifier_settings: NotifierSettings = dataclasses.field(default_factory=NotifierSettings)
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    metrics_url: str | None = None  # the scrape endpoint's full URL once it listens
    memory_outbox: MemoryOutbox | None = None  # the outbox when there is no database
    fleet: Fleet = dataclasses.field(default_factory=Fleet)
    _probers: dict[ServerKey, ServerProber] = dataclasses.field(default_factory=dict)
    # The webhook secret of each EvolutionServer, from when its daemon first read it until the server
    # goes: a prober restarting for a changed spec must not make the receiver refuse signed webhooks.
    _server_secrets: dict[ServerKey, str] = dataclasses.field(default_factory=dict)
    _channels: Channels = dataclasses.field(init=False)

    async def shutdown(self) -> None:
        """Stop taking webhooks and delivering, then land the mirror's queued writes. Twice is harmless."""
        if self.http is not None:
            await self.http.stop()
        if self.notifier is not None:
            await self.notifier.stop()
            await self._channels.close()
            if isinstance(self.notifier.store, Outbox):
                await self.notifier.store.close()
        if self.drift is not None:
            await self.drift.stop()
        if self.mirror is not None:
            await self.mirror.stop()

    # -- notifications --------------------------------------------------------------------------

    async def start_notifier(self) -> None:
        """The outbox (Postgres, or memory without a database), the channels and their worker."""
        store: Outbox | MemoryOutbox
        if self.config.database_url:
            store = Outbox(self.config.database_url, pool_max_size=2, connection_timeout=5.0)
            await store.open()
        else:
            store = self.memory_outbox = MemoryOutbox()
        self._channels = Channels(self.prober, self.kube)
        deadline = datetime.timedelta(seconds=self.config.notify_deadline)
        policy = dataclasses.replace(self.notifier_settings.policy, deadline=deadline)
        self.notifier = Notifier(
            store,
            self._channels.deliver,
            delivered=self.notified,
            settings=dataclasses.replace(self.notifier_settings, policy=policy),
            active=self.serving,
            metrics=self.metrics,
        )
        self.notifier.start()

    def notification_decided(self, notification: Notification) -> None:
        """A prober decided to notify (with a database, its row is on its way through the mirror)."""
        if self.memory_outbox is not None:
            self.memory_outbox.add(notification)
        if self.notifier is not None:
            self.notifier.wake()

    async def notified(self, notification: Notification, at: datetime.datetime) -> None:
        key = InstanceKey(notification.namespace, notification.name)
        owner = self._owner(key)
        tracked = owner.tracked.get(key) if owner is not None else None
        if owner is not None and tracked is not None and tracked.spec.uid == notification.instance_uid:
            await owner.recorder.notified(tracked, at)

    # -- EvolutionServers -----------------------------------------------------------------------

    def serving(self) -> bool:
        """This replica probes: not a kopf peering standby (which runs no daemon), nor still starting."""
        return bool(self._probers)

    @property
    def probers(self) -> Mapping[ServerKey, ServerProber]:
        return self._probers

    def prober(self, namespace: str, server: str) -> ServerProber | None:
        return self._probers.get((namespace, server))

    def prober_started(self, prober: ServerProber) -> None:
        """A server's daemon made a prober: it takes over the server's instances."""
        self._probers[(prober.namespace, prober.name)] = prober
        prober.load(self.fleet.of_server(prober.namespace, prober.name))

    def prober_stopped(self, prober: ServerProber) -> None:
        if self._probers.get((prober.namespace, prober.name)) is prober:
            del self._probers[(prober.namespace, prober.name)]

    def server_secret(self, server: ServerKey, secret: str | None) -> None:
        """The webhook secret of a server, or None when it has none (or is gone)."""
        if secret:
            self._server_secrets[server] = secret
        else:
            self._server_secrets.pop(server, None)

    def webhook_secrets(self) -> Iterable[str]:
        """What a webhook may be signed with: the secrets of the EvolutionServers this replica runs."""
        return self._server_secrets.values()

    # -- WhatsAppInstances ----------------------------------------------------------------------

    def instance_seen(self, spec: InstanceSpec, status: Mapping[str, Any]) -> None:
        """Track it under its server's prober, and only there (its serverRef may have changed).
        Without a prober yet, the server's daemon loads it from the fleet when it starts."""
        owner = self.prober(spec.namespace, spec.server)
        member, changed = self.fleet.seen(spec, status, tracked=owner is not None and spec.key in owner.tracked)
        for prober in self._probers.values():
            if prober is not owner:
                prober.forget(spec.key)
        if owner is not None:
            owner.track(member, changed=changed)

    def instance_gone(self, key: InstanceKey) -> None:
        self.fleet.gone(key)
        for prober in self._probers.values():
            prober.forget(key)

    def driver_status(self, driver_id: str) -> list[tuple[str, bytes]]:
        """The status API's answer for each instance of this driver, from memory."""
        return [(str(m.spec.key), m.answer()) for m in self.fleet.of_driver(driver_id)]

    # -- news from the webhook queue and the mirror ---------------------------------------------

    async def process_webhook(self, job: Job) -> str:
        """A webhook about an instance pulls its next probe forward; the probe reads the live state,
        so this does not depend on the order or the content of events. Events about instances no
        WhatsAppInstance uses are done with. Until the instance's server is probed (the operator is
        starting, or is a standby) the job waits, with the queue's backoff."""
        keys = self.fleet.named(job.instance)
        if not keys:
            if not self._probers:
                raise RetryLater("no EvolutionServer is being probed yet")
            return f"ignored: no WhatsAppInstance uses Evolution instance {job.instance!r}"
        owners = [self._owner(key) for key in keys]
        for key, owner in zip(keys, owners, strict=True):
            if owner is None or key not in owner.tracked:
                raise RetryLater(f"the EvolutionServer of {key} is not being probed yet")
        observation = news(job.event, job.payload)
        for key, owner in zip(keys, owners, strict=True):
            assert owner is not None
            if observation is not None:
                owner.news(key, observation, job.received_at)
                done = "taken as news"
            elif job.event in CLOSER_LOOK:
                owner.look_closer(key)
                done = "looked at closely"
            else:
                owner.probe_soon(key)
                done = "probed soon"
        return f"{done}: " + ", ".join(map(str, keys))

    def _owner(self, key: InstanceKey) -> ServerProber | None:
        member = self.fleet.get(key)
        return None if member is None else self.prober(key.namespace, member.spec.server)

    def on_sync(self, instance: InstanceKey, sync: SyncStatus) -> None:
        """The mirror's verdict on one instance changed: route it to the prober that owns it."""
        status = ConditionStatus.TRUE if sync.synced else ConditionStatus.FALSE
        reason = "Synced" if sync.synced else (sync.reason or "Lagging")
        owner = self._owner(instance)
        if owner is not None and instance in owner.tracked:
            owner.database_synced(instance, status, reason, sync.message or "")
