"""The operator's RBAC (manifests/base/rbac.yaml, and manifests/overlays/prod/peering-rbac.yaml for an
active/standby pair) against the calls it really makes: the real operator runs with every feature
that reaches the API server turned on (Postgres, webhooks, notifications on every channel with a
messages ConfigMap, the status API and its token Secret, a deletion), standalone and in peering
mode, and the emulator's audit log gives each request as RBAC's authorizer sees it.

Every call must be allowed by a rule, every verb and resource a rule grants must have been used by
some call, and no rule may hold a wildcard. Discovery (non-resource paths) is allowed to every
authenticated user by the cluster's default `system:discovery` role, so it must stay within that."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.operator_harness import environment, instance_manifest, wait_event, wait_phase
from tests.support.pg import eventually
from tests.support.status_api import status_client
from whatsapp_operator import GROUP
from whatsapp_operator.devkit.kube_emulator import Access
from whatsapp_operator.devkit.kube_emulator.cluster import USER_AGENT
from whatsapp_operator.devkit.manifests import notifier_spec
from whatsapp_operator.devkit.simulator.receiver import WebhookSink

pytestmark = pytest.mark.looptime

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "manifests/base/rbac.yaml"
PEERING = ROOT / "manifests/overlays/prod/peering-rbac.yaml"
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "whatsapp-operator", "namespace": "whatsapp-operator"}
PEERING_NAME = "whatsapp-operator"  # the name peering-rbac.yaml allows patching
# The default ClusterRole system:discovery (bound to system:authenticated) as of Kubernetes 1.30.
DISCOVERY = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz")
DISCOVERY += ("/version", "/version/")
SENDER, PHONE = "platform-sender", "+5511987654321"
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"the application's callback secret").decode()


def bound_rules(*paths: Path) -> list[dict[str, Any]]:
    """The rules of the ClusterRoles that ClusterRoleBindings in these files give the operator's
    ServiceAccount. Namespaced Roles would need the namespace in the match: there are none."""
    docs = [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]
    kinds = {doc["kind"] for doc in docs}
    assert kinds <= {"ClusterRole", "ClusterRoleBinding"}, f"teach this test {kinds} first"
    roles = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ClusterRole"}
    bindings = [doc for doc in docs if doc["kind"] == "ClusterRoleBinding"]
    assert all(b["subjects"] == [SERVICE_ACCOUNT] for b in bindings)
    assert {b["roleRef"]["name"] for b in bindings} == set(roles), "every role bound, and only those"
    return [rule for b in bindings for rule in roles[b["roleRef"]["name"]]["rules"]]


def allows(rule: dict[str, Any], access: Access) -> bool:
    """RBAC's rule match (pkg/apis/rbac/v1/evaluation_helpers.go), wildcards aside."""
    return (
        access.group in rule["apiGroups"]
        and access.qualified in rule["resources"]
        and access.verb in rule["verbs"]
        and (not rule.get("resourceNames") or access.name in rule["resourceNames"])
    )


def grants(rule: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    return itertools.product(rule["apiGroups"], rule["resources"], rule["verbs"])


def operator_calls(audit_log: list[Access]) -> list[Access]:
    """The operator's requests (kopf's and its own), without the test's kubectl-like verbs."""
    return [access for access in audit_log if not access.user_agent.startswith(USER_AGENT)]


async def run_every_feature(pg_url: str, peering: str | None) -> list[Access]:
    async with WebhookSink() as sink:
        spec = notifier_spec(SENDER, f"{sink.url}/events") | {"messagesConfigMapRef": {"name": "driver-texts"}}
        features = dict(database_url=pg_url, webhooks=True, status_api=True, callback_secret=CALLBACK_SECRET)
        async with environment(**features, peering=peering, notifier=spec) as (kube, sim, runtime):
            texts = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "driver-texts"}, "data": {}}
            await kube.create(texts)
            sim.add_instance(SENDER, "open")
            sim.add_instance("driver-a", "open", number=PHONE.lstrip("+"))
            await kube.create(instance_manifest("driver-a", phone=PHONE))
            await wait_phase(kube, "driver-a", "Connected")
            async with status_client(runtime.http.url if runtime.http else None) as api:
                assert (await api.get("driver-a")).status == 200
            sim.act("driver-a", "disconnect", 401)  # a webhook, a notification on each channel
            await wait_phase(kube, "driver-a", "LoggedOut")
            await wait_event(kube, "driver-a", "DriverNotified")
            await eventually(lambda: len(sink.posts) == 1, within=60)
            await kube.delete("whatsappinstances", "driver-a")  # kopf's deletion handler, the finalizer
            async with asyncio.timeout(60):
                await kube.wait_for("whatsappinstances", "driver-a", lambda obj: obj is None)
            await asyncio.sleep(60)  # a probe round more, and kopf's peering keep-alive
    return operator_calls(kube.emulator.audit_log)


@pytest.mark.parametrize(
    ("mode", "files", "exhausted"),
    [("standalone", (BASE,), BASE), ("peering", (BASE, PEERING), PEERING)],
)
async def test_the_rbac_allows_every_call_and_grants_nothing_unused(
    pg_url: str, mode: str, files: tuple[Path, ...], exhausted: Path
) -> None:
    """`exhausted`: the file whose every grant this mode must use (the base's alone, standalone)."""
    made = await run_every_feature(pg_url, PEERING_NAME if mode == "peering" else None)
    rules = bound_rules(*files)
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}
        assert not any("*" in value for field in rule.values() for value in field), f"a wildcard: {rule}"

    resource_calls = [access for access in made if access.resource is not None]
    denied = sorted({str(access) for access in resource_calls if not any(allows(r, access) for r in rules)})
    assert denied == [], "calls the RBAC does not allow"
    undiscovered = sorted(
        {a.path for a in made if a.resource is None and not any(fnmatch.fnmatch(a.path, p) for p in DISCOVERY)}
    )
    assert undiscovered == [], "non-resource requests beyond system:discovery"
    used = {(a.group, a.qualified, a.verb) for a in resource_calls}
    unused = sorted(grant for rule in bound_rules(exhausted) for grant in grants(rule) if grant not in used)
    assert unused == [], f"{exhausted.name} grants what the operator never does"
    # Each feature's calls are among them, so the run really exercised it.
    needed = {("", "secrets", "get"), ("", "configmaps", "get"), ("", "events", "create")}
    needed |= {(GROUP, "whatsappinstances/status", "patch"), (GROUP, "evolutionservers/status", "patch")}
    assert needed <= used
