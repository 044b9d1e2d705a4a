"""The installed operator as the pod runs it: as the image's numeric user (no passwd entry, no
capabilities, no new privileges), in a working directory and HOME it cannot write, with the
settings as environment variables only. Against the API emulator and the simulator it starts, its
probes' endpoints answer, it probes an instance to Connected, and SIGTERM stops it cleanly within
the pod's grace period. What the read-only root filesystem requires: it writes no file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.manifests.render import ROOT
from tests.support.operator_harness import STATUS_API_TOKEN, backends, instance_manifest, wait_phase
from whatsapp_operator.devkit.manifests import NAMESPACE, STATUS_API_SECRET, status_api_secret_manifest
from whatsapp_operator.http_server import free_port

SETPRIV = shutil.which("setpriv")
OPERATOR = Path(sys.executable).with_name("whatsapp-operator")
USER = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
assert USER is not None
UID, GID = int(USER[1]), int(USER[2])
GRACE_SECONDS = 30  # the StatefulSet's terminationGracePeriodSeconds

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root (CI runs as root)"),
    pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed"),
]


def as_the_pods_user(*argv: str) -> list[str]:
    assert SETPRIV is not None
    return [SETPRIV, f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--no-new-privs", *argv]


@pytest.fixture
def unwritable_dir() -> Iterator[Path]:
    """A directory the pod's user may enter but not write: its working directory and HOME."""
    path = Path(tempfile.mkdtemp(prefix="whatsapp-operator-home-"))
    path.chmod(0o555)
    yield path
    path.rmdir()


def runnable_by_the_pods_user(cwd: Path) -> bool:
    done = subprocess.run(as_the_pods_user(str(OPERATOR), "--help"), cwd=cwd, capture_output=True, timeout=60)
    return done.returncode == 0


async def test_the_operator_runs_unprivileged_and_stops_cleanly(unwritable_dir: Path) -> None:
    if not runnable_by_the_pods_user(unwritable_dir):
        pytest.skip(f"uid {UID} cannot run {OPERATOR}: a directory above the virtualenv is not o+rx")
    liveness, http, metrics = (f"127.0.0.1:{free_port()}" for _ in range(3))
    async with backends() as (kube, sim):
        await kube.create(status_api_secret_manifest(STATUS_API_TOKEN))
        sim.add_instance("driver-ana", "open")
        await kube.create(instance_manifest("driver-ana"))
        environment = {  # what the pod's environment holds: the ConfigMap's settings and POD_ID
            "PATH": f"{OPERATOR.parent}:/usr/bin:/bin",
            "HOME": str(unwritable_dir),
            "PYTHONDONTWRITEBYTECODE": "1",
            "POD_ID": "whatsapp-operator-0",
            "WHATSAPP_OPERATOR_KUBE_SERVER": kube.url,
            "WHATSAPP_OPERATOR_LIVENESS": f"http://{liveness}/healthz",
            "WHATSAPP_OPERATOR_WEBHOOK_LISTEN": http,
            "WHATSAPP_OPERATOR_METRICS_LISTEN": metrics,
            "WHATSAPP_OPERATOR_STATUS_API_SECRET": f"{NAMESPACE}/{STATUS_API_SECRET}",
        }
        log = unwritable_dir.parent / f"{unwritable_dir.name}.log"
        with log.open("w+b") as output:
            process = await asyncio.create_subprocess_exec(
                *as_the_pods_user(str(OPERATOR), "run"),
                cwd=unwritable_dir,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                await wait_phase(kube, "driver-ana", "Connected", within=60)
                async with httpx.AsyncClient(timeout=10) as client:
                    assert (await client.get(f"http://{liveness}/healthz")).status_code == 200
                    assert (await client.get(f"http://{http}/api/v1/openapi.json")).status_code == 200
                    answer = await client.get(
                        f"http://{http}/api/v1/drivers/driver-ana/whatsapp/status",
                        headers={"Authorization": f"Bearer {STATUS_API_TOKEN}"},
                    )
                    assert answer.json()["state"] == "open"
                    assert "whatsapp_operator_build_info" in (await client.get(f"http://{metrics}/metrics")).text
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(GRACE_SECONDS):
                    assert await process.wait() == 0
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                output.seek(0)
                lines = output.read().decode(errors="replace")
                log.unlink()
    assert "Traceback" not in lines, lines
    assert not re.search(r"Permission denied|Read-only file system|PermissionError", lines), lines
    assert os.listdir(unwritable_dir) == []  # nothing written, not even a dotfile
