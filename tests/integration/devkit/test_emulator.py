"""The strict emulator over real HTTP on loopback: what a real API server would do, it does."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from whatsapp_operator.devkit.kube_emulator import EmulatedCluster, KubeApiError

API = "whatsapp.evolution-operator.io/v1alpha1"
KUBECTL_AGENT = "kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd"  # a user's kubectl
OPERATOR_AGENT = "kopf/1.37.2"
INSTANCES = f"/apis/{API}/namespaces/default/whatsappinstances"


def instance(name: str = "maria", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "WhatsAppInstance",
        "metadata": {"name": name},
        "spec": {"driverId": "driver-1", "phoneNumber": "+5511987654321", **spec},
    }


async def http(kube: EmulatedCluster, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with kube._server.client.request(method, path, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def watch(kube: EmulatedCluster, path: str, count: int, **params: str) -> list[dict[str, Any]]:
    """The first `count` events of a watch stream."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(5), kube._server.client.get(path, params={"watch": "true", **params}) as response:
        async for line in response.content:
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


async def test_discovery_describes_resources_as_kopf_reads_them(kube: EmulatedCluster) -> None:
    status, groups = await http(kube, "GET", "/apis")
    assert status == 200
    assert {"groupVersion": API, "version": "v1alpha1"} in next(
        group["versions"] for group in groups["groups"] if group["name"] == "whatsapp.evolution-operator.io"
    )
    _, listing = await http(kube, "GET", f"/apis/{API}")
    resources = {resource["name"]: resource for resource in listing["resources"]}
    assert set(resources) == {
        "whatsappinstances",
        "whatsappinstances/status",
        "evolutionservers",
        "evolutionservers/status",
    }
    wai = resources["whatsappinstances"]
    assert wai["kind"] == "WhatsAppInstance"
    assert wai["namespaced"] is True
    assert wai["shortNames"] == ["wai"]
    assert wai["categories"] == ["whatsapp"]
    assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= set(wai["verbs"])
    _, core = await http(kube, "GET", "/api/v1")
    assert {"secrets", "events", "namespaces", "namespaces/status"} <= {r["name"] for r in core["resources"]}


KUBECTL_DISCOVERY = (  # what kubectl 1.32 asks /api and /apis for
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


async def aggregated(kube: EmulatedCluster, path: str, accept: str = KUBECTL_DISCOVERY) -> tuple[str, Any]:
    async with kube._server.client.get(path, headers={"Accept": accept}) as response:
        assert response.status == 200
        return response.headers["Content-Type"], await response.json(content_type=None)


async def test_aggregated_discovery_serves_every_group_in_one_document(kube: EmulatedCluster) -> None:
    content_type, apis = await aggregated(kube, "/apis")
    assert content_type == AGGREGATED_V2
    assert (apis["kind"], apis["apiVersion"]) == ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2")
    groups = {item["metadata"]["name"]: item for item in apis["items"]}
    assert {"whatsapp.evolution-operator.io", "events.k8s.io", "kopf.dev", "apiextensions.k8s.io"} <= set(groups)
    (version,) = groups["whatsapp.evolution-operator.io"]["versions"]
    assert (version["version"], version["freshness"]) == ("v1alpha1", "Current")
    resources = {resource["resource"]: resource for resource in version["resources"]}
    assert set(resources) == {"whatsappinstances", "evolutionservers"}, "status is a subresource, not a resource"
    wai = resources["whatsappinstances"]
    group, version_name = API.split("/")
    assert wai["responseKind"] == {"group": group, "version": version_name, "kind": "WhatsAppInstance"}
    assert (wai["scope"], wai["singularResource"]) == ("Namespaced", "whatsappinstance")
    assert (wai["shortNames"], wai["categories"]) == (["wai"], ["whatsapp"])
    assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= set(wai["verbs"])
    assert wai["subresources"] == [
        {"subresource": "status", "responseKind": wai["responseKind"], "verbs": ["get", "patch", "update"]}
    ]
    assert (resources["evolutionservers"]["shortNames"], resources["evolutionservers"]["categories"]) == (
        ["evo"],
        ["whatsapp"],
    )
    crds = groups["apiextensions.k8s.io"]["versions"][0]["resources"][0]
    assert (crds["scope"], crds["responseKind"]["group"]) == ("Cluster", ""), "a built-in's kind names no group"

    _, api = await aggregated(kube, "/api")
    (core,) = api["items"]
    assert core["metadata"] == {}, "the core group has no name"
    (v1,) = core["versions"]
    namespaces = next(resource for resource in v1["resources"] if resource["resource"] == "namespaces")
    assert (namespaces["scope"], namespaces["shortNames"], namespaces["subresources"][0]["subresource"]) == (
        "Cluster",
        ["ns"],
        "status",
    )
    assert {"secrets", "configmaps", "events"} <= {resource["resource"] for resource in v1["resources"]}


async def test_aggregated_discovery_in_the_version_asked_for_and_legacy_for_plain_json(kube: EmulatedCluster) -> None:
    beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
    content_type, apis = await aggregated(kube, "/apis", beta)
    assert content_type == "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    assert apis["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    for accept in ("application/json", "application/json, */*", f"application/json,{AGGREGATED_V2}"):
        content_type, apis = await aggregated(kube, "/apis", accept)
        assert "apidiscovery" not in content_type, accept
        assert apis["kind"] == "APIGroupList"
        _, api = await aggregated(kube, "/api", accept)
        assert api["kind"] == "APIVersions"


async def test_create_fills_metadata_and_defaults_and_drops_status(kube: EmulatedCluster) -> None:
    created = await kube.create({**instance(), "status": {"phase": "Connected"}})
    meta = created["metadata"]
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) == kube.emulator.resource_version
    assert created["spec"] == {
        "driverId": "driver-1",
        "phoneNumber": "+5511987654321",
        "serverRef": {"name": "default"},
        "pairing": {"method": "pairingCode"},
        "notifications": {"onDisconnect": True},
        "suspend": False,
        "deletionPolicy": "Delete",
    }
    assert "status" not in created  # the status subresource owns it
    assert await kube.get("wai", "maria") == created


async def test_generate_name_makes_unique_names(kube: EmulatedCluster) -> None:
    manifest = instance()
    manifest["metadata"] = {"generateName": "driver-"}
    first, second = await kube.create(manifest), await kube.create(manifest)
    assert first["metadata"]["name"].startswith("driver-")
    assert len(first["metadata"]["name"]) == len("driver-") + 5
    assert first["metadata"]["name"] != second["metadata"]["name"]


async def test_duplicates_conflict_and_absentees_are_not_found(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    with pytest.raises(KubeApiError) as duplicate:
        await kube.create(instance())
    assert (duplicate.value.status, duplicate.value.reason) == (409, "AlreadyExists")
    with pytest.raises(KubeApiError) as absent:
        await kube.get("wai", "nobody")
    assert (absent.value.status, absent.value.reason) == (404, "NotFound")
    assert absent.value.message == 'whatsappinstances.whatsapp.evolution-operator.io "nobody" not found'
    status, body = await http(kube, "GET", f"/apis/{API}/namespaces/default/nonsense")
    assert (status, body["kind"]) == (404, "Status")


@pytest.mark.parametrize(
    ("manifest", "field", "message"),
    [
        (
            instance(phoneNumber="abc"),
            "spec.phoneNumber",
            'Invalid value: "abc": spec.phoneNumber in body should match',
        ),
        (instance(pairing={"method": "sms"}), "spec.pairing.method", 'Unsupported value: "sms"'),
        ({**instance(), "spec": {"phoneNumber": "+5511987654321"}}, "spec.driverId", "Required value"),
        (
            instance(suspend="yes"),
            "spec.suspend",
            'Invalid value: "string": spec.suspend in body must be of type boolean',
        ),
        (
            {**instance(), "metadata": {"name": "maria", "labels": {"driver": 'has "quotes"'}}},
            "metadata.labels[driver]",
            'Invalid value: "has \\"quotes\\"": a label value',
        ),
    ],
)
async def test_invalid_manifests_are_refused_naming_the_field(
    kube: EmulatedCluster, manifest: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(KubeApiError) as refused:
        await kube.create(manifest)
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    assert refused.value.message.startswith('WhatsAppInstance.whatsapp.evolution-operator.io "maria" is invalid: ')
    assert f"{field}: {message}" in refused.value.message
    assert field in {cause["field"] for cause in refused.value.causes}
    assert kube.emulator.read("wai", "maria") is None


async def test_a_negative_probe_interval_is_refused(kube: EmulatedCluster) -> None:
    server = {
        "apiVersion": API,
        "kind": "EvolutionServer",
        "metadata": {"name": "default"},
        "spec": {
            "url": "http://evo:8080",
            "apiKeySecretRef": {"name": "s", "key": "k"},
            "probe": {"intervalSeconds": -1},
        },
    }
    with pytest.raises(KubeApiError, match=r"spec\.probe\.intervalSeconds in body should be greater than or equal"):
        await kube.create(server)


async def test_stale_resource_versions_conflict(kube: EmulatedCluster) -> None:
    created = await kube.create(instance())
    updated = await kube.patch("wai", "maria", {"spec": {"driverName": "Maria"}})
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"suspend": True}}
    with pytest.raises(KubeApiError) as merge:
        await kube.patch("wai", "maria", stale)
    assert (merge.value.status, merge.value.reason) == (409, "Conflict")
    with pytest.raises(KubeApiError) as put:
        await kube.replace(created)
    assert (put.value.status, put.value.reason) == (409, "Conflict")
    unversioned = copy.deepcopy(updated)
    del unversioned["metadata"]["resourceVersion"]
    with pytest.raises(KubeApiError, match=r"metadata\.resourceVersion: Invalid value: 0x0: must be specified"):
        await kube.replace(unversioned)

    updated["spec"]["suspend"] = True
    replaced = await kube.replace(updated)
    assert replaced["spec"]["suspend"] is True
    assert replaced["metadata"]["generation"] == 3
    assert (await kube.get("wai", "maria"))["spec"]["suspend"] is True


async def test_json_patch_test_operations_guard_against_stale_versions(kube: EmulatedCluster) -> None:
    created = await kube.create(instance())
    version = created["metadata"]["resourceVersion"]
    guarded = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/cleanup"]},
    ]
    patched = await kube.patch("wai", "maria", guarded)
    assert patched["metadata"]["finalizers"] == ["example.com/cleanup"]
    with pytest.raises(KubeApiError) as stale:
        await kube.patch("wai", "maria", guarded)
    assert stale.value.status == 422  # kopf retries its finalizer patch on exactly this


async def test_status_subresource_separates_spec_and_status(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    through_status = await kube.patch(
        "wai", "maria", {"spec": {"suspend": True}, "status": {"phase": "Pairing"}}, subresource="status"
    )
    assert through_status["status"] == {"phase": "Pairing"}
    assert through_status["spec"]["suspend"] is False
    assert through_status["metadata"]["generation"] == 1

    through_object = await kube.patch("wai", "maria", {"spec": {"suspend": True}, "status": {"phase": "Connected"}})
    assert through_object["status"] == {"phase": "Pairing"}
    assert through_object["spec"]["suspend"] is True
    assert through_object["metadata"]["generation"] == 2

    labelled = await kube.patch("wai", "maria", {"metadata": {"labels": {"team": "ops"}}})
    assert labelled["metadata"]["generation"] == 2  # metadata is not spec


async def test_no_op_writes_change_nothing(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    first = await kube.patch("wai", "maria", {"status": {"phase": "Pairing"}}, subresource="status")
    version = kube.emulator.resource_version
    again = await kube.patch("wai", "maria", {"status": {"phase": "Pairing"}}, subresource="status")
    assert again == first
    assert kube.emulator.resource_version == version
    assert kube.emulator.writes("whatsappinstances", subresource="status") == 2


async def test_undeclared_fields_are_pruned_and_recorded(kube: EmulatedCluster) -> None:
    await kube.create(instance(nickname="Mari"))
    patched = await kube.patch(
        "wai",
        "maria",
        {"status": {"phase": "Connected", "lastSeenAlive": "now", "conditions": []}},
        subresource="status",
    )
    assert patched["status"] == {"phase": "Connected", "conditions": []}
    assert "nickname" not in patched["spec"]
    assert [str(field) for field in kube.emulator.pruned] == [
        "whatsappinstances default/maria: spec.nickname",
        "whatsappinstances default/maria: status.lastSeenAlive",
    ]
    assert kube.violations() == [], "kubectl's pruned fields (these verbs', a user's) are no violation"
    patch = json.dumps({"spec": {"colour": "blue"}})
    headers = {"Content-Type": "application/merge-patch+json", "User-Agent": OPERATOR_AGENT}
    status, _ = await http(kube, "PATCH", f"{INSTANCES}/maria", data=patch, headers=headers)
    assert status == 200
    assert kube.violations() == ["pruned whatsappinstances default/maria: spec.colour"], "the operator's are"
    kube.emulator.pruned.clear()


async def test_refused_writes_are_violations_from_the_operator_not_from_kubectl(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    patch = json.dumps({"spec": {"phoneNumber": "call me"}})
    for agent in (KUBECTL_AGENT, OPERATOR_AGENT):
        headers = {"Content-Type": "application/merge-patch+json", "User-Agent": agent}
        status, _ = await http(kube, "PATCH", f"{INSTANCES}/maria", data=patch, headers=headers)
        assert status == 422
    (violation,) = kube.violations()
    assert violation.startswith("patch whatsappinstances default/maria: spec.phoneNumber: Invalid value")
    kube.emulator.write_log.clear()


async def test_status_is_validated_too(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    ready = {"type": "Ready", "status": "True", "reason": "Open", "lastTransitionTime": "2024-05-01T12:00:00Z"}
    invalid = [
        ({"phase": "Dancing"}, 'status.phase: Unsupported value: "Dancing"'),
        ({"conditions": [ready, ready]}, "status.conditions[1]: Duplicate value"),
        ({"conditions": [{**ready, "lastTransitionTime": "noon"}]}, "must be of type date-time"),
        ({"statusReason": "401"}, "status.statusReason in body must be of type integer"),
    ]
    for status, message in invalid:
        with pytest.raises(KubeApiError, match=re.escape(message)):
            await kube.patch("wai", "maria", {"status": status}, subresource="status")


async def test_merge_patch_null_deletes_and_lists_replace(kube: EmulatedCluster) -> None:
    await kube.create(
        {**instance(), "metadata": {"name": "maria", "finalizers": ["a.example.com/x", "b.example.com/y"]}}
    )
    patched = await kube.patch(
        "wai", "maria", {"metadata": {"finalizers": ["b.example.com/y"]}, "spec": {"driverName": None}}
    )
    assert patched["metadata"]["finalizers"] == ["b.example.com/y"]
    assert "driverName" not in patched["spec"]
    await kube.patch("wai", "maria", {"metadata": {"finalizers": None}})


async def test_finalizers_hold_deletion_until_released(kube: EmulatedCluster) -> None:
    await kube.create({**instance(), "metadata": {"name": "maria", "finalizers": ["example.com/cleanup"]}})
    deleting = await kube.delete("wai", "maria")
    assert deleting["metadata"]["deletionTimestamp"]
    assert deleting["metadata"]["generation"] == 2
    assert kube.emulator.read("wai", "maria") is not None
    with pytest.raises(KubeApiError, match="no new finalizers can be added"):
        await kube.patch("wai", "maria", {"metadata": {"finalizers": ["example.com/cleanup", "example.com/more"]}})
    released = await kube.patch("wai", "maria", {"metadata": {"finalizers": []}})
    assert released["metadata"]["finalizers"] == []
    assert kube.emulator.read("wai", "maria") is None
    with pytest.raises(KubeApiError, match="not found"):
        await kube.delete("wai", "maria")


async def test_delete_without_finalizers_returns_the_object(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    deleted = await kube.delete("wai", "maria")
    assert deleted["metadata"]["name"] == "maria"
    assert await kube.list("wai") == []


async def test_watch_resumes_from_a_resource_version(kube: EmulatedCluster) -> None:
    await kube.create(instance("ana"))
    _, listing = await http(kube, "GET", INSTANCES)
    since = listing["metadata"]["resourceVersion"]
    assert [item["metadata"]["name"] for item in listing["items"]] == ["ana"]

    stream = asyncio.create_task(watch(kube, INSTANCES, 3, resourceVersion=since))
    await asyncio.sleep(0)
    await kube.create(instance("bia"))
    await kube.patch("wai", "bia", {"status": {"phase": "Pairing"}}, subresource="status")
    await kube.delete("wai", "ana")
    events = await stream
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "bia"),
        ("MODIFIED", "bia"),
        ("DELETED", "ana"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert versions[0] > int(since)


async def test_watch_from_scratch_lists_first(kube: EmulatedCluster) -> None:
    await kube.create(instance("ana"))
    events = await watch(kube, INSTANCES, 2, sendInitialEvents="true", resourceVersionMatch="NotOlderThan")
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_past_the_window_is_gone(kube: EmulatedCluster) -> None:
    kube.emulator.watch_window = 2
    first = await kube.create(instance("ana"))
    for phase in ("Pairing", "Connecting", "Connected", "Disconnected", "LoggedOut"):
        await kube.patch("wai", "ana", {"status": {"phase": phase}}, subresource="status")
    (event,) = await watch(kube, INSTANCES, 1, resourceVersion=first["metadata"]["resourceVersion"])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


async def test_watch_ends_after_its_timeout(kube: EmulatedCluster) -> None:
    async with (
        asyncio.timeout(5),
        kube._server.client.get(
            INSTANCES, params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "0.1"}
        ) as response,
    ):
        assert await response.read() == b""


async def test_lists_select_by_label_and_namespace(kube: EmulatedCluster) -> None:
    await kube.create({**instance("ana"), "metadata": {"name": "ana", "labels": {"fleet": "sp"}}})
    await kube.create({**instance("bia"), "metadata": {"name": "bia", "labels": {"fleet": "rj"}}})
    await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "drivers"}})
    await kube.create(instance("caio"), namespace="drivers")
    assert [o["metadata"]["name"] for o in await kube.list("wai", labels="fleet=sp")] == ["ana"]
    assert [o["metadata"]["name"] for o in await kube.list("wai", labels="fleet in (rj,sp),fleet!=sp")] == ["bia"]
    assert [o["metadata"]["name"] for o in await kube.list("wai", namespace="drivers")] == ["caio"]
    assert len(await kube.list("wai")) == 3
    assert {ns["metadata"]["name"] for ns in await kube.list("namespaces")} == {"default", "drivers"}


async def test_secrets_store_string_data_as_base64(kube: EmulatedCluster) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "evo"}, "stringData": {"apiKey": "s3cr3t"}}
    created = await kube.create(secret)
    assert created["data"] == {"apiKey": "czNjcjN0"}
    assert "stringData" not in created


async def test_writes_are_counted_per_resource_and_subresource(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    await kube.patch("wai", "maria", {"status": {"phase": "Pairing"}}, subresource="status")
    await kube.patch("wai", "maria", {"status": {"phase": "Connected"}}, subresource="status")
    await kube.patch("wai", "maria", {"spec": {"suspend": True}})
    emulator = kube.emulator
    assert emulator.writes("whatsappinstances") == 4
    assert emulator.writes("whatsappinstances", subresource="status") == 2
    assert emulator.writes("whatsappinstances", subresource=None, verb="patch") == 1
    assert emulator.writes("whatsappinstances", user_agent="kopf") == 0
    assert emulator.writes("evolutionservers") == 0


async def test_events_are_found_by_what_they_are_about(kube: EmulatedCluster) -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "maria-"},
        "involvedObject": {"apiVersion": API, "kind": "WhatsAppInstance", "name": "maria", "namespace": "default"},
        "type": "Warning",
        "reason": "LoggedOut",
        "message": "The session ended (401).",
    }
    await kube.create(event)
    (found,) = kube.emulator.events(name="maria", reason="LoggedOut")
    assert found["type"] == "Warning"
    assert kube.emulator.events(name="maria", reason="Connected") == []


async def test_injected_failures_store_nothing(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    kube.emulator["patch", kube.emulator.resource(API.split("/")[0], "v1alpha1", "whatsappinstances")] << 503
    with pytest.raises(KubeApiError) as failed:
        await kube.patch("wai", "maria", {"spec": {"suspend": True}})
    assert failed.value.status == 503
    assert (await kube.get("wai", "maria"))["spec"]["suspend"] is False  # served through kmock's matching


@pytest.fixture
async def cluster_without_crds() -> AsyncIterator[EmulatedCluster]:
    async with EmulatedCluster(crds=[]) as cluster:
        yield cluster


async def test_crds_are_served_and_read_only(kube: EmulatedCluster, cluster_without_crds: EmulatedCluster) -> None:
    names = {crd["metadata"]["name"] for crd in await kube.list("crd")}
    assert names == {
        "whatsappinstances.whatsapp.evolution-operator.io",
        "evolutionservers.whatsapp.evolution-operator.io",
    }
    with pytest.raises(KubeApiError) as refused:
        await kube.create(
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"}}
        )
    assert refused.value.status == 405
    with pytest.raises(LookupError):
        cluster_without_crds.emulator.resolve("wai")


async def test_an_object_needs_its_namespace_to_exist(kube: EmulatedCluster) -> None:
    with pytest.raises(KubeApiError) as refused:
        await kube.create(instance(), namespace="drivers")
    assert (refused.value.status, refused.value.message) == (404, 'namespaces "drivers" not found')
    assert {ns["metadata"]["name"] for ns in await kube.list("namespaces")} == {"default"}, "none made on the way"


async def test_a_dry_run_admits_and_answers_like_a_write_and_stores_nothing(kube: EmulatedCluster) -> None:
    await kube.create(instance())
    version, writes = kube.emulator.resource_version, len(kube.emulator.write_log)
    dry = {"dryRun": "All"}
    status, created = await http(
        kube, "POST", INSTANCES, params=dry, json=instance("bia", phoneNumber="(11) 98765-4321")
    )
    assert status == 201
    assert created["spec"]["phoneNumber"] == "(11) 98765-4321"
    assert created["spec"]["pairing"] == {"method": "pairingCode"}, "defaulted as for a real create"
    assert created["metadata"]["uid"]
    assert "resourceVersion" not in created["metadata"]
    merge = {"Content-Type": "application/merge-patch+json"}
    status, patched = await http(
        kube, "PATCH", f"{INSTANCES}/maria", params=dry, data='{"spec": {"suspend": true}}', headers=merge
    )
    assert (status, patched["spec"]["suspend"], patched["metadata"]["generation"]) == (200, True, 2)
    assert patched["metadata"]["resourceVersion"] == str(version), "the stored version, not a new one"
    current = await kube.get("wai", "maria")
    status, replaced = await http(
        kube, "PUT", f"{INSTANCES}/maria", params=dry, json={**current, "spec": {**current["spec"], "suspend": True}}
    )
    assert (status, replaced["spec"]["suspend"]) == (200, True)
    status, deleted = await http(kube, "DELETE", f"{INSTANCES}/maria", json={"dryRun": ["All"]})
    assert (status, deleted["metadata"]["name"]) == (200, "maria")
    status, refused = await http(kube, "POST", INSTANCES, params=dry, json=instance("caio", phoneNumber="call me"))
    assert (status, refused["reason"]) == (422, "Invalid"), "validated as for a real write"
    status, _ = await http(kube, "POST", INSTANCES.replace("default", "drivers"), params=dry, json=instance("caio"))
    assert status == 404, "no namespace is made either"
    assert kube.emulator.resource_version == version, "no write happened: no watch hears of any"
    assert await kube.get("wai", "maria") == current
    assert kube.emulator.read("wai", "bia") is None
    assert len(kube.emulator.write_log) == writes + 6, "each request is recorded, as the API server audits it"


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
async def test_a_dry_run_other_than_all_is_refused_as_the_api_server_does(kube: EmulatedCluster, method: str) -> None:
    created = await kube.create(instance())
    path = INSTANCES if method == "POST" else f"{INSTANCES}/maria"
    kind = {"POST": "CreateOptions", "PATCH": "PatchOptions", "PUT": "UpdateOptions", "DELETE": "DeleteOptions"}[method]
    body = {"POST": instance("bia"), "PATCH": {"spec": {"suspend": True}}, "PUT": created, "DELETE": None}[method]
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    status, refused = await http(
        kube, method, path, params=[("dryRun", "All"), ("dryRun", "Everything")], json=body, headers=headers
    )
    assert (status, refused["reason"]) == (422, "Invalid")
    assert refused["message"] == (
        f'{kind}.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{{"All", "Everything"}}:'
        ' supported values: "All"'
    )
    assert await kube.get("wai", "maria") == created


async def test_server_side_apply_is_refused_up_front_and_says_what_to_use(kube: EmulatedCluster) -> None:
    apply = {"Content-Type": "application/apply-patch+yaml"}
    status, refused = await http(kube, "PATCH", f"{INSTANCES}/new-one", data="{}", headers=apply)
    assert (status, refused["reason"]) == (415, "UnsupportedMediaType"), "not a misleading NotFound"
    assert "server-side apply" in refused["message"]
    assert "use client-side kubectl apply" in refused["message"]
    await kube.create(instance())
    strategic = {"Content-Type": "application/strategic-merge-patch+json"}
    status, refused = await http(kube, "PATCH", f"{INSTANCES}/maria", data="{}", headers=strategic)
    assert status == 415
    assert refused["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


@pytest.mark.parametrize("path", ["/foo", "/openapi/v2", "/apis/nothing.example.com"])
async def test_unknown_paths_get_the_api_servers_not_found(kube: EmulatedCluster, path: str) -> None:
    status, answer = await http(kube, "GET", path)
    assert status == 404
    assert answer == {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": 404,
        "reason": "NotFound",
        "message": "the server could not find the requested resource",
        "details": {},
    }


async def test_the_version_is_the_one_the_project_targets(kube: EmulatedCluster) -> None:
    status, version = await http(kube, "GET", "/version")
    assert status == 200
    assert (version["major"], version["minor"], version["gitVersion"]) == ("1", "32", "v1.32.0")
    _, document = await http(kube, "GET", f"/openapi/v3/apis/{API}")
    assert document["info"]["version"] == version["gitVersion"]


@pytest.mark.parametrize(
    ("validation", "warning"),
    [
        (None, '299 - "unknown field \\"spec.colour\\""'),
        ("Warn", '299 - "unknown field \\"spec.colour\\""'),
        ("Ignore", None),
    ],
)
async def test_an_unknown_field_is_dropped_with_a_warning_unless_ignored(
    kube: EmulatedCluster, validation: str | None, warning: str | None
) -> None:
    params = {"fieldValidation": validation} if validation else {}
    async with kube._server.client.post(INSTANCES, params=params, json=instance(colour="blue")) as response:
        assert response.status == 201
        assert response.headers.get("Warning") == warning
        assert "colour" not in (await response.json())["spec"]
    kube.emulator.pruned.clear()
