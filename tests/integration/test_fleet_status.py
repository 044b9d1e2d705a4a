"""`whatsapp-operator status`, the installed command, against the emulator on a port through a
kubeconfig: the statuses are written as the operator writes them (the emulator validates them
against the CRDs), so every phase and heartbeat bucket is there at once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from whatsapp_operator.devkit.kube_emulator import EmulatedCluster
from whatsapp_operator.devkit.manifests import instance_manifest, secret_manifest, server_manifest

STATUS = [str(Path(sys.executable).with_name("whatsapp-operator")), "status"]
TOKEN = "token-of-a-user"
PHONE = "+5511987654321"
T = "2026-01-02T03:04:05Z"


def stuck(status: str, reason: str) -> dict[str, Any]:
    return {"type": "Stuck", "status": status, "reason": reason, "message": "", "lastTransitionTime": T}


# name -> (EvolutionServer, status): one of each bucket, and more.
FLEET: dict[str, tuple[str, dict[str, Any]]] = {
    "ana": ("default", {"phase": "Connected", "state": "open"}),
    "bia": ("default", {"phase": "Connected", "state": "open"}),
    "davi": ("default", {"phase": "LoggedOut", "state": "close", "statusReason": 401}),
    "carla": ("default", {"phase": "Connecting", "conditions": [stuck("True", "RemediationExhausted")]}),
    "edu": ("default", {"phase": "Connecting", "conditions": [stuck("False", "NotStuck")]}),
    "fabi": ("default", {"phase": "Pairing"}),
    "gil": ("backup", {"phase": "Unknown", "message": "Evolution unreachable"}),
    "hugo": ("backup", {"phase": "NotFound"}),
}


def kubeconfig(path: Path, server: str) -> Path:
    """Two contexts: the current one names a server that does not answer, `emulated` the emulator."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "emulated", "cluster": {"server": server}},
            {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}},
        ],
        "users": [{"name": "user", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "emulated", "context": {"cluster": "emulated", "user": "user"}},
            {"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "user"}},
        ],
        "current-context": "elsewhere",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def status_command(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    process = await asyncio.create_subprocess_exec(
        *STATUS, *args, env=environ | (env or {}), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def populated(kube: EmulatedCluster) -> None:
    await kube.create(secret_manifest("the-api-key"))
    for server in ("default", "backup"):
        await kube.create(server_manifest("http://evolution:8080", name=server))
    await kube.patch("evolutionservers", "backup", {"status": {"breaker": "Open"}}, subresource="status")
    await kube.patch("evolutionservers", "default", {"status": {"breaker": "Closed"}}, subresource="status")
    for name, (server, status) in FLEET.items():
        await kube.create(instance_manifest(name, phone=PHONE, serverRef={"name": server}))
        await kube.patch(
            "whatsappinstances", name, {"status": status | {"lastTransitionTime": T}}, subresource="status"
        )
    await kube.create(instance_manifest("ivo", phone=PHONE, serverRef={"name": "gone"}))  # no status yet


async def test_status_prints_phases_per_server_the_breakers_and_the_unhealthy_ones(tmp_path: Path) -> None:
    async with EmulatedCluster(tokens={TOKEN: "a user"}) as kube:
        await populated(kube)
        config = kubeconfig(tmp_path / "kubeconfig", kube.url)
        code, text, err = await status_command("--context", "emulated", env={"KUBECONFIG": str(config)})
        json_code, as_json, _ = await status_command("--kubeconfig", str(config), "--context", "emulated", "--json")
        wrong_code, _, wrong_err = await status_command("--kubeconfig", str(config))  # the current context

    assert (code, err) == (0, "")
    servers, unhealthy, unknown = text.split("\n\n")
    assert servers.splitlines() == [
        "SERVER            BREAKER   INSTANCES   PHASES",
        "default/backup    Open      2           NotFound 1, Unknown 1",
        "default/default   Closed    6           Pairing 1, Connecting 2, Connected 2, LoggedOut 1",
        "default/gone      -         1           Pending 1",
    ]
    assert unhealthy.splitlines() == [
        "Unhealthy: 3",
        "INSTANCE        SERVER            PHASE        REASON                 SINCE",
        f"default/carla   default/default   Connecting   RemediationExhausted   {T}",
        f"default/davi    default/default   LoggedOut    401                    {T}",
        f"default/hugo    default/backup    NotFound                            {T}",
    ], "a stuck Connecting is unhealthy, one not stuck is not"
    assert unknown.splitlines() == [
        "Unknown (probes failing): 1",
        "INSTANCE      SERVER           PHASE     REASON   SINCE",
        f"default/gil   default/backup   Unknown            {T}",
    ]

    assert json_code == 0
    document = json.loads(as_json)
    assert document["servers"][1] == {
        "server": "default/default",
        "breaker": "Closed",
        "instances": 6,
        "phases": {"Pairing": 1, "Connecting": 2, "Connected": 2, "LoggedOut": 1},
    }
    assert [(i["name"], i["reason"]) for i in document["unhealthy"]] == [
        ("carla", "RemediationExhausted"),
        ("davi", "401"),
        ("hugo", ""),
    ]
    assert [i["name"] for i in document["unknown"]] == ["gil"]
    for output in (text, as_json):
        assert PHONE.lstrip("+")[-8:] not in output
        assert TOKEN not in output

    assert wrong_code == 1
    assert "cannot reach the API server" in wrong_err
    assert TOKEN not in wrong_err


async def test_status_without_credentials_says_so(tmp_path: Path) -> None:
    code, out, err = await status_command("--kubeconfig", str(tmp_path / "absent"))
    assert (code, out) == (2, "")
    assert err == f"whatsapp-operator status: no Kubernetes credentials: no kubeconfig at {tmp_path / 'absent'}\n"
