"""The few Kubernetes API calls the operator makes outside kopf's handlers: reading Secrets,
merge-patching the status of objects that the probers own, and Events whose fate matters.

Credentials come from `login()`, kopf's login handler: the official `kubernetes` client's (an
in-cluster ServiceAccount, or a kubeconfig with whatever it holds), or an explicit server. kopf and
this client use the same ConnectionInfo, so the operator authenticates exactly one way.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import kopf

from whatsapp_operator import GROUP, VERSION

logger = logging.getLogger(__name__)
# Who Events say wrote them (kubectl describe's From column), and the User-Agent of our requests.
COMPONENT = "whatsapp-operator"
Login = Callable[[], Awaitable[kopf.ConnectionInfo]]


async def login(server: str | None, **kwargs: Any) -> kopf.ConnectionInfo:
    """`server` given (the demo, tests): that URL, without credentials or TLS checks. Else the
    official client's login through kopf (`kwargs`: the login handler's): the in-cluster
    ServiceAccount, or the kubeconfig ($KUBECONFIG, ~/.kube/config; its current context) with
    tokens, client certificates, exec credential plugins or OIDC. Raises kopf.LoginError."""
    if server:
        return kopf.ConnectionInfo(server=server, insecure=True)
    # The client reads files and runs exec plugins (subprocesses): not on the event loop.
    info = await asyncio.to_thread(kopf.login_via_client, **kwargs)
    if info is None:
        raise kopf.LoginError("the kubernetes client library is not installed")
    return info


def _transport(info: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    """What the connections depend on: all but the credentials sent in headers."""
    return dataclasses.replace(info, scheme=None, token=None, username=None, password=None, expiration=None)


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class SecretMissing(KubeError):
    """The referenced Secret or key does not exist, or its value is not text."""


class KubeApi:
    """The operator's own client, on the credentials of kopf's login (`use`). A 401 logs in again
    once (a token rotated or expired before kopf noticed) and repeats the request."""

    def __init__(self) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._login: Login | None = None
        self._headers: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._logging_in = asyncio.Lock()

    async def use(self, info: kopf.ConnectionInfo, login: Login | None = None) -> None:
        """Called from the login handler, also when kopf logs in again; `login` makes new credentials
        on a 401. New credentials keep the connections unless the server or TLS material changed."""
        if login is not None:
            self._login = login
        if self._info is None or _transport(info) != _transport(self._info):
            await self.close()
        self._info = info
        self._headers = {"Accept": "application/json", "User-Agent": COMPONENT} | info.as_http_headers()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._info is None:
            raise KubeError("not logged in to the Kubernetes API yet")
        if self._session is None or self._session.closed:
            info = self._info
            self._session = aiohttp.ClientSession(
                base_url=info.server.rstrip("/") + "/",
                # kopf's own TLS: CA and client certificate from paths or data, or no checks if insecure.
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=20),
                proxy=info.proxy_url,
                trust_env=info.trust_env,
                timeout=aiohttp.ClientTimeout(total=30, connect=5),
            )
        return self._session

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        info = self._info
        try:
            return await self._send(method, path, **kwargs)
        except KubeError as exc:
            if exc.status != 401 or self._login is None:
                raise
        await self._login_again(info)
        return await self._send(method, path, **kwargs)

    async def _login_again(self, refused: kopf.ConnectionInfo | None) -> None:
        assert self._login is not None
        async with self._logging_in:
            if self._info is not refused:  # another request logged in again meanwhile
                return
            try:
                info = await self._login()
            except kopf.LoginError as exc:
                message = f"the API server refused the credentials, and logging in again failed: {exc}"
                raise KubeError(message, 401) from exc
            await self.use(info)

    async def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        session = self._ensure_session()
        headers = self._headers | kwargs.pop("headers", {})
        try:
            async with session.request(method, path.lstrip("/"), headers=headers, **kwargs) as response:
                if response.status >= 400:
                    text = await response.text()
                    raise KubeError(f"{method} {path}: HTTP {response.status}: {text[:300]}", response.status)
                result: dict[str, Any] = await response.json(content_type=None)
                return result
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(f"{method} {path}: {type(exc).__name__}") from exc

    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        return (await self.read_secret_keys(namespace, name, (key,), required=key))[key]

    async def read_secret_keys(
        self, namespace: str, name: str, keys: Iterable[str], *, required: str | None = None
    ) -> dict[str, str]:
        """Those of `keys` the Secret has, decoded, without surrounding whitespace (a file's last
        newline); SecretMissing if it lacks `required`."""
        try:
            secret = await self._request("GET", f"api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeError as exc:
            if exc.status == 404:
                raise SecretMissing(f"Secret {namespace}/{name} does not exist", 404) from exc
            raise
        data = secret.get("data") or {}
        if required is not None and required not in data:
            raise SecretMissing(f"Secret {namespace}/{name} has no key {required!r}", 404)
        try:
            return {key: base64.b64decode(data[key]).decode().strip() for key in keys if key in data}
        except ValueError:  # not base64, or not UTF-8
            raise SecretMissing(f"Secret {namespace}/{name} holds a value that is not text", 404) from None

    async def read_configmap(self, namespace: str, name: str) -> dict[str, str]:
        configmap = await self._request("GET", f"api/v1/namespaces/{namespace}/configmaps/{name}")
        return dict(configmap.get("data") or {})

    async def create_event(
        self, involved: dict[str, Any], *, type: str, reason: str, message: str, name: str | None = None
    ) -> None:
        """POST one core v1 Event about `involved` (an object reference). Unlike kopf's posting, the
        caller learns whether it was stored, and kopf's context is not needed; `name` makes a
        repeated POST a 409 instead of a second Event."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = involved["namespace"]
        metadata = {"name": name} if name else {"generateName": f"{involved['name']}."}
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": metadata | {"namespace": namespace},
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request("POST", f"api/v1/namespaces/{namespace}/events", json=event)

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._request(
            "PATCH",
            f"apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
