"""The emulator's audit log reads a request as the API server's RBAC authorizer does."""

from __future__ import annotations

import pytest

from whatsapp_operator.devkit.kube_emulator.audit import Access, request_attributes

G = "whatsapp.evolution-operator.io"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", f"/apis/{G}/v1alpha1/whatsappinstances", {}, Access("list", G, "whatsappinstances")),
        (
            "GET",
            f"/apis/{G}/v1alpha1/whatsappinstances",
            {"watch": "true", "resourceVersion": "5"},
            Access("watch", G, "whatsappinstances"),
        ),
        ("GET", f"/apis/{G}/v1alpha1/watch/whatsappinstances", {}, Access("watch", G, "whatsappinstances")),
        (
            "GET",
            "/api/v1/namespaces/drivers/secrets",
            {"fieldSelector": "metadata.name=evolution"},
            Access("list", "", "secrets", namespace="drivers", name="evolution"),
        ),
        (
            "PATCH",
            f"/apis/{G}/v1alpha1/namespaces/drivers/whatsappinstances/ana/status",
            {},
            Access("patch", G, "whatsappinstances", "status", "drivers", "ana"),
        ),
        ("POST", "/api/v1/namespaces/drivers/events", {}, Access("create", "", "events", namespace="drivers")),
        (
            "DELETE",
            "/api/v1/namespaces/drivers/events",
            {},
            Access("deletecollection", "", "events", namespace="drivers"),
        ),
        (
            "PUT",
            "/api/v1/namespaces/drivers/finalize",
            {},
            Access("update", "", "namespaces", "finalize", "drivers", "drivers"),
        ),
        ("GET", "/api/v1/namespaces/drivers", {}, Access("get", "", "namespaces", namespace="drivers", name="drivers")),
        (
            "PATCH",
            "/apis/kopf.dev/v1/clusterkopfpeerings/op",
            {},
            Access("patch", "kopf.dev", "clusterkopfpeerings", name="op"),
        ),
    ],
)
def test_a_resource_request_becomes_the_authorizers_attributes(
    method: str, path: str, query: dict[str, str], expected: Access
) -> None:
    got = request_attributes(method, path, query)
    assert (got.verb, got.group, got.resource, got.subresource, got.namespace, got.name) == (
        expected.verb,
        expected.group,
        expected.resource,
        expected.subresource,
        expected.namespace,
        expected.name,
    )


@pytest.mark.parametrize(
    "path", ["/api", "/api/v1", "/apis", f"/apis/{G}", f"/apis/{G}/v1alpha1", "/version", "/openapi/v3"]
)
def test_discovery_is_a_non_resource_request(path: str) -> None:
    got = request_attributes("GET", path, {})
    assert (got.resource, got.verb, got.path) == (None, "get", path)
