"""`whatsapp-operator run` logs in as kubectl does: the official client reads the kubeconfig
($KUBECONFIG, its current context), and kopf and the operator's own client use what it found. The
emulator requires bearer tokens here, so every request shows whose credentials it carried. The
operator is the installed command in a process of its own, started with $KUBECONFIG as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.operator_harness import (
    RUN,
    backends,
    instance_manifest,
    outside_a_cluster,
    wait_event,
    wait_instance,
    wait_phase,
)
from whatsapp_operator.devkit.kube_emulator import Access, EmulatedCluster
from whatsapp_operator.devkit.kube_emulator.cluster import USER_AGENT

# A credential plugin as client-go runs them (aws eks get-token, gke-gcloud-auth-plugin, kubelogin):
# it prints an ExecCredential; this one hands out whatever token its file holds.
EXEC_PLUGIN = """\
import json, pathlib, sys
token = pathlib.Path(sys.argv[1]).read_text().strip()
credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {"token": token}}
print(json.dumps(credential))
"""


@contextlib.asynccontextmanager
async def operator_process(kubeconfig: Path) -> AsyncIterator[None]:
    """`whatsapp-operator run` with $KUBECONFIG, outside any cluster (no in-cluster ServiceAccount
    to find first), until the block ends; it must stop cleanly on SIGTERM."""
    env = outside_a_cluster() | {"KUBECONFIG": str(kubeconfig)}
    process = await asyncio.create_subprocess_exec(*RUN, env=env, stderr=asyncio.subprocess.PIPE)
    try:
        yield
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()


def write_kubeconfig(path: Path, server: str, user: dict[str, Any]) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": user}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "operator"}}],
        "current-context": "emulated",
    }
    path.write_text(yaml.safe_dump(config))


def operator_requests(kube: EmulatedCluster) -> list[Access]:
    return [a for a in kube.emulator.audit_log if not a.user_agent.startswith(USER_AGENT)]


async def test_a_kubeconfig_with_a_token_logs_kopf_and_the_operators_client_in(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    async with backends(tokens={"token-of-the-operator": "operator"}) as (kube, sim):
        write_kubeconfig(kubeconfig, kube.url, {"token": "token-of-the-operator"})
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        async with operator_process(kubeconfig):
            await wait_phase(kube, "ana", "Connected", within=30)
        requests = operator_requests(kube)
    clients = {a.user_agent.split("/")[0] for a in requests}
    assert clients == {"kopf", "whatsapp-operator"}, "kopf's watches and our status patches"
    assert {a.user for a in requests} == {"operator"}, "every request with the kubeconfig's token"


async def test_an_exec_plugins_token_logs_in_and_a_rotated_one_is_fetched_on_a_401(tmp_path: Path) -> None:
    kubeconfig, plugin, token = tmp_path / "kubeconfig", tmp_path / "credential-plugin.py", tmp_path / "token"
    plugin.write_text(EXEC_PLUGIN)
    token.write_text("first-token\n")
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), str(token)],
            "interactiveMode": "Never",
        }
    }
    async with backends(tokens={"first-token": "operator"}, probe={"intervalSeconds": 5}) as (kube, sim):
        write_kubeconfig(kubeconfig, kube.url, exec_user)
        sim.add_instance("ana", "open")
        await kube.create(instance_manifest("ana"))
        async with operator_process(kubeconfig):
            await wait_phase(kube, "ana", "Connected", within=30)
            # kopf is done with it (its annotations, the Connected Event), so the next request is ours.
            await wait_instance(kube, "ana", lambda obj: bool(obj["metadata"].get("annotations")), within=30)
            await wait_event(kube, "ana", "Connected")
            # The token expires: the API server refuses it, the plugin now hands out the next one.
            token.write_text("second-token\n")
            kube.emulator.tokens["second-token"] = "operator, later"
            del kube.emulator.tokens["first-token"]
            rotated = len(kube.emulator.audit_log)
            sim.act("ana", "disconnect", 401)  # the next probe sees it: our client writes, kopf does not
            await wait_phase(kube, "ana", "LoggedOut", within=30)
        before, after = kube.emulator.audit_log[:rotated], kube.emulator.audit_log[rotated:]
    assert {a.user for a in before if not a.user_agent.startswith(USER_AGENT)} == {"operator"}
    ours = [(a.user, a.verb, a.qualified) for a in after if a.user_agent == "whatsapp-operator"]
    refused = [request for request in ours if request[0] is None]
    assert refused, "the old token was refused once"
    assert ours[: len(refused)] == refused, "and then never again"
    assert {user for user, _, _ in ours[len(refused) :]} == {"operator, later"}
    repeated = {(verb, resource) for user, verb, resource in ours[len(refused) :]}
    assert {(verb, resource) for _, verb, resource in refused} <= repeated, "each refused request made again"
