"""One prober per EvolutionServer: probes its instances on their own deadlines and reconciles.

A fixed pool of `concurrency` workers takes due instances from a queue, so the number of tasks and
connections is bounded whatever the fleet size; one `Schedule` heap holds every deadline, so an
idle instance costs a heap entry and a small record, not a timer or a task. All decisions are the
state machine's (`machine.reconcile`); this module only does the I/O around it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import hashlib
import logging
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import kopf

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core import machine
from whatsapp_operator.core.breaker import BreakerState, CircuitBreaker
from whatsapp_operator.core.machine import Condition, InstanceState, Observation, Outcome
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.phone import InvalidPhoneNumber, evolution_number, normalize_phone
from whatsapp_operator.core.resources import InstanceSpec, ServerSpec
from whatsapp_operator.core.schedule import Schedule
from whatsapp_operator.core.status import from_status, normalize, status_patch, to_condition, to_status
from whatsapp_operator.evolution import EvolutionClient
from whatsapp_operator.evolution import errors as evo_errors
from whatsapp_operator.evolution.models import InstanceState as EvoState
from whatsapp_operator.evolution.models import QRCode, WebhookSettings
from whatsapp_operator.kube import KubeApi, KubeError

if TYPE_CHECKING:
    from whatsapp_operator.db.mirror import StatusMirror

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name) of a WhatsAppInstance
LOGOUT_POLLS, LOGOUT_POLL_SECONDS = 10, 0.3
DUE_TOLERANCE = 0.001  # seconds
WEBHOOK_EVENTS = ("CONNECTION_UPDATE", "QRCODE_UPDATED", "STATUS_INSTANCE")


def mirror_key(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclasses.dataclass(slots=True)
class Tracked:
    """The prober's memory of one instance (sized for 10,000 per replica)."""

    spec: InstanceSpec
    state: InstanceState
    written: dict[str, Any]  # the status as last written or read: the base of every patch
    db_condition: Condition | None = None
    code_fingerprint: str | None = None  # a hash of the last code seen, never the code
    code_valid_until: datetime.datetime | None = None
    exists: bool = False  # the Evolution instance is known to exist
    pair_handled: str | None = None  # the last pair-requested-at annotation answered
    forced: bool = False  # the next recorded transition follows a forced logout
    webhook_checked: bool = False  # the Evolution instance's webhook is known to be ours
    written_for: tuple[Any, ...] | None = None  # what `written` was made from (see write_status)


class ServerProber:
    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        spec: ServerSpec,
        api_key: str,
        kube: KubeApi,
        mirror: StatusMirror | None = None,
        webhook_secret: str | None = None,
        notify_cooldown: datetime.timedelta = datetime.timedelta(minutes=30),
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.spec = spec
        self.kube = kube
        self.mirror = mirror
        self.webhook_secret = webhook_secret
        self.notify_cooldown = notify_cooldown
        self.clock = LoopClock()
        self.breaker = CircuitBreaker(spec.failure_threshold, spec.open_seconds, on_change=self._breaker_changed)
        self.client = EvolutionClient(
            spec.url,
            api_key,
            timeout=spec.probe_timeout,
            attempts=spec.probe_attempts,
            breaker=self.breaker,
            max_connections=spec.concurrency,
        )
        self.tracked: dict[Key, Tracked] = {}
        self.schedule: Schedule[Key] = Schedule()
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._reachable: bool | None = None
        self._written_server: dict[str, Any] = {}
        self._server_dirty = True
        self._server_ready: Condition | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._queued: set[Key] = set()  # due, waiting for a worker: out of the schedule
        self._probing: set[Key] = set()  # out of the schedule while a worker probes them
        self._again: set[Key] = set()  # something happened during their probe: probe once more

    # -- membership: watch events (through the Runtime) tell the prober what exists --------------

    def load(self, specs: Iterable[InstanceSpec]) -> None:
        for spec in specs:
            self.update(spec)

    def update(self, spec: InstanceSpec) -> None:
        """An instance was seen (a watch event, or the load at start): track it, or notice what changed."""
        now = self.clock.monotonic()
        tracked = self.tracked.get(spec.key)
        if tracked is None:
            state = from_status(spec.status)
            self.tracked[spec.key] = Tracked(
                spec=spec,
                state=state,
                written=dict(spec.status),
                exists=state.phase is not Phase.PENDING,
                pair_handled=spec.status.get("pairRequestHandled"),
            )
            if state.phase is Phase.PENDING:
                self.schedule.set(spec.key, now)  # new: probe right away
            else:
                self.schedule.add_jittered(spec.key, now, self.spec.probe_interval)
            self._server_dirty = True
            self._wake.set()
        elif tracked.spec != spec:
            tracked.spec = spec
            self._pull(spec.key, now)

    def forget(self, key: Key) -> None:
        if self.tracked.pop(key, None) is not None:
            self.schedule.remove(key)
            self._server_dirty = True

    def probe_soon(self, key: Key) -> None:
        """Something happened to this instance (a webhook): do not wait for its next tick."""
        if key in self.tracked:
            self._pull(key, self.clock.monotonic())

    def _pull(self, key: Key, at: float) -> None:
        """Never two probes of one instance at once: one in flight may have looked before the news,
        so it is followed by another instead; one waiting for a worker will see the news anyway."""
        if key in self._queued:
            return
        if key in self._probing:
            self._again.add(key)
        elif self.schedule.pull_forward(key, at):
            self._wake.set()

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker(), name=f"probe-{i}") for i in range(self.spec.concurrency)]
        try:
            while True:
                # A deadline a hair in the future is due: a wait shorter than the clock's resolution
                # would return without time moving on (a busy loop under looptime's clock).
                for key in self.schedule.pop_due(self.clock.monotonic() + DUE_TOLERANCE):
                    self._queued.add(key)
                    self._queue.put_nowait(key)
                await self._write_server_status()
                deadline = self.schedule.next_deadline()
                self._wake.clear()
                timeout = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.client.aclose()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            tracked = self.tracked.get(key)
            if tracked is None:
                continue
            self._probing.add(key)
            try:
                next_at = await self._probe(tracked)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("probing %s/%s failed unexpectedly", *key)
                next_at = self.clock.monotonic() + self.spec.probe_interval
            finally:
                self._probing.discard(key)
            if key in self._again:
                self._again.discard(key)
                next_at = self.clock.monotonic()
            if next_at is not None and self.tracked.get(key) is tracked:
                self.schedule.pull_forward(key, next_at)
                self._wake.set()

    # -- one probe ------------------------------------------------------------------------------

    def _policy(self, spec: InstanceSpec) -> machine.Policy:
        return machine.Policy(
            stuck_after=datetime.timedelta(seconds=self.spec.stuck_after),
            max_forced_logouts=self.spec.max_forced_logouts,
            notify_cooldown=self.notify_cooldown,
            notifications_enabled=spec.notify,
        )

    async def _probe(self, t: Tracked) -> float | None:
        """Observe, decide, act, record. Returns the loop time of the next probe (None: none)."""
        if t.spec.suspend:
            await self._commit(t, machine.suspended(t.state, self.clock.now()))
            return None
        obs = await self._observe(t)
        if obs.outcome is not Outcome.FAILED:
            self._set_reachable(True)
        decision = machine.reconcile(t.state, obs, self.clock.now(), self._policy(t.spec))
        await self._commit(t, decision.state)
        self._emit(t, decision.actions)
        follow_up = await self._act(t, decision.actions)
        if follow_up is not None:
            decision = machine.reconcile(t.state, follow_up, self.clock.now(), self._policy(t.spec))
            await self._commit(t, decision.state)
            self._emit(t, decision.actions)
        interval_at = self.clock.monotonic() + self.spec.probe_interval
        if decision.recheck_at is None:
            return interval_at
        # A little after the deadline, so that the deadline has really passed when we look.
        return min(interval_at, self.clock.loop_time(decision.recheck_at) + 0.5)

    async def _observe(self, t: Tracked) -> Observation:
        try:
            if not t.exists:
                await self._ensure_created(t)
            if not t.webhook_checked:
                await self._ensure_webhook(t)
            if t.spec.pair_requested_at and t.spec.pair_requested_at != t.pair_handled:
                answer = await self._start_pairing(t)
                t.pair_handled = t.spec.pair_requested_at  # only once answered: a failed call is retried
                return await self._pairing_observation(t, answer)
            live = await self.client.connection_state(t.spec.instance_name)
            state = live.state
            if state == "close" and t.state.phase is Phase.PENDING:
                return await self._pairing_observation(t, await self._start_pairing(t))
            if state == "connecting" and self._valid_code(t) is None:
                answer = await self.client.connect(t.spec.instance_name)
                return await self._pairing_observation(t, answer, same_socket=True)
            reason = 200 if state == "open" else None
            if state == "close":
                reason = await self._close_reason(t)
            return Observation(Outcome.STATE, state=state, reason=reason, code_valid_until=self._valid_code(t))
        except evo_errors.InstanceNotFound:
            t.exists = False
            return Observation(Outcome.MISSING)
        except evo_errors.EvolutionUnavailable as exc:
            return Observation(Outcome.FAILED, error=_failure_reason(exc))
        except evo_errors.EvolutionError as exc:
            logger.warning("probing %s: %s", t.spec.instance_name, exc)
            return Observation(Outcome.FAILED, error=type(exc).__name__)

    def _valid_code(self, t: Tracked) -> datetime.datetime | None:
        valid = t.code_valid_until is not None and t.code_valid_until > self.clock.now()
        return t.code_valid_until if valid else None

    async def _pairing_observation(
        self, t: Tracked, answer: QRCode | EvoState, *, same_socket: bool = False
    ) -> Observation:
        """Make sense of a connect answer: a code we have not seen before is a live pairing code;
        the same code again is stale (Evolution never clears old QR fields). `same_socket`: the
        answer is a look at the socket that showed the last code, not one this call started."""
        if isinstance(answer, EvoState):
            state = answer.state
            return Observation(Outcome.STATE, state=state, reason=200 if state == "open" else None)
        secret = answer.pairing_code or answer.code
        if secret:
            fingerprint = hashlib.sha256(secret.encode()).hexdigest()[:16]
            if fingerprint != t.code_fingerprint:
                generated_at = self._generated_at(t, same_socket)
                t.code_fingerprint = fingerprint
                t.code_valid_until = generated_at + machine.CODE_LIFETIME
                if answer.pairing_code and self.mirror is not None:
                    self.mirror.record_pairing_code(
                        key=mirror_key(t.spec.key),
                        driver_id=t.spec.driver_id,
                        code=answer.pairing_code,
                        generated_at=generated_at,
                        expires_at=t.code_valid_until,
                    )
        return Observation(Outcome.STATE, state="connecting", code_valid_until=self._valid_code(t))

    def _generated_at(self, t: Tracked, same_socket: bool) -> datetime.datetime:
        """When Evolution made the code just seen. Its QR timer replaces a code exactly one lifetime
        after the last, so the successor found by the look at the last code's expiry dates from that
        expiry: dating it from the look would push each expiry later by the look's delay, a little
        more at every rotation. A late look (the expiry more than half a lifetime ago, e.g. after
        Evolution was unreachable) or a new socket dates from now, which is never too early."""
        now = self.clock.now()
        last_expiry = t.code_valid_until
        if same_socket and last_expiry is not None and last_expiry <= now < last_expiry + machine.CODE_LIFETIME / 2:
            return last_expiry
        return now

    async def _close_reason(self, t: Tracked) -> int | None:
        """connectionState has no reason; fetchInstances has the last terminal one, and Evolution
        writes `close` to its database only on a terminal close (never on transient reconnects or
        the QR-limit stop), so the reason is trusted only while the row says `close`. Clocks of
        two hosts are never compared."""
        if t.state.state == "close" and t.state.status_reason is not None:
            return t.state.status_reason  # already known: no extra call on steady state
        rows = await self.client.fetch_instances(t.spec.instance_name)
        row = next((r for r in rows if r.name == t.spec.instance_name), None)
        if row is None or row.connection_status != "close":
            return None
        return row.disconnection_reason_code

    def _number(self, t: Tracked) -> str | None:
        if t.spec.pairing_method != "pairingCode":
            return None
        try:
            return evolution_number(normalize_phone(t.spec.phone))
        except InvalidPhoneNumber as exc:
            kopf.event(t.spec.body, type="Warning", reason="InvalidPhoneNumber", message=str(exc))
            return None

    def _webhook(self) -> WebhookSettings | None:
        """The webhook every instance of this server gets: our receiver, signed with the shared
        secret (Evolution sends a JWT made with `jwt_key`, never the key itself)."""
        if not self.spec.webhook_url:
            return None
        headers = {"jwt_key": self.webhook_secret} if self.webhook_secret else {}
        return WebhookSettings(url=self.spec.webhook_url, events=WEBHOOK_EVENTS, headers=headers)

    async def _ensure_created(self, t: Tracked) -> None:
        try:
            token = secrets.token_hex(16).upper()  # distinct per instance; the operator uses the global key
            await self.client.create_instance(t.spec.instance_name, token=token, webhook=self._webhook())
            t.webhook_checked = True
        except evo_errors.NameInUse:  # it exists already: adopt it, webhook checked at this probe
            pass
        t.exists = True

    async def _ensure_webhook(self, t: Tracked) -> None:
        """Once per instance and prober (a start, a changed server spec): an instance created before,
        or by someone else, gets our webhook too. Without a webhook URL there is nothing to check."""
        wanted = self._webhook()
        try:
            if wanted is not None and await self.client.find_webhook(t.spec.instance_name) != wanted:
                await self.client.set_webhook(t.spec.instance_name, wanted)
        except (evo_errors.EvolutionUnavailable, evo_errors.InstanceNotFound):
            raise  # the probe fails, or finds the instance gone, as it would have without this check
        except evo_errors.EvolutionError as exc:
            # Probing goes on without webhooks (the interval still bounds detection); not retried
            # until the prober restarts, so a refusal costs one warning, not one per probe.
            logger.warning("setting the webhook of %s: %s", t.spec.instance_name, exc)
        t.webhook_checked = True

    async def _start_pairing(self, t: Tracked) -> QRCode | EvoState:
        return await self.client.connect(t.spec.instance_name, number=self._number(t))

    async def _act(self, t: Tracked, actions: tuple[machine.Action, ...]) -> Observation | None:
        """Carry out remediation; the connect that follows it is observed at once."""
        try:
            for action in actions:
                if isinstance(action, machine.ForceLogout):
                    # Already closed (NotConnected): the connect below is all that is needed.
                    with contextlib.suppress(evo_errors.NotConnected):
                        await self.client.logout(t.spec.instance_name)
                    await self._until_closed(t)
                    t.forced = True
                    t.code_valid_until = None
                    return await self._pairing_observation(t, await self._start_pairing(t))
                if isinstance(action, machine.Recreate):
                    await self._ensure_created(t)
                    kopf.event(t.spec.body, type="Normal", reason="Recreated", message="recreated on Evolution")
                    return await self._pairing_observation(t, await self._start_pairing(t))
                if isinstance(action, machine.Notify):
                    logger.info("%s/%s: driver notification due (%s)", *t.spec.key, action.kind)
        except evo_errors.EvolutionError as exc:
            logger.warning("remediating %s: %s", t.spec.instance_name, exc)
            return Observation(Outcome.FAILED, error=_failure_reason(exc))
        return None

    async def _until_closed(self, t: Tracked) -> None:
        """Evolution answers a logout before it closes the socket; a connect before the close would
        just return the old QR and ignore the number. Wait (briefly) for the close."""
        for _ in range(LOGOUT_POLLS):
            if (await self.client.connection_state(t.spec.instance_name)).state == "close":
                return
            await asyncio.sleep(LOGOUT_POLL_SECONDS)

    def _emit(self, t: Tracked, actions: tuple[machine.Action, ...]) -> None:
        for action in actions:
            if isinstance(action, machine.Event):
                kopf.event(t.spec.body, type=action.type, reason=action.reason, message=action.message)

    # -- recording ------------------------------------------------------------------------------

    async def _commit(self, t: Tracked, new: InstanceState) -> None:
        old = t.state
        # An equal state keeps the object the status was written from (an equal copy would be a second
        # one in memory, held by `written_for`).
        new = normalize(new) if new != old else old
        if new.phase is not old.phase:
            self._server_dirty = True
            if new.phase in _SOCKET_ENDED:
                # The code died with the socket that showed it: a `connecting` that follows is a
                # reconnect (or a new socket with codes of its own), not this code's pairing.
                t.code_valid_until = None
            if self.mirror is not None:
                self.mirror.record_transition(
                    key=mirror_key(t.spec.key),
                    instance=t.spec.instance_name,
                    driver_id=t.spec.driver_id,
                    from_phase=old.phase,
                    to_phase=new.phase,
                    state=new.state,
                    reason=new.status_reason,
                    forced=t.forced,
                    at=self.clock.now(),
                )
                if new.phase is Phase.CONNECTED:
                    self.mirror.clear_pairing_code(key=mirror_key(t.spec.key), driver_id=t.spec.driver_id)
            t.forced = False
        t.state = new
        await self.write_status(t)

    async def write_status(self, t: Tracked) -> None:
        """PATCH what changed. A probe that found nothing new leaves every input of the status as it
        was (the machine returns the very same state), and is done after one tuple comparison."""
        inputs = (t.state, t.db_condition, t.spec.instance_name, t.spec.generation, t.pair_handled)
        if inputs == t.written_for:
            return
        extra = (t.db_condition,) if t.db_condition is not None else ()
        desired = to_status(t.state, extra) | {
            "instanceName": t.spec.instance_name,
            "server": self.name,
            "observedGeneration": t.spec.generation,
            "pairRequestHandled": t.pair_handled,
        }
        patch = status_patch(t.written, desired)
        if not patch:
            t.written_for = inputs
            return
        namespace, name = t.spec.key
        try:
            await self.kube.patch_status("whatsappinstances", namespace, name, patch)
        except KubeError as exc:
            if exc.status == 404:
                self.forget(t.spec.key)
                return
            logger.warning("writing the status of %s/%s: %s", namespace, name, exc)
            return
        t.written.update(patch)
        for key in [k for k, v in t.written.items() if v is None]:
            del t.written[key]
        t.written_for = inputs  # not after a failed PATCH: the next probe tries again

    def database_synced(self, key: Key, status: str, reason: str, message: str) -> None:
        """The mirror's verdict on one instance changed: show it as condition DatabaseSynced."""
        t = self.tracked.get(key)
        if t is None:
            return
        current = (t.db_condition,) if t.db_condition is not None else ()
        (condition,) = machine.set_condition(current, "DatabaseSynced", status, reason, message, self.clock.now())
        if condition != t.db_condition:
            t.db_condition = condition
            self._background.add(task := asyncio.get_running_loop().create_task(self.write_status(t)))
            task.add_done_callback(self._background.discard)

    # -- the EvolutionServer's own status -------------------------------------------------------

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        logger.warning("Evolution server %s/%s: circuit breaker %s -> %s", self.namespace, self.name, old, new)
        self._server_dirty = True  # the breaker itself is in the server's status
        self._set_reachable(new is BreakerState.CLOSED)

    def _set_reachable(self, reachable: bool) -> None:
        """Ready on the EvolutionServer: unknown until Evolution first answers a probe."""
        if self._reachable is not reachable:
            self._reachable = reachable
            self._server_dirty = True
            self._wake.set()

    async def _write_server_status(self) -> None:
        if not self._server_dirty:
            return
        self._server_dirty = False
        phases = collections.Counter(t.state.phase for t in self.tracked.values())
        healthy = (Phase.CONNECTED, Phase.PAIRING, Phase.SUSPENDED)
        desired: dict[str, Any] = {
            "breaker": str(self.breaker.state),
            "instances": len(self.tracked),
            "connected": phases[Phase.CONNECTED],
            "unhealthy": sum(n for phase, n in phases.items() if phase not in healthy),
            "phases": {str(p): phases[p] for p in Phase},
        }
        if self._reachable is not None:
            ready = "True" if self._reachable else "False"
            reason = "Reachable" if self._reachable else "BreakerOpen"
            old = self._server_ready
            if old is None or old.status != ready:
                self._server_ready = Condition("Ready", ready, reason, "", self.clock.now())
            desired["conditions"] = [to_condition(self._server_ready)]
        patch = status_patch(self._written_server, desired)
        if not patch:
            return
        try:
            await self.kube.patch_status("evolutionservers", self.namespace, self.name, patch)
        except KubeError as exc:
            logger.warning("writing the status of EvolutionServer %s/%s: %s", self.namespace, self.name, exc)
            self._server_dirty = True
            return
        self._written_server.update(patch)


# Phases observed only once the socket that showed a pairing code is gone (open, closed or deleted).
_SOCKET_ENDED = frozenset({Phase.CONNECTED, Phase.DISCONNECTED, Phase.LOGGED_OUT, Phase.NOT_FOUND})


def _failure_reason(exc: evo_errors.EvolutionError) -> str:
    """A stable, CamelCase reason for conditions and metrics (never the error text: no churn)."""
    if isinstance(exc, evo_errors.CircuitOpen):
        return "CircuitOpen"
    if isinstance(exc, evo_errors.EvolutionTimeout):
        return "Timeout"
    if isinstance(exc, evo_errors.EvolutionUnavailable):
        return "Unreachable"
    return type(exc).__name__

