"""One probe of one instance: observe Evolution, ask the state machine, carry out its actions.

Every decision is the core's (`machine.reconcile`, `pairing.move_after`, `pairing.CodeWatch`); this
module holds the conversation with Evolution around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import secrets

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core import machine
from whatsapp_operator.core.pairing import Move, move_after
from whatsapp_operator.core.phases import EvolutionState, Phase
from whatsapp_operator.core.phone import InvalidPhoneNumber, evolution_number, normalize_phone
from whatsapp_operator.core.resources import ServerSpec
from whatsapp_operator.core.state import (
    Action,
    Decision,
    ForceLogout,
    Notify,
    Observation,
    Outcome,
    Policy,
    Recreate,
    Restart,
)
from whatsapp_operator.engine.liveness import LivenessChecks
from whatsapp_operator.engine.metrics import ServerMetrics
from whatsapp_operator.engine.recorder import Recorder
from whatsapp_operator.engine.tracked import Tracked
from whatsapp_operator.evolution import EvolutionClient
from whatsapp_operator.evolution import errors as evo_errors
from whatsapp_operator.evolution.models import LiveState as EvoState
from whatsapp_operator.evolution.models import QRCode, WebhookSettings

logger = logging.getLogger(__name__)

LOGOUT_POLLS, LOGOUT_POLL_SECONDS = 10, 0.3
WEBHOOK_EVENTS = ("CONNECTION_UPDATE", "QRCODE_UPDATED", "STATUS_INSTANCE", "LOGOUT_INSTANCE", "REMOVE_INSTANCE")
CLOSER_LOOK_SECONDS = 2.0  # between the follow-up probes after a logout or removal webhook, or a restart
RESTART_LOOKS = 3  # follow-up probes after a restart: its reconnect takes seconds, its verdict a check


class Probe:
    """How one server's instances are probed; one object per prober, used by all its workers."""

    def __init__(
        self,
        *,
        spec: ServerSpec,
        client: EvolutionClient,
        recorder: Recorder,
        clock: LoopClock,
        webhook_secret: str | None,
        notify_cooldown: datetime.timedelta,
        metrics: ServerMetrics,
    ) -> None:
        self.spec = spec
        self.metrics = metrics
        self.client = client
        self.recorder = recorder
        self.clock = clock
        self.webhook = _webhook(spec, webhook_secret)
        self.notify_cooldown = notify_cooldown
        self.liveness = LivenessChecks(spec=spec, client=client, clock=clock, recorder=recorder, metrics=metrics)

    def _policy(self, t: Tracked) -> Policy:
        return Policy(
            stuck_after=datetime.timedelta(seconds=self.spec.stuck_after),
            max_forced_logouts=self.spec.max_forced_logouts,
            notify_cooldown=self.notify_cooldown,
            notifications_enabled=t.spec.notify,
            notify_reconnected=self.spec.notify_reconnected,
            phone_problem=self._phone_problem(t),
            pairs_by_code=t.spec.pairs_by_code,
            max_restarts=self.spec.max_restarts,
            liveness=self.liveness.enabled,
        )

    def _phone_problem(self, t: Tracked) -> str | None:
        """What is wrong with spec.phoneNumber (None: nothing), worked out once per number: parsing
        costs more than the rest of a steady probe."""
        phone = t.spec.phone
        if t.phone_checked != phone:
            t.phone_checked, t.phone_problem = phone, _problem(phone)
        return t.phone_problem

    async def __call__(self, t: Tracked) -> float | None:
        """Observe, decide, act, record. Returns the loop time of the next probe (None: none)."""
        if t.spec.suspend:
            await self.recorder.commit(t, machine.suspended(t.state, self.clock.now()))
            return None
        started = self.clock.monotonic()
        obs = await self.observe(t)
        self.metrics.probed(obs.outcome, self.clock.monotonic() - started)
        if obs.outcome is not Outcome.FAILED:
            self.recorder.reachable(True)
        decision = await self._decide(t, obs)
        follow_up = await self.act(t, decision.actions)
        if follow_up is not None:
            decision = await self._decide(t, follow_up)
        interval_at = self.clock.monotonic() + self.spec.probe_interval
        if (live_at := self.liveness.next_at(t)) is not None:
            interval_at = min(interval_at, live_at)
        if t.closer_look:  # a logout or removal under way: look again soon
            t.closer_look -= 1
            interval_at = min(interval_at, self.clock.monotonic() + CLOSER_LOOK_SECONDS)
        if decision.recheck_at is None:
            return interval_at
        # A little after the deadline, so that the deadline has really passed when we look.
        return min(interval_at, self.clock.loop_time(decision.recheck_at) + 0.5)

    async def _decide(self, t: Tracked, obs: Observation) -> Decision:
        decision = machine.reconcile(t.state, obs, self.clock.now(), self._policy(t))
        notify = next((a for a in decision.actions if isinstance(a, Notify)), None)
        await self.recorder.commit(t, decision.state, notify)
        self.recorder.emit(t, decision.actions)
        return decision

    # -- observing ------------------------------------------------------------------------------

    async def observe(self, t: Tracked) -> Observation:
        # A webhook's news (webhooks.news: the QR limit's refusal), unless the phase changed since it was
        # received to anything but the close it caused (the driver paired again).
        if t.news is not None:
            (news, received_at), t.news = t.news, None
            last = t.state.last_transition
            if received_at is None or last is None or received_at >= last or t.state.phase is Phase.DISCONNECTED:
                return news
        try:
            if not t.exists:
                await self._ensure_created(t)
            if not t.webhook_checked:
                await self._ensure_webhook(t)
            # A request that cannot be answered now is answered once the number is fixed.
            requested = bool(t.spec.pair_requested_at) and t.spec.pair_requested_at != t.member.pair_handled
            if requested and not self._policy(t).pairing_blocked:
                answer = await self._start_pairing(t)
                t.member.pair_handled = t.spec.pair_requested_at  # only once answered: a failed call is retried
                return self._pairing_observation(t, answer)
            return await self._look(t)
        except evo_errors.InstanceNotFound:
            t.exists = False
            return Observation(Outcome.MISSING)
        except evo_errors.EvolutionUnavailable as exc:
            return Observation(Outcome.FAILED, error=failure_reason(exc))
        except evo_errors.EvolutionError as exc:
            logger.warning("probing %s: %s", t.spec.instance_name, exc)
            return Observation(Outcome.FAILED, error=type(exc).__name__)

    async def _look(self, t: Tracked) -> Observation:
        state = (await self.client.connection_state(t.spec.instance_name)).state
        now = self.clock.now()
        move = move_after(state, t.state.phase, t.code.valid(now) is not None)
        if move is Move.START_PAIRING:
            return self._pairing_observation(t, await self._start_pairing(t))
        if move is Move.NEW_CODE:
            return self._pairing_observation(t, await self.client.connect(t.spec.instance_name), same_socket=True)
        if state is EvolutionState.OPEN:
            live = await self.liveness.check(t) if self.liveness.due(t, state) else None
            return Observation(Outcome.STATE, state=state, reason=200, code_valid_until=t.code.valid(now), live=live)
        reason = await self._close_reason(t) if state is EvolutionState.CLOSE else None
        return Observation(Outcome.STATE, state=state, reason=reason, code_valid_until=t.code.valid(now))

    def _pairing_observation(
        self, t: Tracked, answer: QRCode | EvoState | None, *, same_socket: bool = False
    ) -> Observation:
        """Make sense of a connect answer: a code not seen before is a live pairing code, recorded
        for the application; the same code again is stale. None: no connect was made (the instance
        is closed, and the machine knows why from its policy)."""
        if answer is None:
            return Observation(Outcome.STATE, state=EvolutionState.CLOSE)
        if isinstance(answer, EvoState):
            state = answer.state
            return Observation(Outcome.STATE, state=state, reason=200 if state is EvolutionState.OPEN else None)
        now = self.clock.now()
        secret = answer.pairing_code or answer.code
        if secret:
            first = t.code.valid_until is None  # none seen yet, or the last died with its socket
            generated_at = t.code.see(secret, now, same_socket=same_socket)
            if generated_at is not None and (answer.pairing_code or not t.spec.pairs_by_code):
                qr = None if t.spec.pairs_by_code else answer.code  # what the app renders as the QR
                self.recorder.pairing_code(t, answer.pairing_code, generated_at, first=first, qr=qr)
        return Observation(Outcome.STATE, state=EvolutionState.CONNECTING, code_valid_until=t.code.valid(now))

    async def _close_reason(self, t: Tracked) -> int | None:
        """connectionState has no reason; fetchInstances has the last terminal one, and Evolution
        writes `close` to its database only on a terminal close (never on transient reconnects or
        the QR-limit stop), so the reason is trusted only while the row says `close`. Clocks of
        two hosts are never compared."""
        if t.state.state == EvolutionState.CLOSE and t.state.status_reason is not None:
            return t.state.status_reason  # already known: no extra call on steady state
        row = await self.client.fetch_instance(t.spec.instance_name)
        if row is None or row.connection_status != EvolutionState.CLOSE:
            return None
        return row.disconnection_reason_code

    # -- talking to Evolution -------------------------------------------------------------------

    async def _ensure_created(self, t: Tracked) -> None:
        try:
            token = secrets.token_hex(16).upper()  # distinct per instance; the operator uses the global key
            await self.client.create_instance(t.spec.instance_name, token=token, webhook=self.webhook)
            t.webhook_checked = True
        except evo_errors.NameInUse:  # it exists already: adopt it, webhook checked at this probe
            pass
        t.exists = True

    async def _ensure_webhook(self, t: Tracked) -> None:
        """Once per instance and prober (a start, a changed server spec): an instance created before,
        or by someone else, gets our webhook too. Without a webhook URL there is nothing to check."""
        try:
            wanted = self.webhook
            if wanted is not None and await self.client.find_webhook(t.spec.instance_name) != wanted:
                await self.client.set_webhook(t.spec.instance_name, wanted)
        except (evo_errors.EvolutionUnavailable, evo_errors.InstanceNotFound):
            raise  # the probe fails, or finds the instance gone, as it would have without this check
        except evo_errors.EvolutionError as exc:
            # Not retried until the prober restarts: a refusal costs one warning, not one per probe.
            logger.warning("setting the webhook of %s: %s", t.spec.instance_name, exc)
        t.webhook_checked = True

    async def _start_pairing(self, t: Tracked) -> QRCode | EvoState | None:
        """Connect: with the driver's number when pairing by code, and not at all when that number is
        unusable (Evolution would silently show a QR code instead)."""
        if not t.spec.pairs_by_code:
            return await self.client.connect(t.spec.instance_name)
        if self._policy(t).pairing_blocked:
            return None
        number = evolution_number(normalize_phone(t.spec.phone))
        return await self.client.connect(t.spec.instance_name, number=number)

    # -- remediation ----------------------------------------------------------------------------

    async def act(self, t: Tracked, actions: tuple[Action, ...]) -> Observation | None:
        """Carry out remediation; the connect that follows it is observed at once."""
        try:
            for action in actions:
                if isinstance(action, ForceLogout):
                    # Already closed (NotConnected): the connect below is all that is needed.
                    with contextlib.suppress(evo_errors.NotConnected):
                        await self.client.logout(t.spec.instance_name)
                    self.metrics.forced_logout()
                    await self._until_closed(t)
                    t.forced = True
                    t.code.forget()
                    self.recorder.code_died(t)
                    return self._pairing_observation(t, await self._start_pairing(t))
                if isinstance(action, Restart):
                    # Closed meanwhile (OperationFailed): the next probe sees that instead.
                    with contextlib.suppress(evo_errors.OperationFailed):
                        await self.client.restart(t.spec.instance_name)
                    self.metrics.restart()
                    t.forced = True  # the transition that follows is the operator's doing, as after a logout
                    t.closer_look = RESTART_LOOKS
                if isinstance(action, Recreate):
                    await self._ensure_created(t)
                    self.recorder.event(t, "Normal", "Recreated", "recreated on Evolution")
                    return self._pairing_observation(t, await self._start_pairing(t))
        except evo_errors.EvolutionError as exc:
            logger.warning("remediating %s: %s", t.spec.instance_name, exc)
            return Observation(Outcome.FAILED, error=failure_reason(exc))
        return None

    async def _until_closed(self, t: Tracked) -> None:
        """Evolution answers a logout before it closes the socket; a connect before the close would
        just return the old QR and ignore the number. Wait (briefly) for the close."""
        for _ in range(LOGOUT_POLLS):
            if (await self.client.connection_state(t.spec.instance_name)).state is EvolutionState.CLOSE:
                return
            await asyncio.sleep(LOGOUT_POLL_SECONDS)


def _webhook(spec: ServerSpec, secret: str | None) -> WebhookSettings | None:
    """The webhook every instance of this server gets: our receiver, signed with the shared secret
    (Evolution sends a JWT made with `jwt_key`, never the key itself)."""
    if not spec.webhook_url:
        return None
    headers = {"jwt_key": secret} if secret else {}
    return WebhookSettings(url=spec.webhook_url, events=WEBHOOK_EVENTS, headers=headers)


def _problem(phone: str) -> str | None:
    try:
        normalize_phone(phone)
    except InvalidPhoneNumber as exc:
        return exc.problem  # what is wrong, without the digits
    return None


def failure_reason(exc: evo_errors.EvolutionError) -> str:
    """A stable, CamelCase reason for conditions and metrics (never the error text: no churn)."""
    if isinstance(exc, evo_errors.CircuitOpen):
        return "CircuitOpen"
    if isinstance(exc, evo_errors.EvolutionTimeout):
        return "Timeout"
    if isinstance(exc, evo_errors.EvolutionUnavailable):
        return "Unreachable"
    return type(exc).__name__
