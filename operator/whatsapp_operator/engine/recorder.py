"""What the operator records of one EvolutionServer's instances, and where: `.status` (only what
changed), Kubernetes Events, and the Postgres mirror's rows. The one place a decision leaves the
process, so notifications and metrics hook in here."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import kopf

from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core.notifications import Notification
from whatsapp_operator.core.pairing import SOCKET_ENDED
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.phone import InvalidPhoneNumber, normalize_phone
from whatsapp_operator.core.resources import InstanceKey
from whatsapp_operator.core.state import (
    Action,
    Condition,
    ConditionStatus,
    Event,
    InstanceState,
    Notify,
    set_condition,
    stuck,
)
from whatsapp_operator.core.status import DATABASE_SYNCED, InstanceStatus, normalize, server_status, status_patch
from whatsapp_operator.kube import KubeApi, KubeError

if TYPE_CHECKING:
    from whatsapp_operator.db.mirror import StatusMirror
    from whatsapp_operator.engine.tracked import Tracked

logger = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        *,
        namespace: str,
        server: str,
        kube: KubeApi,
        mirror: StatusMirror | None,
        clock: LoopClock,
        forget: Callable[[InstanceKey], None],
        wake: Callable[[], None],
        channels: tuple[str, ...] = ("event",),
        decided: Callable[[Notification], None] = lambda _: None,
    ) -> None:
        """`channels`: what a notification of this server is delivered on; `decided(notification)`
        hands each decision to the notifier (with a mirror, the outbox row goes through the mirror)."""
        self.namespace = namespace
        self.server = server
        self.kube = kube
        self.mirror = mirror
        self.clock = clock
        self._forget = forget  # the object is gone from the cluster
        self._wake = wake  # the prober's loop, which writes the server's status
        self.channels = channels
        self._decided = decided
        self._sender_ready: Condition | None = None
        self._message_problems: tuple[str, ...] = ()
        self.server_dirty = True  # the EvolutionServer's status needs a look
        self._written_server: dict[str, Any] = {}
        self._reachable: bool | None = None
        self._server_ready: Condition | None = None
        self._instances_live: Condition | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- one instance ---------------------------------------------------------------------------

    async def commit(self, t: Tracked, new: InstanceState, notify: Notify | None = None) -> None:
        """The machine's new state: record a phase change (and a decision to notify, in the same
        transaction) in the mirror, then write the status, which holds the decision for good."""
        old = t.state
        # An equal state keeps the object the status was written from (no second copy in memory).
        new = normalize(new) if new != old else old
        notification = self._notification(t, new, notify) if notify is not None else None
        if new is not old and (new.phase is not old.phase or stuck(new) != stuck(old)):
            self.server_dirty = True  # the server's counts change
        if new.phase is not old.phase and new.phase in SOCKET_ENDED:
            t.code.forget()  # the mirror clears the row's code with the transition
        # A reason learnt after the change (the QR limit's refusal after a probe saw `close`) is history too.
        learnt = new.phase is old.phase and new.status_reason not in (None, old.status_reason)
        if self.mirror is not None and (new.phase is not old.phase or learnt):
            self._mirror_transition(t, old, new, notification, at=self.clock.now() if learnt else None)
        elif notification is not None and self.mirror is not None:
            self.mirror.record_notification(t.spec.key, notification)
        if new.phase is not old.phase:
            t.forced = False
        t.member.state = new
        await self.write_status(t)
        if notification is not None:
            self._decided(notification)

    def recover(self, t: Tracked, since: datetime.datetime) -> None:
        """A decision `.status` holds from after `since` (a restart, a standby taking over): the
        outbox gets its row unless it has one (the mirror's insert is a no-op then)."""
        state = t.state
        if self.mirror is None or state.notify_episode is None or state.notify_kind is None:
            return
        # notifyDecisionTime is the disconnection's (the cooldown's start); "reconnected" was decided
        # when the instance connected again (a later drop and reconnect moves it: docs/notifications.md).
        at = state.last_connected if state.notify_kind == "reconnected" else state.notify_decided
        if at is None or at < since:
            return
        notify = Notify(state.notify_kind, state.notify_episode, at)
        self.mirror.record_notification(t.spec.key, self._notification(t, state, notify))

    def _notification(self, t: Tracked, state: InstanceState, notify: Notify) -> Notification:
        spec = t.spec
        return Notification(
            instance_uid=spec.uid,
            episode=notify.episode,
            namespace=spec.namespace,
            name=spec.name,
            instance=spec.instance_name,
            server=self.server,
            driver_id=spec.driver_id,
            driver_name=spec.driver_name,
            phone=_e164(spec.phone),
            kind=notify.kind,
            reason=state.status_reason,
            decided_at=notify.at,
            channels=self.channels,
        )

    async def notified(self, t: Tracked, at: datetime.datetime) -> None:
        """A channel delivered: `.status.lastNotifiedTime` says so."""
        if t.state.last_notified is None or t.state.last_notified < at:
            t.member.state = normalize(dataclasses.replace(t.state, last_notified=at))
            await self.write_status(t)

    def _mirror_transition(
        self,
        t: Tracked,
        old: InstanceState,
        new: InstanceState,
        notification: Notification | None,
        at: datetime.datetime | None = None,
    ) -> None:
        assert self.mirror is not None
        spec = t.spec
        self.mirror.record_transition(
            key=spec.key,
            instance=spec.instance_name,
            driver_id=spec.driver_id,
            from_phase=old.phase,
            to_phase=new.phase,
            state=new.state,
            reason=new.status_reason,
            forced=t.forced,
            at=at or new.last_transition or self.clock.now(),  # the time `.status` shows for this change
            notification=notification,
        )

    async def write_status(self, t: Tracked) -> None:
        """PATCH what changed. A probe that found nothing new leaves every input of the status as it
        was (the machine returns the very same state), and is done after one tuple comparison."""
        member, spec = t.member, t.spec
        desired = InstanceStatus(
            member.state, member.db_condition, spec.instance_name, self.server, spec.generation, member.pair_handled
        )
        if desired == member.written:
            return
        written = member.written.render()
        if member.written.generation is None:  # no status of ours yet: an empty one reads as Pending
            del written["phase"]  # but does not show it (an instance whose pairing waits stays Pending)
        patch = status_patch(written, desired.render())
        if patch:
            try:
                await self.kube.patch_status("whatsappinstances", spec.namespace, spec.name, patch)
            except KubeError as exc:
                if exc.status == 404:
                    self._forget(spec.key)
                else:  # the next probe tries again
                    logger.warning("writing the status of %s: %s", spec.key, exc)
                return
        member.written = desired

    def database_synced(self, t: Tracked, status: str, reason: str, message: str) -> None:
        """The mirror's verdict on one instance changed: show it as condition DatabaseSynced."""
        member = t.member
        current = (member.db_condition,) if member.db_condition is not None else ()
        (condition,) = set_condition(current, DATABASE_SYNCED, status, reason, message, self.clock.now())
        if condition != member.db_condition:
            member.db_condition = condition
            self._background.add(task := asyncio.get_running_loop().create_task(self.write_status(t)))
            task.add_done_callback(self._background.discard)

    def pairing_code(
        self, t: Tracked, code: str | None, generated_at: datetime.datetime, *, first: bool, qr: str | None = None
    ) -> None:
        """A new pairing code (or, pairing by QR, the QR's payload) goes to the application's row, and
        nowhere else; `first`: the first code of a pairing attempt, which starts the count again."""
        if self.mirror is not None and t.code.valid_until is not None:
            self.mirror.record_pairing_code(
                key=t.spec.key,
                driver_id=t.spec.driver_id,
                code=code,
                generated_at=generated_at,
                expires_at=t.code.valid_until,
                first=first,
                qr=qr,
            )

    def code_died(self, t: Tracked) -> None:
        """A forced logout ended the socket that showed the row's code: the code goes from the row
        before the new socket's first code (the phase, unchanged, records nothing that would)."""
        if self.mirror is not None:
            self.mirror.clear_pairing_code(key=t.spec.key, driver_id=t.spec.driver_id)

    def event(self, t: Tracked, type: str, reason: str, message: str) -> None:
        kopf.event(t.spec.body, type=type, reason=reason, message=message)

    def emit(self, t: Tracked, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, Event):
                self.event(t, action.type, action.reason, action.message)

    # -- the EvolutionServer --------------------------------------------------------------------

    def reachable(self, reachable: bool) -> None:
        """Ready on the EvolutionServer: unknown until Evolution first answers."""
        if self._reachable is not reachable:
            self._reachable = reachable
            self.server_dirty = True
            self._wake()

    @property
    def sender_is_ready(self) -> bool | None:
        """None until a message was due (the sender is looked at only then)."""
        return None if self._sender_ready is None else self._sender_ready.status == ConditionStatus.TRUE

    def messages_checked(self, problems: list[str]) -> None:
        """What is wrong with the server's message ConfigMap (the defaults stand in): an Event when
        that changes, not one per message."""
        if tuple(problems) != self._message_problems:
            self._message_problems = tuple(problems)
            if problems:
                self._server_event("Warning", "MessagesInvalid", "; ".join(problems) + "; using the default texts")

    def sender_ready(self, ready: bool, reason: str, message: str) -> None:
        """SenderReady on the EvolutionServer, and an Event when it changes."""
        status = ConditionStatus.TRUE if ready else ConditionStatus.FALSE
        if self._sender_ready is not None and (self._sender_ready.status, self._sender_ready.reason) == (
            status,
            reason,
        ):
            return
        first = self._sender_ready is None
        self._sender_ready = Condition("SenderReady", status, reason, message, self.clock.now())
        self.server_dirty = True
        self._wake()
        if not (first and ready):  # "the sender is ready" is news only after it was not
            self._server_event("Normal" if ready else "Warning", reason, message)

    def instances_live(self, live: bool, failed: int, checked: int) -> None:
        """The outage guard turned (engine.liveness): InstancesLive on the EvolutionServer, absent until
        it first holds, and an Event each way."""
        share = f"{failed} of the {checked} instances checked within the last liveness interval failed"
        if live:
            reason, message = "InstancesLive", f"{share}; failed checks count again"
        else:
            reason = "FleetWideLivenessFailure"
            message = f"{share}: Evolution or WhatsApp is failing, not the instances; no phase changes, no remediation"
        status = ConditionStatus.TRUE if live else ConditionStatus.FALSE
        self._instances_live = Condition("InstancesLive", status, reason, message, self.clock.now())
        self.server_dirty = True
        self._wake()
        self._server_event("Normal" if live else "Warning", reason, message)

    def _server_event(self, type: str, reason: str, message: str) -> None:
        involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EvolutionServer", "name": self.server}
        event = self.kube.create_event(
            involved | {"namespace": self.namespace}, type=type, reason=reason, message=message
        )
        self._background.add(task := asyncio.get_running_loop().create_task(_logged(event)))
        task.add_done_callback(self._background.discard)

    async def write_server_status(self, breaker: str, instances: Mapping[tuple[Phase, bool], int]) -> None:
        if not self.server_dirty:
            return
        self.server_dirty = False
        if self._reachable is not None:
            ready = ConditionStatus.TRUE if self._reachable else ConditionStatus.FALSE
            if self._server_ready is None or self._server_ready.status != ready:
                reason = "Reachable" if self._reachable else "BreakerOpen"
                self._server_ready = Condition("Ready", ready, reason, "", self.clock.now())
        conditions = tuple(c for c in (self._server_ready, self._sender_ready, self._instances_live) if c is not None)
        patch = status_patch(self._written_server, server_status(breaker, instances, conditions))
        if not patch:
            return
        try:
            await self.kube.patch_status("evolutionservers", self.namespace, self.server, patch)
        except KubeError as exc:
            logger.warning("writing the status of EvolutionServer %s/%s: %s", self.namespace, self.server, exc)
            self.server_dirty = True
            return
        self._written_server.update(patch)


async def _logged(posting: Awaitable[None]) -> None:
    try:
        await posting
    except KubeError as exc:
        logger.warning("posting an Event: %s", exc)


def _e164(phone: str) -> str:
    """The driver's number as the message goes out; one that cannot be normalised stays as written,
    and its delivery fails for that reason (the probe path reports it too: InvalidPhoneNumber)."""
    try:
        return normalize_phone(phone)
    except InvalidPhoneNumber:
        return phone
