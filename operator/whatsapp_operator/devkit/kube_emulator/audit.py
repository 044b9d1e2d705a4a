"""Who asked for what: every request as the API server's authorizer sees it, and bearer tokens.

`request_attributes()` is the API server's RequestInfoFactory (k8s.io/apiserver, requestinfo.go): the
HTTP method, path and query become a verb (get, list, watch, create, update, patch, delete,
deletecollection), an API group, a resource, a subresource, a namespace and a name, which is all
that RBAC decides on. Paths outside `/api` and `/apis` (discovery's roots, `/version`, `/openapi`)
are non-resource requests, kept with their path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_SPECIAL_VERBS = {"proxy", "watch"}  # /apis/g/v/watch/...: the deprecated watch paths
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
ANONYMOUS = "system:anonymous"  # who a request is from while the emulator requires no token
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool, which decodes `watch`


@dataclasses.dataclass(frozen=True)
class Access:
    """One request as RBAC sees it. `resource` is None for a non-resource request (then `path` says
    what was asked)."""

    verb: str
    group: str = ""
    resource: str | None = None
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    user: str | None = ANONYMOUS  # None: refused, 401 (no valid token while tokens are required)
    user_agent: str = ""

    @property
    def qualified(self) -> str:
        """`resource/subresource`, as RBAC rules name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else str(self.resource)

    def __str__(self) -> str:
        if self.resource is None:
            return f"{self.verb} {self.path}"
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.qualified}.{self.group or 'core'}{where}"


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Access:
    """The authorizer's attributes of one request, as the API server derives them."""
    verb = method.lower()
    parts = [part for part in path.strip("/").split("/") if part]
    if not parts or parts[0] not in ("api", "apis"):
        return Access(verb=verb, path=path)
    grouped = parts[0] == "apis"
    parts = parts[1:]
    if len(parts) < (3 if grouped else 2):  # /apis/{group}/{version} and /api/{version} are discovery
        return Access(verb=verb, path=path)
    group = parts.pop(0) if grouped else ""
    parts = parts[1:]  # the version: RBAC does not look at it
    special = parts[0] in _SPECIAL_VERBS and len(parts) > 1
    verb = parts.pop(0) if special else _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) > 1 else ""
    subresource = parts[2] if len(parts) > 2 else ""
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "") in _TRUE else "list"
        name = _selected_name(query.get("fieldSelector", ""))
    elif not name and verb == "delete":
        verb = "deletecollection"
    return Access(
        verb=verb, group=group, resource=resource, subresource=subresource, namespace=namespace, name=name, path=path
    )


def _selected_name(selector: str) -> str:
    """The name a `metadata.name=NAME` (or `==`) field selector pins a list or watch to."""
    for term in selector.split(","):
        key, sep, value = term.partition("=")
        if sep and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.removeprefix("=").strip()
    return ""


def bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
