"""The simulator: instances, recorded traffic, faults and the HTTP listener, all on one event loop."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

from aiohttp import web

from whatsapp_operator.devkit.simulator.app import build_app
from whatsapp_operator.devkit.simulator.faults import Fault, make_fault
from whatsapp_operator.devkit.simulator.instance import (
    STARTS,
    ActionNotApplicable,
    SimInstance,
    Timings,
    utc_now_iso,
    validate_action,
)
from whatsapp_operator.devkit.simulator.records import RecordedRequest, SentRecord
from whatsapp_operator.devkit.simulator.scenario import Scenario, ScenarioEvent
from whatsapp_operator.devkit.simulator.webhooks import Delivery, RetryPolicy, WebhookConfig, WebhookSender

log = logging.getLogger(__name__)


class Simulator:
    """An Evolution API v2.3.6 look-alike on loopback; see docs/simulator.md.

    All timing (QR rotation, reconnects, scenario events, faults, webhook retries) runs on the event loop's
    clock, so tests can fast-forward it with looptime.
    """

    def __init__(
        self,
        api_key: str,
        scenario: Scenario | None = None,
        *,
        qr_limit: int = 30,
        timings: Timings | None = None,
        webhook_retry: RetryPolicy | None = None,
        server_url: str | None = None,
        expose_token: bool = False,
        seed: int | None = None,
        history_limit: int = 100_000,
    ) -> None:
        if not api_key:
            raise ValueError("the simulator needs an API key (Evolution's AUTHENTICATION_API_KEY)")
        if qr_limit < 1:
            raise ValueError("qr_limit must be at least 1")
        self.api_key = api_key
        self.scenario = scenario or Scenario()
        self.qr_limit = qr_limit
        self.timings = timings or Timings()
        self.webhook_retry = webhook_retry or RetryPolicy()
        self.server_url = server_url  # None: the simulator's own base URL
        self.expose_token = expose_token  # AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES: token as envelope `apikey`
        self.rng = random.Random(seed)
        self.history_limit = history_limit
        self.base_url: str | None = None
        self.instances: dict[str, SimInstance] = {}
        self.requests: list[RecordedRequest] = []
        self.messages: list[SentRecord] = []
        self.unregistered: set[str] = set()  # numbers (digits) with no WhatsApp account: sendText says so
        self.deliveries: list[Delivery] = []
        self.faults: list[Fault] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origin = 0.0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._sender: WebhookSender | None = None
        self._handles: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener_lock = asyncio.Lock()
        self.stopping = asyncio.Event()  # set by stop(): hung requests give up

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port), create the scenario's fleet; returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        self._loop = asyncio.get_running_loop()
        self._origin = self._loop.time()
        self.stopping.clear()
        self._sender = WebhookSender(self.webhook_retry, self.rng, self.elapsed, self._record_delivery)
        await self._sender.open()
        self._runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._host, self._port = host, port
        await self._bind()
        self._port = self._runner.addresses[0][1]
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{self._port}"
        if self.server_url is None:
            self.server_url = self.base_url
        self.play(self.scenario)
        log.info("Evolution API simulator listening on %s", self.base_url)
        return self.base_url

    async def stop(self) -> None:
        """Stop listening, cancel every timer and delivery; recorded data stays readable."""
        if self._runner is None:
            return
        self.stopping.set()
        for handle in self._handles:
            handle.cancel()
        for instance in self.instances.values():
            instance.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sender is not None:
            await self._sender.close()
        runner, self._runner, self._site = self._runner, None, None
        await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the simulator is not started")
        return self._loop

    @property
    def origin(self) -> float:
        """The event loop's time at start()."""
        return self._origin

    def elapsed(self) -> float:
        """Seconds since start() on the event loop's clock (scenario time)."""
        return self.loop.time() - self._origin

    def reset(self) -> None:
        """Forget every instance, record and fault, as if the server had just started with an empty scenario."""
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        for instance in self.instances.values():
            instance.cancel()
        self.instances.clear()
        self.requests.clear()
        self.messages.clear()
        self.deliveries.clear()
        self.clear_faults()

    # ------------------------------------------------------------------------------------------ instances

    def add_instance(
        self,
        name: str,
        start: str = "close",
        *,
        token: str | None = None,
        number: str | None = None,
        webhook: Mapping[str, Any] | None = None,
    ) -> SimInstance:
        """Create an instance that was already on the server (no create webhook), in a scenario start state."""
        if start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, not {start!r}")
        if not name or "/" in name:
            raise ValueError(f"invalid instance name {name!r}")
        if name in self.instances:
            raise ValueError(f"instance {name!r} already exists")
        instance = self.new_instance(name, token=token, number=number)
        if webhook is not None:
            instance.webhook = WebhookConfig.inline(webhook)
        instance.begin(start)
        return instance

    def new_instance(self, name: str, *, token: str | None, number: str | None) -> SimInstance:
        """Register a closed instance (what create and add_instance have in common)."""
        if self._loop is None:
            raise RuntimeError("start the simulator first: instances run their timers on its event loop")
        instance = SimInstance(name, self, token or str(uuid.uuid4()).upper(), number=number)
        self.instances[name] = instance
        return instance

    def act(self, name: str, action: str, reason: int | None = None, *, heals: bool | None = None) -> None:
        """Apply a scenario action now (`heals`: whether a restart heals a zombie, default yes). Raises
        KeyError (no such instance), ValueError (bad action or reason) or ActionNotApplicable (e.g.
        `pair` with no code outstanding)."""
        reason = validate_action(action, reason, heals)
        if name not in self.instances:
            raise KeyError(f"no instance named {name!r}")
        instance = self.instances[name]
        if action == "vanish":
            self.forget(instance)
        else:
            instance.act(action, reason, heals)
        log.info("%s: %s%s", name, action, f" ({reason})" if reason else "")

    def delete(self, instance: SimInstance) -> None:
        """DELETE /instance/delete: log out if needed, then remove once REMOVE_INSTANCE is delivered (or not)."""
        if instance.state in ("open", "connecting"):
            instance.terminate(401, "Intentional Logout")
        self.emit(instance, "instance.delete", {"instanceName": instance.name, "instanceId": instance.id})
        instance.deleting = True
        delivery = self.emit(instance, "remove.instance", None)
        if delivery is None:
            self.forget(instance)
        else:  # the cleanup runs once the webhook is delivered, and takes a moment
            removal = self.timings.removal_delay
            delivery.add_done_callback(lambda _: self.loop.call_later(removal, self.forget, instance))

    def forget(self, instance: SimInstance) -> None:
        """Drop an instance from memory, silently (vanish, end of delete, failed create)."""
        instance.cancel()
        if self.instances.get(instance.name) is instance:
            del self.instances[instance.name]

    def emit(self, instance: SimInstance, event: str, data: Any) -> asyncio.Task[None] | None:
        """Send an event to the instance's webhook if it subscribes to it; returns the delivery task."""
        config = instance.webhook
        if self._sender is None or config is None or not config.wants(event):
            return None
        envelope: dict[str, Any] = {
            "event": event,
            "instance": instance.name,
            "data": data,
            "destination": config.url,
            "date_time": utc_now_iso(),
        }
        if instance.wuid:
            envelope["sender"] = instance.wuid
        envelope["server_url"] = self.server_url
        envelope["apikey"] = instance.token if self.expose_token else None
        return self._sender.send(config, envelope)

    # ------------------------------------------------------------------------------------------ faults

    def add_fault(self, kind: str, duration: float | None = None, *, delay: float = 0.0, **params: Any) -> Fault:
        """Inject a fault from now (+delay) for `duration` seconds (None = until clear_faults)."""
        start = self.loop.time() + delay
        fault = make_fault(kind, start, None if duration is None else start + duration, params)
        self._install(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()
        self._sync_listener_soon(self.loop.time())

    def active_faults(self, path: str) -> list[Fault]:
        now = self.loop.time()
        return [fault for fault in self.faults if fault.applies(now, path)]

    def _install(self, fault: Fault) -> None:
        self.faults.append(fault)
        if fault.kind == "outage" and fault.mode == "refuse":
            for at in (fault.start, fault.end):
                if at is not None:
                    self._handles.append(self.loop.call_at(at, self._sync_listener_soon, at))

    def _sync_listener_soon(self, at: float) -> None:
        """Timer handles fire up to one clock tick early, so judge the faults at the time they were meant for."""
        if self._runner is not None:
            self.spawn(self._sync_listener(max(at, self.loop.time())))

    async def _sync_listener(self, now: float) -> None:
        """Close the listening socket while a `refuse` outage is on (connection refused), reopen it after."""
        async with self._listener_lock:
            refusing = any(f.kind == "outage" and f.mode == "refuse" and f.active(now) for f in self.faults)
            if refusing and self._site is not None:
                site, self._site = self._site, None
                await site.stop()
                log.info("outage: refusing connections")
            elif not refusing and self._site is None and self._runner is not None:
                await self._bind()
                log.info("outage over: accepting connections")

    async def _bind(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self._site = site

    # ------------------------------------------------------------------------------------------ internals

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background job that stop() cancels."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def remember(self, history: list[Any], item: Any) -> None:
        """Append to a record list, trimming the oldest entries in batches past history_limit."""
        history.append(item)
        if len(history) > self.history_limit * 1.1 + 1:
            del history[: len(history) - self.history_limit]

    def _record_delivery(self, delivery: Delivery) -> None:
        self.remember(self.deliveries, delivery)

    def play(self, scenario: Scenario) -> None:
        """Create a scenario's instances and arm its events and faults, its times counting from now
        (start() plays the constructor's scenario, so there they count from the simulator's start)."""
        clashes = [spec.name for spec in scenario.instances if spec.name in self.instances]
        if clashes:
            raise ValueError(f"instances already exist: {', '.join(clashes[:5])}")
        origin = self.loop.time()
        for spec in scenario.instances:
            self.add_instance(spec.name, spec.start, token=spec.token, number=spec.number, webhook=spec.webhook)
            for event in spec.events:
                self._handles.append(self.loop.call_at(origin + event.at, self._scheduled, spec.name, event))
        for spec in scenario.faults:
            end = None if spec.end is None else origin + spec.end
            self._install(make_fault(spec.kind, origin + spec.start, end, spec.params))

    def _scheduled(self, name: str, event: ScenarioEvent) -> None:
        try:
            self.act(name, event.action, event.reason, heals=event.heals)
        except (KeyError, ActionNotApplicable) as exc:
            log.warning("scenario event at %ss skipped: %s", event.at, exc)
