"""The overlays render, every object is valid for the Kubernetes version the README names, the custom
resources are valid for their CRDs, and the pieces are wired to each other (selectors, ports, names).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest

from tests.manifests.render import OVERLAYS, ROOT, needs_kubectl, one, render
from whatsapp_operator.devkit.crds import load_crds, load_examples, read_manifests
from whatsapp_operator.devkit.kube_emulator import Schema

KUBERNETES_VERSION = "1.32"  # README.md, "Deploy"; the StatefulSet's pod-index label needs 1.28
# Kinds whose schemas are not Kubernetes' own: the CRDs rendered beside them, or Prometheus
# Operator's (not installed here: their wiring is checked below instead).
CUSTOM_GROUPS = ("whatsapp.evolution-operator.io/", "kopf.dev/")
PROMETHEUS_OPERATOR = "monitoring.coreos.com/"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}

pytestmark = needs_kubectl


def crd_schemas(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> the served version's schema, from the CRDs among `objects`."""
    return {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]): Schema(
            version["schema"]["openAPIV3Schema"]
        )
        for crd in objects
        if crd["kind"] == "CustomResourceDefinition"
        for version in crd["spec"]["versions"]
        if version["served"]
    }


def custom_resource_problems(obj: dict[str, Any], schemas: dict[tuple[str, str], Schema]) -> list[str]:
    schema = schemas[(obj["apiVersion"], obj["kind"])]
    stored = copy.deepcopy(obj)
    return [f"pruned {field}" for field in schema.prune(stored)] + [str(cause) for cause in schema.validate(stored)]


def test_the_readme_names_the_kubernetes_version() -> None:
    assert f"Kubernetes {KUBERNETES_VERSION}" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_kubernetes_and_its_crd(overlay: str) -> None:
    objects = render(overlay)
    schemas = crd_schemas(objects)
    problems = []
    for obj in objects:
        what = f"{obj['kind']} {obj['metadata']['name']}"
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            problems += [f"{what}: {p}" for p in custom_resource_problems(obj, schemas)]
        elif not obj["apiVersion"].startswith(PROMETHEUS_OPERATOR):
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{what}: {exc.message} at {'.'.join(map(str, exc.path))}")
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], f"{what} is cluster-scoped"
        else:
            assert obj["metadata"].get("namespace") == "whatsapp-operator", what
    assert problems == []


def test_the_examples_are_valid_for_the_crds() -> None:
    schemas = crd_schemas(render("prod"))
    custom = [doc for doc in load_examples() if doc["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert sorted(doc["kind"] for doc in custom) == ["EvolutionServer", "WhatsAppInstance"]
    assert [p for doc in custom for p in custom_resource_problems(doc, schemas)] == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_crds_are_crds_directory_unchanged(overlay: str) -> None:
    """One source of truth: the base references crds/, it does not keep a copy."""
    rendered = {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == "CustomResourceDefinition"}
    for crd in load_crds():
        shipped = copy.deepcopy(rendered[crd["metadata"]["name"]])
        for added in ("labels", "annotations"):  # crds/kustomization.yaml's, for Argo CD and kubectl -l
            shipped["metadata"].pop(added)
        assert shipped == crd


def settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    return one(objects, "ConfigMap", "whatsapp-operator-settings")["data"]


def operator_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "StatefulSet", "whatsapp-operator")["spec"]["template"]


def port_of(container: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_operators_wiring(overlay: str) -> None:
    objects = render(overlay)
    pod = operator_pod(objects)
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    config_map = one(objects, "ConfigMap", "whatsapp-operator-settings")
    config = config_map["data"]
    # The ports the settings listen on are the container's, the probes' and the Service's.
    assert config["WHATSAPP_OPERATOR_LIVENESS"].endswith(f":{port_of(container, 'healthz')}/healthz")
    assert config["WHATSAPP_OPERATOR_WEBHOOK_LISTEN"].endswith(f":{port_of(container, 'http')}")
    assert config["WHATSAPP_OPERATOR_METRICS_LISTEN"].endswith(f":{port_of(container, 'metrics')}")
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/api/v1/openapi.json", "port": "http"}
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    assert pod["spec"]["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    service = one(objects, "Service", "whatsapp-operator")
    assert selects(service["spec"]["selector"], labels)
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "metrics"}
    monitor = one(objects, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert selects(one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    policy = one(objects, "NetworkPolicy", "whatsapp-operator")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["http", "metrics"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 443, 5432} <= egress_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pods_run_as_the_images_user_unprivileged(overlay: str) -> None:
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user is not None
    pods = [o["spec"]["template"] for o in render(overlay) if o["kind"] in ("StatefulSet", "Deployment", "Job")]
    assert pods
    for pod in pods:
        context = pod["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (int(user[1]), int(user[2]))
        assert context["runAsNonRoot"] is True
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["spec"]["containers"]:
            assert container["securityContext"] == {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
            assert {"requests", "limits"} <= container["resources"].keys()


def test_the_migration_runs_before_the_operator_in_argo_cd() -> None:
    objects = render("prod")
    job = one(objects, "Job", "whatsapp-operator-migrate")
    statefulset = one(objects, "StatefulSet", "whatsapp-operator")

    def wave(obj: dict[str, Any]) -> int:
        return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))

    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert max(map(wave, crds)) < wave(job) < wave(statefulset)
    assert [o for o in objects if wave(o) > wave(statefulset)] == []


def test_prod_is_a_peering_pair_with_distinct_priorities() -> None:
    objects = render("prod")
    statefulset = one(objects, "StatefulSet", "whatsapp-operator")
    assert statefulset["spec"]["replicas"] == 2
    peering = settings(objects)["WHATSAPP_OPERATOR_PEERING"]
    assert one(objects, "ClusterKopfPeering")["metadata"]["name"] == peering
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    # kopf pauses every replica of a pair that share a priority: each takes its ordinal.
    assert env["WHATSAPP_OPERATOR_PRIORITY"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    affinity = statefulset["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"]["matchLabels"], statefulset["spec"]["template"]["metadata"]["labels"])


def test_dev_runs_the_simulator_as_evolution_without_a_database() -> None:
    objects = render("dev")
    assert one(objects, "StatefulSet", "whatsapp-operator")["spec"]["replicas"] == 1
    assert "WHATSAPP_OPERATOR_PEERING" not in settings(objects)
    assert settings(objects)["WHATSAPP_OPERATOR_VERBOSE"] == "true"
    (container,) = operator_pod(objects)["spec"]["containers"]
    assert [e["name"] for e in container["env"]] == ["POD_ID"]
    assert [o for o in objects if o["kind"] == "Job"] == []
    simulator = one(objects, "Deployment", "evolution-simulator")
    (sim,) = simulator["spec"]["template"]["spec"]["containers"]
    assert sim["args"][0] == "simulator"
    service = one(objects, "Service", "evolution-simulator")
    assert selects(service["spec"]["selector"], simulator["spec"]["template"]["metadata"]["labels"])
    server = one(objects, "EvolutionServer", "default")
    assert (
        server["spec"]["url"]
        == f"http://evolution-simulator.whatsapp-operator.svc:{service['spec']['ports'][0]['port']}"
    )
    secret = one(objects, "Secret", server["spec"]["apiKeySecretRef"]["name"])
    assert server["spec"]["apiKeySecretRef"]["key"] in secret["stringData"]


def test_the_image_exposes_the_containers_ports() -> None:
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed is not None
    (container,) = operator_pod(render("prod"))["spec"]["containers"]
    assert sorted(map(int, exposed[1].split())) == sorted(p["containerPort"] for p in container["ports"])


def test_prometheus_rule_is_manifests_prometheus_unchanged() -> None:
    (rule,) = read_manifests(ROOT / "manifests" / "prometheus" / "rules.yaml")
    shipped = copy.deepcopy(one(render("prod"), "PrometheusRule"))
    assert shipped["metadata"].pop("namespace") == "whatsapp-operator"
    assert shipped["metadata"]["labels"].pop("app.kubernetes.io/part-of") == "whatsapp-operator"
    assert shipped == rule
