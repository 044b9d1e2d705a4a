"""Prometheus metrics: fleet aggregates, never one series per instance (docs/observability.md).

Counters and the probe histogram are counted where things happen, through children bound to their
labels once per server (a probe costs a lock and an addition). Everything that is a state (phases,
the breaker, queues, the mirror) is read from the operator's memory when Prometheus scrapes, by one
collector: nothing is kept twice. The database-backed figures (the webhook queue, pending
notifications) are refreshed by the loops that own those tables, at most every `REFRESH_SECONDS`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from whatsapp_operator.core.breaker import BreakerState
from whatsapp_operator.core.liveness import Check
from whatsapp_operator.core.notifications import CHANNELS
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.status import HEALTH, health

if TYPE_CHECKING:
    from whatsapp_operator.engine.prober import ServerProber
    from whatsapp_operator.engine.runtime import Runtime

PREFIX = "whatsapp_operator"
PATH = "/metrics"
REFRESH_SECONDS = 15.0
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WEBHOOK_STATES = ("queued", "done", "dead")
Sample = tuple[tuple[str, ...], float]  # label values, value


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._watching = False
        r = self.registry
        self.probes = Counter(f"{PREFIX}_probes", "Probes of instances, by outcome", ["server", "outcome"], registry=r)
        self.probe_duration = Histogram(
            f"{PREFIX}_probe_duration_seconds", "How long one probe took", ["server"], buckets=PROBE_BUCKETS, registry=r
        )
        self.forced_logouts = Counter(
            f"{PREFIX}_forced_logouts", "Forced logouts of instances stuck connecting", ["server"], registry=r
        )
        self.restarts = Counter(
            f"{PREFIX}_restarts", "Restarts of unresponsive instances' sockets", ["server"], registry=r
        )
        self.liveness_checks = Counter(
            f"{PREFIX}_liveness_checks",
            "Liveness checks of open instances: alive, failed, or inconclusive (proved nothing)",
            ["server", "result"],
            registry=r,
        )
        self.notifications = Counter(
            f"{PREFIX}_notifications",
            "Attempts at delivering notifications, by result",
            ["channel", "result"],
            registry=r,
        )
        self.notifications_pending = Gauge(
            f"{PREFIX}_notifications_pending", "Deliveries waiting or retrying", ["channel"], registry=r
        )
        self.webhooks = Counter(
            f"{PREFIX}_webhooks",
            "Evolution webhooks, by event and what became of them",
            ["event", "result"],
            registry=r,
        )
        self.webhook_queue_depth = Gauge(
            f"{PREFIX}_webhook_queue_depth", "Rows of the webhook inbox by state", ["state"], registry=r
        )
        self.webhook_queue_oldest_age = Gauge(
            f"{PREFIX}_webhook_queue_oldest_age_seconds", "Age of the oldest queued webhook (0: none)", registry=r
        )
        self.mirror_repairs = Counter(
            f"{PREFIX}_db_mirror_repairs",
            "Rows of the application's table rewritten because they disagreed with the operator",
            registry=r,
        )
        info = Gauge(f"{PREFIX}_build_info", "The operator's version", ["version"], registry=r)
        info.labels(version=_version()).set(1)
        for channel in CHANNELS:
            self.notifications_pending.labels(channel=channel)
            for result in ("delivered", "retried", "failed", "dead"):
                self.notifications.labels(channel=channel, result=result)
        for state in WEBHOOK_STATES:
            self.webhook_queue_depth.labels(state=state)

    def watch(self, runtime: Runtime) -> None:
        """Read the fleet's state from `runtime` at every scrape (once, however often it is asked)."""
        if not self._watching:
            self._watching = True
            self.registry.register(_RuntimeCollector(runtime))

    def server(self, server: str) -> ServerMetrics:
        return ServerMetrics(self, server)

    def notified(self, channel: str, result: str) -> None:
        self.notifications.labels(channel=channel, result=result).inc()

    def pending_notifications(self, counts: dict[str, int]) -> None:
        for channel in CHANNELS:
            self.notifications_pending.labels(channel=channel).set(counts.get(channel, 0))

    def webhook(self, event: str, result: str) -> None:
        self.webhooks.labels(event=event, result=result).inc()

    def webhook_queue(self, counts: dict[str, int], oldest_age: float) -> None:
        for state, n in counts.items():
            self.webhook_queue_depth.labels(state=state).set(n)
        self.webhook_queue_oldest_age.set(oldest_age)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def app(self) -> web.Application:
        async def scrape(_: web.Request) -> web.Response:
            return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get(PATH, scrape)
        return app


class ServerMetrics:
    """One EvolutionServer's children, bound once: the probe path only calls these."""

    def __init__(self, metrics: Metrics, server: str) -> None:
        self._probes = {outcome: metrics.probes.labels(server=server, outcome=outcome) for outcome in OUTCOMES}
        self.observe_duration = metrics.probe_duration.labels(server=server).observe
        self.forced_logout = metrics.forced_logouts.labels(server=server).inc
        self.restart = metrics.restarts.labels(server=server).inc
        self._checks = {result: metrics.liveness_checks.labels(server=server, result=result) for result in CHECKS}

    def probed(self, outcome: str, seconds: float) -> None:
        self._probes[outcome].inc()
        self.observe_duration(seconds)

    def liveness_checked(self, check: Check | None) -> None:
        self._checks[str(check) if check is not None else "inconclusive"].inc()


OUTCOMES = ("state", "missing", "failed")
CHECKS = (*(str(c) for c in Check), "inconclusive")


class _RuntimeCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        probers = list(self._runtime.probers.values())
        phases, buckets = _counts(probers)
        yield _family("instances", "Instances by phase", ["server", "phase"], phases)
        yield _family(
            "instances_health",
            "Instances by heartbeat bucket: healthy, unhealthy (never Unknown), unknown (probes failing), pairing",
            ["server", "health"],
            buckets,
        )
        breaker = [((label(p), str(state)), float(p.breaker.state is state)) for p in probers for state in BreakerState]
        yield _family("breaker_state", "1 for the circuit breaker's current state", ["server", "state"], breaker)
        exhausted = [((label(p),), float(p.remediation_exhausted())) for p in probers]
        yield _family("remediation_exhausted", "Instances stuck with no forced logout left", ["server"], exhausted)
        ready = [((label(p),), float(r)) for p in probers if (r := p.recorder.sender_is_ready) is not None]
        yield _family("sender_ready", "1 when the sender instance is connected", ["server"], ready)
        mirror = self._runtime.mirror
        pending, lag = (mirror.pending(), mirror.lag_seconds()) if mirror is not None else (0, 0.0)
        yield _family("db_mirror_pending_writes", "Database writes queued, not yet in Postgres", [], [((), pending)])
        yield _family("db_mirror_lag_seconds", "Age of the oldest queued database write", [], [((), lag)])


def label(prober: ServerProber) -> str:
    return f"{prober.namespace}/{prober.name}"


def _counts(probers: Iterable[ServerProber]) -> tuple[list[Sample], list[Sample]]:
    """Instances by phase and by heartbeat bucket, from one pass over each prober's fleet."""
    phases: list[Sample] = []
    buckets: list[Sample] = []
    for prober in probers:
        by_phase, by_bucket = dict.fromkeys(Phase, 0), dict.fromkeys(HEALTH, 0)
        for (phase, stuck), n in prober.instances().items():
            by_phase[phase] += n
            if (bucket := health(phase, stuck)) is not None:
                by_bucket[bucket] += n
        phases += [((label(prober), str(phase)), float(n)) for phase, n in by_phase.items()]
        buckets += [((label(prober), bucket), float(n)) for bucket, n in by_bucket.items()]
    return phases, buckets


def _family(name: str, documentation: str, labels: list[str], samples: Iterable[Sample]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _version() -> str:
    try:
        return importlib.metadata.version("whatsapp-operator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
