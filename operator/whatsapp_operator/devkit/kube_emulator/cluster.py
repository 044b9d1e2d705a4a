"""The emulator serving on loopback with the project's CRDs, and kubectl's verbs as a client."""


from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import kmock
import kopf

from whatsapp_operator.devkit.crds import load_crds
from whatsapp_operator.devkit.kube_emulator.schema import JSON_PATCH, MERGE_PATCH, Body
from whatsapp_operator.devkit.kube_emulator.server import StrictKubernetesEmulator

ADMIN, ADMIN_TOKEN = "kubernetes-admin", "token-of-the-emulated-clusters-verbs"
# Every kubectl's User-Agent starts so: a user's ("kubectl/v1.32.4 (linux/amd64) ...") and these verbs'.
KUBECTL = "kubectl/"
USER_AGENT = f"{KUBECTL}emulated"  # these verbs', to tell their requests from the operator's


class KubeApiError(Exception):
    """A request the API server refused; `reason` is the Status reason (NotFound, Conflict, Invalid...)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body: Body = body if isinstance(body, dict) else {}
        self.reason: str = self.body.get("reason", "")
        self.message: str = self.body.get("message", str(body))
        super().__init__(f"{status} {self.reason}: {self.message}")

    @property
    def causes(self) -> list[Body]:
        return list(self.body.get("details", {}).get("causes", []))


class EmulatedCluster:
    """The strict emulator serving on loopback with the project's CRDs, and kubectl's verbs over HTTP.

    ``async with EmulatedCluster() as cluster:`` then point kopf at it with
    ``cluster.operator(registry=...)`` (which adds a login handler to the registry) or anything else at
    ``cluster.url``.
    """

    def __init__(
        self,
        crds: Iterable[Mapping[str, Any]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        """`tokens` (bearer token to user): the API server requires one of them; the verbs below
        send one of their own (ADMIN_TOKEN)."""
        # strict: an emulator crash (not a 4xx it meant to send) fails the block it runs in.
        self.emulator = StrictKubernetesEmulator(strict=True, tokens={ADMIN_TOKEN: ADMIN, **tokens} if tokens else {})
        self._auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if tokens else {}
        for crd in load_crds() if crds is None else crds:
            self.emulator.register_crd(crd)
        self._server = kmock.Server(self.emulator, host=host, port=port, user_agent=USER_AGENT)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        await self._stack.enter_async_context(self.emulator)
        await self._stack.enter_async_context(self._server)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def url(self) -> str:
        return str(self._server.url).rstrip("/")

    def connection_info(self) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=self.url, default_namespace="default")

    def violations(self) -> list[str]:
        """What a real API server would have silently dropped or refused as invalid from the
        operator: anyone but kubectl, these verbs' and a user's (a failed JSON-patch `test` is not
        invalid: kopf retries on it). Tests and the demo's errors assert it is empty."""
        refused = [
            f"{w.verb} {w.plural}{'/' + w.subresource if w.subresource else ''} {w.namespace}/{w.name}: {cause}"
            for w in self.emulator.write_log
            if not w.user_agent.startswith(KUBECTL)
            for cause in w.refused
        ]
        pruned = [f"pruned {field}" for field in self.emulator.pruned if not field.user_agent.startswith(KUBECTL)]
        return pruned + refused

    @contextlib.asynccontextmanager
    async def operator(
        self,
        *,
        registry: kopf.OperatorRegistry,
        settings: kopf.OperatorSettings | None = None,
        namespaces: Collection[str] = (),
        standalone: bool = True,
        **kwargs: Any,
    ) -> AsyncIterator[asyncio.Task[None]]:
        """Run `kopf.operator()` against this cluster in a task of the caller's loop, for the block.

        Cluster-wide unless `namespaces` are given; other keyword arguments (memo, indexers,
        peering_name...) go to `kopf.operator()`. Enters once kopf is ready; an operator that dies
        before that raises here. Leaving stops it gracefully.
        """
        ready, stop = asyncio.Event(), asyncio.Event()

        # kopf's public way to credentials: a login handler (its vault type is private).
        @kopf.on.login(registry=registry, id="emulated-cluster")
        def login(**_: Any) -> kopf.ConnectionInfo:
            return self.connection_info()

        operator = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=settings if settings is not None else kopf.OperatorSettings(),
                standalone=standalone,
                clusterwide=not namespaces,
                namespaces=namespaces,
                ready_flag=ready,
                stop_flag=stop,
                **kwargs,
            ),
            name="kopf operator on the emulated cluster",
        )
        readiness = asyncio.create_task(ready.wait())
        try:
            await asyncio.wait([operator, readiness], return_when=asyncio.FIRST_COMPLETED)
            if operator.done():
                await operator  # raises why it stopped, if it did raise
                raise RuntimeError("the operator stopped before it was ready")
            yield operator
        finally:
            readiness.cancel()
            stop.set()
            await operator

    async def create(self, manifest: Mapping[str, Any], *, namespace: str = "default") -> Body:
        rtype = self.emulator.lookup(manifest["apiVersion"], manifest["kind"])
        namespace = (manifest.get("metadata") or {}).get("namespace") or namespace
        return await self._request("POST", rtype.path(namespace), json=manifest)

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Body:
        return await self._request("GET", self.emulator.resolve(resource).path(namespace, name))

    async def list(self, resource: str, *, namespace: str | None = None, labels: str | None = None) -> list[Body]:
        params = {"labelSelector": labels} if labels else {}
        listing = await self._request("GET", self.emulator.resolve(resource).path(namespace), params=params)
        return list(listing["items"])

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Mapping[str, Any] | list[Mapping[str, Any]],
        *,
        namespace: str = "default",
        subresource: str | None = None,
    ) -> Body:
        """A JSON merge patch (a dict) or a JSON patch (a list of operations)."""
        content_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        path = self.emulator.resolve(resource).path(namespace, name, subresource)
        return await self._request("PATCH", path, data=json.dumps(patch), headers={"Content-Type": content_type})

    async def replace(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> Body:
        """PUT the whole object; its metadata.resourceVersion is the precondition."""
        rtype = self.emulator.lookup(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return await self._request("PUT", rtype.path(meta.get("namespace"), meta["name"], subresource), json=obj)

    async def delete(self, resource: str, name: str, *, namespace: str = "default") -> Body:
        return await self._request("DELETE", self.emulator.resolve(resource).path(namespace, name))

    async def wait_for(
        self,
        resource: str,
        name: str,
        predicate: Callable[[Body | None], bool],
        *,
        namespace: str = "default",
    ) -> Body | None:
        """The object once `predicate` holds for it (None: absent), woken by writes, not polling.

        It waits as long as it takes: bound it with `asyncio.timeout()`.
        """
        while not predicate(obj := self.emulator.read(resource, name, namespace)):
            await self.emulator.next_change()
        return obj

    async def _request(self, method: str, path: str, **kwargs: Any) -> Body:
        kwargs["headers"] = self._auth | kwargs.get("headers", {})
        async with self._server.client.request(method, path, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise KubeApiError(response.status, body)
            return dict(body)
