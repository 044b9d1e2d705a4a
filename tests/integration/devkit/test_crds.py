"""The CRDs: structural, named as the design says, every status field declared, strict where they can be.

The schemas are exercised in-process with the emulator's `Schema` (what the API server does on a
write: prune, default, validate); test_emulator.py shows the same over HTTP.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from whatsapp_operator import GROUP, VERSION
from whatsapp_operator.core.phases import Phase
from whatsapp_operator.devkit.crds import load_crds, load_examples
from whatsapp_operator.devkit.kube_emulator import Cause, Schema, structural_errors

CRDS = {crd["spec"]["names"]["kind"]: crd for crd in load_crds()}

# The design brief's status fields (section 3) and the issue's, per kind.
DESIGN_STATUS = {
    "WhatsAppInstance": {
        "phase",
        "state",
        "statusReason",
        "message",
        "conditions",
        "connectingSince",
        "pairingCodeExpiresAt",
        "forcedLogouts",
        "lastForcedLogoutTime",
        "lastNotifiedTime",
        "lastProbeTime",
        "lastTransitionTime",
        "observedGeneration",
        "instanceName",
        "server",
        "evolutionInstanceId",
    },
    "EvolutionServer": {
        "conditions",
        "breaker",
        "instances",
        "phases",
        "connected",
        "healthy",
        "unhealthy",
        "unknown",
        "pairing",
        "observedGeneration",
        "lastProbeRoundSeconds",
    },
}
PRINTER_COLUMNS = {
    "WhatsAppInstance": [
        ("Driver", ".spec.driverName"),
        ("Phone", ".spec.phoneNumber"),
        ("Phase", ".status.phase"),
        ("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        ("Reason", ".status.statusReason"),
        ("Server", ".spec.serverRef.name"),
        ("Age", ".metadata.creationTimestamp"),
        ("State", ".status.state"),
        ("Forced Logouts", ".status.forcedLogouts"),
        ("Restarts", ".status.restarts"),
        ("Last Transition", ".status.lastTransitionTime"),
        ("Message", ".status.message"),
    ],
    "EvolutionServer": [
        ("URL", ".spec.url"),
        ("Breaker", ".status.breaker"),
        ("Instances", ".status.instances"),
        ("Connected", ".status.connected"),
        ("Unhealthy", ".status.unhealthy"),
        ("Unknown", ".status.unknown"),
        ("Pairing", ".status.pairing"),
        ("Age", ".metadata.creationTimestamp"),
    ],
}


def served(kind: str) -> dict[str, Any]:
    (version,) = CRDS[kind]["spec"]["versions"]
    return version


def openapi(kind: str) -> dict[str, Any]:
    return served(kind)["schema"]["openAPIV3Schema"]


def admit(obj: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[Cause]]:
    """What the API server would store, prune and refuse for `obj`."""
    stored = copy.deepcopy(dict(obj))
    schema = Schema(openapi(stored["kind"]))
    pruned = schema.prune(stored)
    schema.default(stored)
    return stored, pruned, schema.validate(stored)


def instance(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WhatsAppInstance",
        "metadata": {"name": "maria"},
        "spec": {"driverId": "driver-1", "phoneNumber": "+5511987654321", **spec},
    }


def server(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvolutionServer",
        "metadata": {"name": "default"},
        "spec": {"url": "https://evo.example.com", "apiKeySecretRef": {"name": "evo", "key": "apiKey"}, **spec},
    }


def schema_nodes(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{key}")
    if isinstance(node.get("items"), Mapping):
        yield from schema_nodes(node["items"], f"{path}[*]")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_is_structural_and_named_as_designed(kind: str) -> None:
    crd, names = CRDS[kind], CRDS[kind]["spec"]["names"]
    assert structural_errors(openapi(kind)) == []
    assert crd["metadata"]["name"] == f"{names['plural']}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["plural"] == f"{kind.lower()}s"
    assert names["singular"] == kind.lower()
    assert names["shortNames"] == {"WhatsAppInstance": ["wai"], "EvolutionServer": ["evo"]}[kind]
    assert names["categories"] == ["whatsapp"]
    version = served(kind)
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    columns = [(column["name"], column["jsonPath"]) for column in version["additionalPrinterColumns"]]
    assert columns == PRINTER_COLUMNS[kind]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_status_field_is_declared_and_none_is_left_open(kind: str) -> None:
    status = openapi(kind)["properties"]["status"]
    assert DESIGN_STATUS[kind] <= set(status["properties"])
    open_nodes = [
        path
        for path, node in schema_nodes(status, ".status")
        if node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node
    ]
    assert open_nodes == []  # kopf keeps its progress in annotations: nothing unknown belongs here


def test_phases_are_the_state_machines() -> None:
    phases = [str(phase) for phase in Phase]
    assert openapi("WhatsAppInstance")["properties"]["status"]["properties"]["phase"]["enum"] == phases
    assert list(openapi("EvolutionServer")["properties"]["status"]["properties"]["phases"]["properties"]) == phases


def test_examples_are_valid_and_complete() -> None:
    custom = [doc for doc in load_examples() if doc["apiVersion"] == f"{GROUP}/{VERSION}"]
    assert sorted(doc["kind"] for doc in custom) == ["EvolutionServer", "WhatsAppInstance"]
    for doc in custom:
        stored, pruned, causes = admit(doc)
        assert (pruned, causes) == ([], [])
        assert stored == doc  # every default is spelled out in the examples
    secret = next(doc for doc in load_examples() if doc["kind"] == "Secret")
    server_spec = next(doc for doc in custom if doc["kind"] == "EvolutionServer")["spec"]
    assert server_spec["apiKeySecretRef"]["key"] in secret["stringData"]
    assert server_spec["webhook"]["authSecretRef"]["key"] in secret["stringData"]


def test_minimal_manifests_get_the_designed_defaults() -> None:
    stored, _, causes = admit(instance())
    assert causes == []
    assert stored["spec"] == {
        "driverId": "driver-1",
        "phoneNumber": "+5511987654321",
        "serverRef": {"name": "default"},
        "pairing": {"method": "pairingCode"},
        "notifications": {"onDisconnect": True},
        "suspend": False,
        "deletionPolicy": "Delete",
    }
    stored, _, causes = admit(server())
    assert causes == []
    assert stored["spec"]["probe"] == {
        "intervalSeconds": 30,
        "timeoutSeconds": 5,
        "attempts": 3,
        "concurrency": 50,
        "livenessIntervalSeconds": 300,
        "livenessTimeoutSeconds": 10,
        "livenessFailureThreshold": 2,
        "livenessMaxFailingPercent": 30,
    }
    assert stored["spec"]["circuitBreaker"] == {"failureThreshold": 5, "openSeconds": 60}
    remediation = {"stuckAfterSeconds": 30, "maxForcedLogoutsPerHour": 3, "maxRestartsPerHour": 3}
    assert stored["spec"]["remediation"] == remediation


# spec.phoneNumber has a file of its own: test_crd_phone_numbers.py.


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        (instance(pairing={"method": "sms"}), "spec.pairing.method"),
        (instance(deletionPolicy="Orphan"), "spec.deletionPolicy"),
        (instance(instanceName="Maria_Souza"), "spec.instanceName"),
        (instance(driverId=""), "spec.driverId"),
        (instance(driverId="x" * 129), "spec.driverId"),
        ({**instance(), "status": {"phase": "Dancing"}}, "status.phase"),
        ({**instance(), "status": {"forcedLogouts": -1}}, "status.forcedLogouts"),
        ({**instance(), "status": {"connectingSince": "yesterday"}}, "status.connectingSince"),
        (
            {**instance(), "status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}},
            "status.conditions[0].status",
        ),
        (server(probe={"intervalSeconds": -1}), "spec.probe.intervalSeconds"),
        (server(probe={"attempts": 11}), "spec.probe.attempts"),
        (server(remediation={"maxForcedLogoutsPerHour": -1}), "spec.remediation.maxForcedLogoutsPerHour"),
        (server(url="ftp://evo"), "spec.url"),
        (server(webhook={"url": "http://op:8081/webhooks/evolution"}), "spec.webhook.authSecretRef"),
        ({**server(), "status": {"breaker": "Ajar"}}, "status.breaker"),
    ],
)
def test_bad_values_are_refused_by_field(manifest: dict[str, Any], field: str) -> None:
    assert field in {cause.field for cause in admit(manifest)[2]}


def test_required_fields_and_condition_conventions() -> None:
    causes = admit({**instance(), "spec": {}})[2]
    assert {cause.field for cause in causes} == {"spec.driverId", "spec.phoneNumber"}
    ready = {"type": "Ready", "status": "True", "reason": "Open", "lastTransitionTime": "2024-05-01T12:00:00Z"}
    assert admit({**instance(), "status": {"conditions": [ready]}})[2] == []
    for broken, field in [
        ([ready, ready], "status.conditions[1]"),
        ([{**ready, "reason": "not camel case"}], "status.conditions[0].reason"),
        ([{k: v for k, v in ready.items() if k != "lastTransitionTime"}], "status.conditions[0].lastTransitionTime"),
    ]:
        assert field in {cause.field for cause in admit({**instance(), "status": {"conditions": broken}})[2]}


def test_structural_checker_catches_what_the_api_server_refuses() -> None:
    schema = {
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "list": {"type": "array"},
            "interval": {"type": "integer", "minimum": 5, "default": 1},
            "ref": {"type": "object", "properties": {"name": {"type": "string"}}, "default": {"nme": "typo"}},
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "properties": {"type": {"type": "string"}}},
            },
        },
    }
    errors = "\n".join(structural_errors(schema))
    assert "untyped: type is required" in errors
    assert "list: items is required for arrays" in errors
    assert "interval: default is invalid" in errors
    assert "ref.nme: default has a field the schema prunes" in errors
    assert "items: list-map key type must be required or defaulted" in errors
