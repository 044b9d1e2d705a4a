"""The loopback admin API under /_sim/: inspect what the simulator saw and steer it. No apikey, no faults."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from whatsapp_operator.devkit.simulator.instance import ActionNotApplicable
from whatsapp_operator.devkit.simulator.scenario import Scenario, ScenarioError

if TYPE_CHECKING:
    from whatsapp_operator.devkit.simulator.core import Simulator

ADMIN_PREFIX = "/_sim/"


def admin_routes(sim: Simulator) -> list[web.RouteDef]:
    admin = AdminApi(sim)
    return [
        web.get("/_sim/instances", admin.instances),
        web.get("/_sim/instances/{name}", admin.instance),
        web.post("/_sim/instances/{name}/{action}", admin.act),
        web.post("/_sim/scenario", admin.play),
        web.get("/_sim/requests", admin.requests),
        web.get("/_sim/messages", admin.messages),
        web.get("/_sim/deliveries", admin.deliveries),
        web.get("/_sim/faults", admin.faults),
        web.post("/_sim/faults", admin.add_fault),
        web.delete("/_sim/faults", admin.clear_faults),
        web.post("/_sim/reset", admin.reset),
    ]


class AdminApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def instances(self, request: web.Request) -> web.Response:
        state = request.query.get("state")
        return web.json_response(
            [i.snapshot() for i in self.sim.instances.values() if state is None or i.state == state]
        )

    async def instance(self, request: web.Request) -> web.Response:
        instance = self.sim.instances.get(request.match_info["name"])
        if instance is None:
            return _error(404, f"no instance named {request.match_info['name']!r}")
        return web.json_response(instance.snapshot())

    async def act(self, request: web.Request) -> web.Response:
        """POST /_sim/instances/{name}/{action} with an optional {"reason": 401} (zombie: {"heals": false})."""
        name, action = request.match_info["name"], request.match_info["action"]
        body = await _json(request)
        if not isinstance(body, dict):
            return _error(400, 'the body must be a JSON object such as {"reason": 401}')
        try:
            self.sim.act(name, action, body.get("reason"), heals=body.get("heals"))
        except KeyError:
            return _error(404, f"no instance named {name!r}")
        except ValueError as exc:
            return _error(400, str(exc))
        except ActionNotApplicable as exc:
            return _error(409, str(exc))
        instance = self.sim.instances.get(name)
        return web.json_response(instance.snapshot() if instance else {"name": name, "vanished": True})

    async def play(self, request: web.Request) -> web.Response:
        """Add a scenario's instances, events and faults now; its times count from this request."""
        try:
            scenario = Scenario.from_dict(await _json(request))
            self.sim.play(scenario)
        except (ScenarioError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response([self.sim.instances[spec.name].snapshot() for spec in scenario.instances], status=201)

    async def requests(self, request: web.Request) -> web.Response:
        return _listing(request, self.sim.requests)

    async def messages(self, request: web.Request) -> web.Response:
        return _listing(request, self.sim.messages)

    async def deliveries(self, request: web.Request) -> web.Response:
        return _listing(request, self.sim.deliveries)

    async def faults(self, request: web.Request) -> web.Response:
        return web.json_response([fault.to_dict(self.sim.origin) for fault in self.sim.faults])

    async def add_fault(self, request: web.Request) -> web.Response:
        """POST /_sim/faults {"kind": "errors", "rate": 0.5, "duration": 30, "delay": 0}."""
        params = await _json(request)
        if not isinstance(params, dict) or "kind" not in params:
            return _error(400, 'the body must be a JSON object with a "kind"')
        kind, duration, delay = params.pop("kind"), params.pop("duration", None), params.pop("delay", 0.0)
        try:
            fault = self.sim.add_fault(str(kind), duration, delay=delay, **params)
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response(fault.to_dict(self.sim.origin), status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim.clear_faults()
        return web.json_response([])

    async def reset(self, request: web.Request) -> web.Response:
        self.sim.reset()
        return web.json_response({"reset": True})


def _listing(request: web.Request, records: Sequence[Any]) -> web.Response:
    """Records filtered by ?instance=, ?event=, ?since= (seconds since start), ?limit= (the last N)."""
    query = request.query
    try:
        since = float(query["since"]) if "since" in query else None
        limit = int(query["limit"]) if "limit" in query else None
    except ValueError:
        return _error(400, "since must be a number of seconds and limit an integer")
    rows = [
        record
        for record in records
        if (since is None or record.at >= since)
        and query.get("instance") in (None, record.instance)
        and query.get("event") in (None, getattr(record, "event", None))
    ]
    if limit is not None:
        rows = rows[-limit:] if limit > 0 else []
    return web.json_response([record.to_dict() for record in rows])


async def _json(request: web.Request) -> Any:
    if not request.body_exists:
        return {}
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
