"""An in-process Kubernetes API server, strict where the operator's correctness depends on it.

kmock's KubernetesEmulator stores whatever it is sent. An operator tested against it can pass and
still fail on a cluster: a status field the CRD does not declare silently disappears there, a write
with a stale resourceVersion is refused, `/status` is the only way to change `.status`. This one
does on every write what a real API server does:

- resourceVersion from one cluster-wide counter, bumped by every write that changes something (a
  no-op write changes nothing and sends no watch event), 409 Conflict on a stale one (PUT, or
  `metadata.resourceVersion` in a merge patch), 422 when a JSON-patch `test` fails (kopf relies on
  that for its finalizers); uid, creationTimestamp, generation (+1 when anything but metadata and
  status changes), generateName, 409 AlreadyExists, 404 NotFound;
- the status subresource: writes to the object ignore `.status`, writes to `/status` change only
  `.status` and leave generation alone;
- custom resources are pruned (unknown fields dropped and recorded in `pruned`), defaulted and
  validated against their CRD's openAPIV3Schema (422 Invalid naming each field, like
  `spec.phoneNumber: Invalid value: ...`); labels, annotations and names as the API server checks
  them; Secrets fold `stringData` into base64 `data`;
- finalizers and deletionTimestamp; DELETE returns the object; list and watch with resourceVersion,
  sendInitialEvents, label and field selectors, timeoutSeconds, and 410 Gone past the watch window;
- discovery as the API server writes it (a subresource is an entry of its own, without the short
  names and categories of its resource), as kopf and kubectl read it; aggregated discovery
  (apidiscovery.k8s.io v2 or v2beta1, a subresource inside its resource) on `/api` and `/apis`
  when the Accept header asks for it first, as kubectl does, so it reads no per-group document;
- what kubectl asks for: Tables (`Accept: ...;as=Table;g=meta.k8s.io`) for get, list and watch, with
  the CRD's printer columns evaluated and typed like the API server's (ages for `date` columns,
  priority-1 columns for `-o wide`); `/openapi/v3` documents that say every kind takes
  `fieldValidation`, so kubectl validates on the server; `fieldValidation=Strict` refuses unknown
  fields (400, "strict decoding error: unknown field ...") where others are pruned, with the API
  server's `Warning: 299 - "unknown field ..."` header unless fieldValidation=Ignore; the built-in
  kinds' columns computed as the API server's Go printers compute them (`printing.Column.compute`);
- dry runs (`dryRun=All`, in the query or a DELETE's body): admitted and answered like the write,
  stored nowhere, no resourceVersion spent, no watch event; any other value is the API server's 422;
- an object in a namespace that does not exist is a 404 (`namespaces "x" not found`), as the
  NamespaceLifecycle admission answers; `/version` says 1.32.0 (openapi.KUBERNETES_VERSION); a path
  nothing serves is the API server's 404 Status, not kmock's hint.

Every write request is recorded (`writes()`, `write_log`) so that tests can count PATCHes, and every
request as RBAC's authorizer sees it (`audit_log`: verb, group, resource, subresource, namespace,
name, user) so that tests can check the operator's RBAC. With `tokens` (bearer token to user, like
a static token file) a request without a known token is a 401; without, anyone may ask anything.
Only `default` exists at first: a namespace is created like any other object.
Served besides the CRDs: Namespaces, Secrets, ConfigMaps, Events (core and events.k8s.io), kopf's
peerings (kopf.dev, schema-less) and the CRDs themselves (read-only: use `register_crd()`).
Not emulated: server-side apply (a 415 that says to apply client-side) and strategic merge on
custom resources (415, as on a real server), garbage collection of owned objects, admission
webhooks, authentication other than bearer tokens, RBAC itself (tests check the audit log against
the rules), `/openapi/v2` (kubectl falls back from it).

Test and demo tooling: nothing in the operator imports this package.
"""

from whatsapp_operator.devkit.kube_emulator.audit import Access
from whatsapp_operator.devkit.kube_emulator.cluster import EmulatedCluster, KubeApiError
from whatsapp_operator.devkit.kube_emulator.resources import PrunedField, ResourceType, Write
from whatsapp_operator.devkit.kube_emulator.schema import Cause, Schema, structural_errors
from whatsapp_operator.devkit.kube_emulator.server import StrictKubernetesEmulator

__all__ = [
    "Access",
    "Cause",
    "EmulatedCluster",
    "KubeApiError",
    "PrunedField",
    "ResourceType",
    "Schema",
    "StrictKubernetesEmulator",
    "Write",
    "structural_errors",
]
