"""The liveness checks of one server's open instances (docs/liveness.md): when each is due, the call,
what its answer proves, and the outage guard over the whole fleet. The rules are `core.liveness`'s;
the checks run inside the probe of the instance, so within the server's workers and breaker."""

from __future__ import annotations

import random

from whatsapp_operator.clock import LoopClock
from whatsapp_operator.core.liveness import Check, FleetChecks, counted, unresponsive
from whatsapp_operator.core.phases import EvolutionState, Phase
from whatsapp_operator.core.resources import InstanceKey, ServerSpec
from whatsapp_operator.core.state import Verdict
from whatsapp_operator.engine.metrics import ServerMetrics
from whatsapp_operator.engine.recorder import Recorder
from whatsapp_operator.engine.tracked import Tracked
from whatsapp_operator.evolution import EvolutionClient
from whatsapp_operator.evolution import errors as evo_errors

EARLY_SECONDS = 0.1  # a check due this soon is made now (the prober hands out due probes a little early)


class LivenessChecks:
    def __init__(
        self,
        *,
        spec: ServerSpec,
        client: EvolutionClient,
        clock: LoopClock,
        recorder: Recorder,
        metrics: ServerMetrics,
    ) -> None:
        self.enabled = spec.liveness_interval > 0
        self.interval = spec.liveness_interval
        self.spec = spec
        self.client = client
        self.clock = clock
        self.recorder = recorder
        self.metrics = metrics
        self.fleet = FleetChecks(spec.liveness_interval, spec.liveness_max_failing_share)
        self._guarding = False

    def due(self, t: Tracked, state: EvolutionState) -> bool:
        """Whether the probe that just saw `state` checks too: a Connected instance once per interval,
        an unresponsive one at every probe that sees it open; never any other."""
        if not self.enabled or state is not EvolutionState.OPEN:
            return False
        if unresponsive(t.state):
            return True
        due = t.live_at is not None and t.live_at <= self.clock.monotonic() + EARLY_SECONDS
        return due and t.state.phase is Phase.CONNECTED

    async def check(self, t: Tracked) -> Verdict | None:
        """One check, folded into the instance's run of failures unless the guard holds."""
        now = self.clock.monotonic()
        t.live_at = now + self.interval
        check = await self._ask(t)
        self.metrics.liveness_checked(check)
        if check is None:
            return None
        self.fleet.record(t.spec.key, check, now)
        if self._guard(now) and check is Check.FAILED:
            return None  # the server's or WhatsApp's failure, not this instance's
        t.live_failures, verdict = counted(t.live_failures, check, self.spec.liveness_failure_threshold)
        return verdict

    def next_at(self, t: Tracked) -> float | None:
        """After the probe's decision: when this instance's next check is due (None: none planned).
        A newly Connected instance's first check comes at a random time within one interval, so that
        a restarted operator does not check the whole fleet at once."""
        phase = t.state.phase
        if not self.enabled or not (phase is Phase.CONNECTED or unresponsive(t.state)):
            if t.live_at is not None or t.owner_jid is not None:
                t.live_at, t.owner_jid, t.live_failures = None, None, 0
                self.forget(t.spec.key)
            return None
        if t.live_at is None:
            t.live_at = self.clock.monotonic() + random.uniform(0.0, self.interval)
        return t.live_at if phase is Phase.CONNECTED else None

    def forget(self, key: InstanceKey) -> None:
        """No longer checked (deleted, or not Connected): the outage guard drops its last check."""
        self.fleet.forget(key)

    async def _ask(self, t: Tracked) -> Check | None:
        """The check itself, with the instance's own number (fetchInstances' ownerJid, asked once)."""
        name = t.spec.instance_name
        try:
            if t.owner_jid is None:
                row = await self.client.fetch_instance(name)
                t.owner_jid = row.owner_jid if row is not None else None
                if t.owner_jid is None:
                    return None
            await self.client.on_whatsapp(name, t.owner_jid, answer_within=self.spec.liveness_timeout)
        except (evo_errors.NotConnected, evo_errors.SocketTimeout):
            return Check.FAILED
        except evo_errors.EvolutionError:  # unreachable, refused, not loaded...: proves nothing
            return None
        return Check.ALIVE

    def _guard(self, now: float) -> bool:
        """The outage guard: InstancesLive on the EvolutionServer, and an Event when it turns."""
        failing = self.fleet.fleet_failing(now)
        if failing is not self._guarding:
            self._guarding = failing
            failed, checked = self.fleet.counts(now)
            self.recorder.instances_live(not failing, failed, checked)
        return failing
