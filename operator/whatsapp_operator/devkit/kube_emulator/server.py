"""The strict emulator: kmock's scaffold with the API server's semantics on every request.

It holds what is served (discovery), answers HTTP (authentication, the audit and write logs, Warning
headers), and hands the verbs on objects to `handlers`, which write through `store`.
"""


from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from types import EllipsisType
from typing import Any

import aiohttp.web
import attrs
import kmock

from whatsapp_operator.devkit.kube_emulator import discovery, openapi
from whatsapp_operator.devkit.kube_emulator.audit import ANONYMOUS, Access, bearer_token, request_attributes
from whatsapp_operator.devkit.kube_emulator.handlers import Handlers
from whatsapp_operator.devkit.kube_emulator.request import WARNINGS, header
from whatsapp_operator.devkit.kube_emulator.resources import (
    BUILTINS,
    CRDS,
    NAMESPACES,
    WRITE_VERBS,
    PrunedField,
    ResourceType,
    Write,
)
from whatsapp_operator.devkit.kube_emulator.schema import NAMESPACE_PATH, Body, api_error, status_body
from whatsapp_operator.devkit.kube_emulator.store import ObjectStore


def _resize_watch_window(emulator: StrictKubernetesEmulator, _: attrs.Attribute[int], window: int) -> int:
    emulator._store.watch_window = window
    return window


@attrs.define(kw_only=True)
class StrictKubernetesEmulator(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold (discovery, errors, its DSL) with an API server's write semantics.

    The state changes where the response is made, not before kmock's matching (as its own emulator
    does), so a reaction a test injects (`emulator["patch", resource] << 503`) fails the write the way
    a broken API server would: nothing is stored.
    """

    # Changes kept per resource for watches resuming from a resourceVersion; settable while serving.
    watch_window: int = attrs.field(default=10_000, on_setattr=_resize_watch_window)

    # Bearer tokens and their users, as a static token file: when any is given, a request without one
    # of them is a 401 (kopf and the operator's client log in again). None given: no authentication.
    tokens: dict[str, str] = attrs.field(factory=dict)

    write_log: list[Write] = attrs.field(factory=list, init=False)
    audit_log: list[Access] = attrs.field(factory=list, init=False)  # every request, as RBAC sees it

    _types: dict[kmock.resource, ResourceType] = attrs.field(factory=dict, init=False)
    _store: ObjectStore = attrs.field(init=False)
    _handlers: Handlers = attrs.field(init=False)
    _written: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _own_reactions: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._store = ObjectStore(self.watch_window)
        self._handlers = Handlers(self._types, self._store)
        for criterion, serve in self._routes().items():
            if criterion == kmock.action.CREATE:
                self.fallback[criterion] << 201 << serve
            else:
                self.fallback[criterion] << serve
        self._own_reactions = len(self._payloads)
        for rtype in BUILTINS:
            self.register(rtype)
        self._store.create(NAMESPACES, None, {"metadata": {"name": "default"}, "spec": {"finalizers": ["kubernetes"]}})

    def _routes(self) -> dict[kmock.action | kmock.method, Callable[[kmock.Request], Awaitable[Any]]]:
        return {
            kmock.action.LIST: self._handlers.list,
            kmock.action.WATCH: self._handlers.watch,
            kmock.action.FETCH: self._handlers.fetch,
            kmock.action.CREATE: self._handlers.create,
            kmock.action.UPDATE: self._handlers.patch,
            kmock.action.DELETE: self._handlers.delete,
            kmock.method.PUT: self._handlers.replace,
        }

    # -- what is served ------------------------------------------------------------------------

    def register(self, rtype: ResourceType) -> None:
        self._types[rtype.ref] = rtype
        self.resources[rtype.ref] = kmock.ResourceInfo(
            kind=rtype.kind,
            singular=rtype.singular,
            namespaced=rtype.namespaced,
            verbs=rtype.verbs,
            shortnames=rtype.shortnames,
            categories=rtype.categories,
            subresources={"status"} if rtype.status_subresource else set(),
        )

    def register_crd(self, crd: Mapping[str, Any]) -> None:
        """Serve a CustomResourceDefinition's versions, refusing it as the API server would."""
        for rtype in discovery.crd_types(crd):
            self.register(rtype)
        self._store.create(CRDS, None, discovery.established(crd))

    def resolve(self, name: str) -> ResourceType:
        """A resource as kubectl finds it: by plural, singular, short name or kind (any case)."""
        return discovery.resolve(self._types.values(), name)

    def lookup(self, api_version: str, kind: str) -> ResourceType:
        return discovery.lookup(self._types.values(), api_version, kind)

    async def _serve_version(self, request: kmock.Request) -> Body:
        assert request.resource is not None
        return discovery.resource_list(self._types.values(), request.resource.group, request.resource.version)

    async def _serve_api(self, request: kmock.Request) -> kmock.Response:
        return self._discovery(request, await super()._serve_api(request), core=True)

    async def _serve_apis(self, request: kmock.Request) -> kmock.Response:
        return self._discovery(request, await super()._serve_apis(request), core=False)

    def _discovery(self, request: kmock.Request, legacy: kmock.Payload, *, core: bool) -> kmock.Response:
        """Aggregated discovery where the Accept header asks for it first (kubectl 1.26+ does), with
        the media type that tells the client what it got; else the legacy document. Both name their
        Content-Type: kmock keeps a returned Response's headers on its reaction for the next request."""
        version = discovery.aggregated_version(header(request, "Accept") or "")
        if version is None:
            return kmock.Response(payload=legacy, headers={"Content-Type": "application/json; charset=utf-8"})
        media = f"application/json;g={discovery.AGGREGATED_GROUP};v={version};as=APIGroupDiscoveryList"
        body = discovery.aggregated_discovery(self._types.values(), core=core, version=version)
        return kmock.Response(payload=body, headers={"Content-Type": media})

    async def _serve_server_version(self, request: kmock.Request) -> Body:
        return dict(openapi.KUBERNETES_VERSION)

    # -- what tests assert on --------------------------------------------------------------------

    @property
    def objects(self) -> kmock.ObjectsArray:
        """Every object and its versions (kmock's array: `objects[resource, namespace, name].history`)."""
        return self._store.objects

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    @property
    def pruned(self) -> list[PrunedField]:
        """The fields clients wrote that a schema does not declare (a test clears them once checked)."""
        return self._store.pruned

    def read(self, resource: str, name: str, namespace: str | None = "default") -> Body | None:
        """The object as stored now (a copy), or None; no request is made or counted."""
        rtype = self.resolve(resource)
        return self._store.current((rtype.ref, namespace if rtype.namespaced else None, name))

    async def next_change(self) -> None:
        """Return after the next write that changes anything (no-op writes do not count)."""
        await self._store.next_change()

    async def next_write(self) -> None:
        """Return after the next write request is answered, refused or not."""
        await self._written.wait()

    def writes(
        self,
        resource: str | None = None,
        *,
        subresource: str | EllipsisType | None = ...,
        verb: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        user_agent: str | None = None,
    ) -> int:
        """How many write requests match; `subresource=None` means the object itself, `...` any."""
        plural = self.resolve(resource).plural if resource is not None else None
        return sum(
            1
            for write in self.write_log
            if (plural is None or write.plural == plural)
            and (subresource is ... or write.subresource == subresource)
            and (verb is None or write.verb == verb)
            and (namespace is None or write.namespace == namespace)
            and (name is None or write.name == name)
            and (user_agent is None or write.user_agent.startswith(user_agent))
        )

    def events(
        self,
        *,
        name: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        reason: str | None = None,
        type: str | None = None,
    ) -> list[Body]:
        """Kubernetes Events of both APIs (core v1 and events.k8s.io), oldest first, by what they are about."""
        found: list[tuple[int, Body]] = []
        for rtype in self._types.values():
            if rtype.kind != "Event":
                continue
            for key, obj in self._store.objects.items():
                if key[0] != rtype.ref or obj.deleted:
                    continue
                event = copy.deepcopy(obj.raw)
                about = event.get("involvedObject") or event.get("regarding") or {}
                if (
                    (name is None or about.get("name") == name)
                    and (kind is None or about.get("kind") == kind)
                    and (namespace is None or event["metadata"].get("namespace") == namespace)
                    and (reason is None or event.get("reason") == reason)
                    and (type is None or event.get("type") == type)
                ):
                    found.append((int(event["metadata"]["resourceVersion"]), event))
        return [event for _, event in sorted(found, key=lambda pair: pair[0])]

    # -- HTTP ------------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        access = request_attributes(raw_request.method, raw_request.path, raw_request.query)
        user = self._authenticate(raw_request.headers.get("Authorization"))
        self.audit_log.append(
            dataclasses.replace(access, user=user, user_agent=raw_request.headers.get("User-Agent", ""))
        )
        if user is None:
            return aiohttp.web.json_response(status_body(api_error(401, "Unauthorized", "Unauthorized")), status=401)
        return await self._dispatch(raw_request)

    def _authenticate(self, authorization: str | None) -> str | None:
        if not self.tokens:
            return ANONYMOUS
        return self.tokens.get(bearer_token(authorization) or "")

    async def _dispatch(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "GET" and raw_request.path.startswith("/openapi/v3"):
            return self._serve_openapi(raw_request.path.removeprefix("/openapi/v3").strip("/"))
        match = NAMESPACE_PATH.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        method = kmock.method(raw_request.method)
        watching = method == kmock.method.GET and raw_request.query.get("watch") in ("true", "1")
        action = (
            kmock.action.WATCH
            if watching
            else {
                (kmock.method.GET, False): kmock.action.LIST,
                (kmock.method.POST, False): kmock.action.CREATE,
                (kmock.method.GET, True): kmock.action.FETCH,
                (kmock.method.PATCH, True): kmock.action.UPDATE,
                (kmock.method.DELETE, True): kmock.action.DELETE,
            }.get((method, match["name"] is not None))
        )
        request = kmock.Request(
            id=len(self._requests),
            method=method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            text=body.decode(errors="replace"),
            data=data,
            action=action,
            resource=NAMESPACES.ref,
            name=match["name"],
            subresource=match["subresource"],
            raw_request=raw_request,
        )
        self._requests.append(request)  # kmock matches reactions against its log of requests
        return await self._handle(request)

    def _serve_openapi(self, key: str) -> aiohttp.web.Response:
        docs = openapi.documents(self._types.values())
        if not key:
            return aiohttp.web.json_response(openapi.root(docs))
        if key not in docs:
            return aiohttp.web.json_response(status_body(api_error(404, "NotFound", "404 page not found")), status=404)
        return aiohttp.web.json_response(docs[key])

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        refused: tuple[str, ...] = ()
        try:
            response = await self._serve(request)
        except kmock.KubernetesError as error:
            if isinstance(error, kmock.KubernetesNotFoundError):
                # kmock's own 404 (a path nothing serves, `/openapi/v2` included) tells a test how to
                # declare the endpoint; a client gets the API server's.
                error = api_error(404, "NotFound", "the server could not find the requested resource")
            response = aiohttp.web.json_response(status_body(error), status=error.status)
            refused = tuple(f"{c['field']}: {c['message']}" for c in (error.details or {}).get("causes", ()))
        verb = WRITE_VERBS.get(request.method) if request.resource is not None else None
        if verb is not None and request.resource.plural:
            self.write_log.append(
                Write(
                    verb=verb,
                    group=request.resource.group or "",
                    plural=request.resource.plural,
                    subresource=request.subresource,
                    namespace=request.namespace,
                    name=request.name,
                    status=response.status,
                    user_agent=header(request, "User-Agent") or "",
                    refused=refused,
                )
            )
            self._written.set()
            self._written = asyncio.Event()
        return response

    async def _serve(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """Serve object requests directly unless a test injected reactions: kmock matches a request
        against its whole request log, which makes a long run quadratic. Discovery and injected
        reactions (`emulator[...] << 503`) go through kmock; only those stay in its request log."""
        serve = None
        if request.resource is not None and request.resource.plural and len(self._payloads) == self._own_reactions:
            serve = self._routes().get(kmock.method.PUT if request.method == kmock.method.PUT else request.action)
        if serve is None:
            return await super()._handle(request)
        self._requests.remove(request)
        status = 201 if request.action == kmock.action.CREATE else None
        # A watch is a stream of JSON documents, and kubectl decodes it only when it says so.
        headers = {"Content-Type": "application/json"} if request.action == kmock.action.WATCH else {}
        warnings: list[str] = []
        served = WARNINGS.set(warnings)
        try:
            payload = await serve(request)
        finally:
            WARNINGS.reset(served)
        if warnings:  # one header of comma-separated values, which client-go reads as several
            headers["Warning"] = ", ".join(f"299 - {json.dumps(warning)}" for warning in warnings)
        return await kmock.Response(status=status, payload=payload, headers=headers)(request)
