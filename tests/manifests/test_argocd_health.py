"""manifests/argocd/health.lua, run by Debian's lua5.4 as Argo CD runs a health script: the live
object is the global `obj`, and the script's result is a table with `status` and `message`."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.manifests.render import ROOT
from whatsapp_operator.core.phases import Phase

LUA = shutil.which("lua5.4")
SCRIPT = ROOT / "manifests" / "argocd" / "health.lua"
# Every phase's Argo CD health. Unknown: the probes fail (Evolution does not answer), which says
# nothing about the link itself (docs/deploy.md). Unresponsive is listed before it exists in Phase.
HEALTH = {
    "Pending": "Progressing",
    "Pairing": "Progressing",
    "Connecting": "Progressing",
    "Connected": "Healthy",
    "Disconnected": "Degraded",
    "LoggedOut": "Degraded",
    "NotFound": "Degraded",
    "Unresponsive": "Degraded",
    "Unknown": "Unknown",
    "Suspended": "Suspended",
}

pytestmark = pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (`make tools` installs it)")


def lua(value: Any) -> str:
    """A Lua constructor of a JSON value, as Argo CD hands the object to the script (null is nil)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + "".join(f"\\{b}" if b < 32 or b > 126 or b in (34, 92) else chr(b) for b in str(value).encode()) + '"'


def health(obj: dict[str, Any]) -> tuple[str, str]:
    assert LUA is not None
    program = f"obj = {lua(obj)}\nlocal hs = dofile({lua(str(SCRIPT))})\nio.write(hs.status, '\\n', hs.message)"
    done = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    status, message = done.stdout.split("\n", 1)
    return status, message


def instance(phase: str | None = None, *, suspend: bool = False, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "whatsapp.evolution-operator.io/v1alpha1",
        "kind": "WhatsAppInstance",
        "metadata": {"name": "driver-ana", "namespace": "drivers", "generation": 1},
        "spec": {"driverId": "ana", "phoneNumber": "+5511987654321", "suspend": suspend},
    }
    if phase is not None:
        obj["status"] = {"phase": phase, "instanceName": "driver-ana", **status}
    return obj


def test_every_phase_has_a_health() -> None:
    assert {str(phase) for phase in Phase} <= HEALTH.keys()


@pytest.mark.parametrize(("phase", "expected"), HEALTH.items())
def test_each_phase(phase: str, expected: str) -> None:
    status, message = health(instance(phase, message="Evolution says close (reason 401)"))
    assert status == expected
    assert message


def test_no_status_yet_is_progressing() -> None:
    assert health(instance())[0] == "Progressing"


def test_suspend_wins_over_the_last_phase_seen() -> None:
    assert health(instance("Disconnected", suspend=True)) == ("Suspended", "probing is suspended (spec.suspend)")


def test_remediation_exhausted_is_degraded_though_connecting() -> None:
    stuck = {
        "type": "Stuck",
        "status": "True",
        "reason": "RemediationExhausted",
        "message": "3 forced logouts within 1:00:00; waiting",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    ready = {"type": "Ready", "status": "False", "reason": "Connecting", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    status, message = health(instance("Connecting", conditions=[ready, stuck]))
    assert status == "Degraded"
    assert "3 forced logouts" in message
    stuck_but_trying = {**stuck, "reason": "ConnectingTooLong"}
    assert health(instance("Connecting", conditions=[stuck_but_trying]))[0] == "Progressing"


def test_a_phase_this_script_does_not_know_is_unknown() -> None:
    assert health(instance("Hibernating")) == ("Unknown", "phase Hibernating is not known to this health check")


def test_a_deleted_instance_is_progressing_until_it_goes() -> None:
    obj = instance("Connected")
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert health(obj)[0] == "Progressing"


def test_messages_carry_the_operators_message() -> None:
    assert health(instance("LoggedOut", message="logged out on the phone (401)")) == (
        "Degraded",
        "LoggedOut: logged out on the phone (401)",
    )
