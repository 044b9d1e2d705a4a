"""`whatsapp-operator status`: the fleet as the cluster's statuses tell it, through the current
kubeconfig context: instances per phase per EvolutionServer, each server's breaker, and the
instances that are down (the heartbeat's `unhealthy`) or not known (`unknown`, never unhealthy).

It reads what the operator wrote in `.status`, with `kubernetes_asyncio` (list on both resources
is all it needs), and prints no phone number, token or pairing code: none is in a status.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.core.resources import InstanceSpec
from whatsapp_operator.core.state import stuck
from whatsapp_operator.core.status import from_status, health

if TYPE_CHECKING:
    from kubernetes_asyncio import client

# kubernetes_asyncio is imported where it is used: it takes half a second, and the CLI imports every
# command's module to build its parser, `run`'s included.


@dataclasses.dataclass(frozen=True)
class Instance:
    namespace: str
    name: str
    server: str  # namespace/name of its EvolutionServer
    phase: str
    health: str | None  # the heartbeat's bucket (core.status.health)
    reason: str  # the Stuck condition's reason when stuck, else Evolution's status reason
    since: str  # lastTransitionTime

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> Instance:
        spec, status = InstanceSpec.parse(obj), obj.get("status") or {}
        state = from_status(status)
        condition = state.condition("Stuck")
        is_stuck = stuck(state)
        reason = condition.reason if is_stuck and condition else str(status.get("statusReason") or "")
        return cls(
            namespace=spec.namespace,
            name=spec.name,
            server=f"{spec.namespace}/{spec.server}",
            phase=str(state.phase),
            health=health(state.phase, is_stuck),
            reason=reason,
            since=str(status.get("lastTransitionTime") or ""),
        )


@dataclasses.dataclass(frozen=True)
class Server:
    key: str  # namespace/name
    breaker: str  # the server's status; "-" when it has none (no operator wrote it yet) or is gone
    phases: dict[str, int]  # only the phases some instance is in

    @property
    def instances(self) -> int:
        return sum(self.phases.values())


def fleet(servers: Iterable[Mapping[str, Any]], instances: Iterable[Instance]) -> list[Server]:
    """Every EvolutionServer, and every server instances name that does not exist, sorted."""
    breakers = {
        f"{s['metadata']['namespace']}/{s['metadata']['name']}": (s.get("status") or {}).get("breaker") or "-"
        for s in servers
    }
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for instance in instances:
        counts[instance.server][instance.phase] += 1
    order = {str(phase): i for i, phase in enumerate(Phase)}
    return [
        Server(key, breakers.get(key, "-"), dict(sorted(counts[key].items(), key=lambda item: order[item[0]])))
        for key in sorted(breakers.keys() | counts.keys())
    ]


def render_text(servers: list[Server], instances: list[Instance]) -> str:
    rows = [["SERVER", "BREAKER", "INSTANCES", "PHASES"]]
    for s in servers:
        phases = ", ".join(f"{phase} {n}" for phase, n in s.phases.items()) or "-"
        rows.append([s.key, s.breaker, str(s.instances), phases])
    out = [_table(rows)]
    for bucket, title in (("unhealthy", "Unhealthy"), ("unknown", "Unknown (probes failing)")):
        listed = [i for i in instances if i.health == bucket]
        out.append(f"\n{title}: {len(listed)}")
        if listed:
            header = ["INSTANCE", "SERVER", "PHASE", "REASON", "SINCE"]
            out.append(
                _table([header] + [[f"{i.namespace}/{i.name}", i.server, i.phase, i.reason, i.since] for i in listed])
            )
    return "\n".join(out) + "\n"


def render_json(servers: list[Server], instances: list[Instance]) -> str:
    def listed(bucket: str) -> list[dict[str, str]]:
        return [
            {"namespace": i.namespace, "name": i.name, "server": i.server, "phase": i.phase, "reason": i.reason}
            | {"since": i.since}
            for i in instances
            if i.health == bucket
        ]

    document = {
        "servers": [
            {"server": s.key, "breaker": s.breaker, "instances": s.instances, "phases": s.phases} for s in servers
        ],
        "unhealthy": listed("unhealthy"),
        "unknown": listed("unknown"),
    }
    return json.dumps(document, indent=2) + "\n"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


async def read_cluster(
    kubeconfig: str | None, context: str | None, namespace: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The EvolutionServers and WhatsAppInstances (of `namespace`, or all), as the API lists them."""
    from kubernetes_asyncio import client

    api_client = await _client(kubeconfig, context)
    async with api_client:
        api = client.CustomObjectsApi(api_client)
        listed = []
        for plural in ("evolutionservers", "whatsappinstances"):
            if namespace:
                answer = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
            else:
                answer = await api.list_cluster_custom_object(GROUP, VERSION, plural)
            listed.append(list(answer["items"]))
    return listed[0], listed[1]


async def _client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """The kubeconfig's context (`--kubeconfig`, else $KUBECONFIG's files, else ~/.kube/config), or
    the pod's ServiceAccount when there is no kubeconfig and none was named (`kubectl exec`)."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    paths = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if _exists(paths):
        await config.load_kube_config(config_file=paths, context=context, client_configuration=configuration)
    elif not (kubeconfig or context) and "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config(client_configuration=configuration)
    else:
        raise config.ConfigException(f"no kubeconfig at {paths}")
    return client.ApiClient(configuration)


def _exists(paths: str) -> bool:
    """Whether any of a $KUBECONFIG-style list of files exists (a one-shot command: no thread)."""
    return any(os.path.exists(os.path.expanduser(path)) for path in paths.split(os.pathsep) if path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="the kubeconfig file; default: $KUBECONFIG, then ~/.kube/config")
    parser.add_argument("--context", help="the kubeconfig context; default: its current context")
    parser.add_argument("-n", "--namespace", help="only this namespace; default: all")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def run(args: argparse.Namespace) -> int:
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        servers, objects = asyncio.run(read_cluster(args.kubeconfig, args.context, args.namespace))
    except config.ConfigException as exc:
        print(f"whatsapp-operator status: no Kubernetes credentials: {exc}", file=sys.stderr)
        return 2
    except ApiException as exc:
        print(f"whatsapp-operator status: the API server answered {exc.status} {exc.reason}", file=sys.stderr)
        return 1
    except OSError as exc:  # aiohttp's connection errors are OSErrors too
        print(f"whatsapp-operator status: cannot reach the API server: {exc}", file=sys.stderr)
        return 1
    instances = sorted((Instance.read(obj) for obj in objects), key=lambda i: (i.namespace, i.name))
    summary = fleet(servers, instances)
    sys.stdout.write(render_json(summary, instances) if args.json else render_text(summary, instances))
    return 0
