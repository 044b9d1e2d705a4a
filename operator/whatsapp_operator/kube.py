"""The few Kubernetes API calls the operator makes outside kopf's handlers: reading Secrets,
merge-patching the status of objects that the probers own, and Events whose fate matters.

Credentials come from kopf's own login (service account, kubeconfig, or an explicit server), so
the operator authenticates exactly one way.
"""

from __future__ import annotations

import base64
import datetime
import logging
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import aiohttp
import kopf

from whatsapp_operator import GROUP, VERSION

logger = logging.getLogger(__name__)
COMPONENT = "whatsapp-operator"  # who Events say wrote them (kubectl describe's From column)


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class SecretMissing(KubeError):
    """The referenced Secret or key does not exist, or its value is not text."""


class KubeApi:
    def __init__(self) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None

    async def use(self, info: kopf.ConnectionInfo) -> None:
        """Called from the login handler, also on re-login after the token rotated."""
        self._info = info
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._info is None:
            raise KubeError("not logged in to the Kubernetes API yet")
        if self._session is None or self._session.closed:
            info = self._info
            headers = {"Accept": "application/json"}
            if info.token:
                headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
            auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
            context: ssl.SSLContext | bool = False if info.insecure else ssl.create_default_context()
            if isinstance(context, ssl.SSLContext):
                if info.ca_path:
                    context.load_verify_locations(cafile=info.ca_path)
                if info.ca_data:
                    context.load_verify_locations(cadata=info.ca_data.decode())
                if info.certificate_path and info.private_key_path:
                    context.load_cert_chain(info.certificate_path, info.private_key_path)
            self._session = aiohttp.ClientSession(
                base_url=info.server.rstrip("/") + "/",
                headers=headers,
                auth=auth,
                connector=aiohttp.TCPConnector(ssl=context, limit=20),
                timeout=aiohttp.ClientTimeout(total=30, connect=5),
            )
        return self._session

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        session = self._ensure_session()
        try:
            async with session.request(method, path.lstrip("/"), **kwargs) as response:
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
