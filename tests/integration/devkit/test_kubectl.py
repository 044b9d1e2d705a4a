"""kubectl, the real binary, as a user points it at the demo while it holds: what it prints.

One demo runs for the module (`--state-dir`, `--hold`): driver-ana stays connected, driver-davi is
logged out by Evolution (401) two seconds in, driver-carla is stuck connecting until the operator
logs it out (after 5 s). The tests read what kubectl shows against the
emulated API server with the project's CRDs and the running operator. They are skipped only where
no kubectl is installed; CI's `.ci/run` refuses to start without it.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from whatsapp_operator.core.phases import Phase

ROOT = Path(__file__).resolve().parents[3]
KUBECTL = shutil.which("kubectl")
DEMO = [str(Path(sys.executable).with_name("whatsapp-operator")), "demo"]
SCENARIO = """
instances:
  - {name: driver-ana, start: open, number: "5511987654321"}
  - {name: driver-davi, start: open, number: "5541992345678", events: [{at: 2, action: disconnect, reason: 401}]}
  - {name: driver-carla, start: connecting, number: "5531991234567"}
"""
PHASES = {str(phase) for phase in Phase}
AGE = re.compile(r"\d+[smhdy](\d+[smhd])?")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


class Demo:
    def __init__(self, state: Path, process: subprocess.Popen[str], stderr: Path) -> None:
        self.state, self.process, self.stderr = state, process, stderr
        self.cache = state.parent / "kubectl-cache"

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        command = [KUBECTL, "--kubeconfig", str(self.state / "kubeconfig"), "--cache-dir", str(self.cache), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert done.returncode == 0, done.stderr
            assert done.stderr == "", "no warning for what a user does every day"
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        assert KUBECTL is not None
        command = [KUBECTL, "--kubeconfig", str(self.state / "kubeconfig"), "--cache-dir", str(self.cache), *args]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("kubectl")
    scenario, stderr, state = home / "scenario.yaml", home / "stderr", home / "state"
    scenario.write_text(SCENARIO)
    command = [*DEMO, "--scenario", str(scenario), "--duration", "6", "--json", "--hold", "600"]
    command += ["--probe-interval", "5", "--stuck-after", "5", "--state-dir", str(state)]
    with stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        deadline = time.monotonic() + 90
        while "holding for" not in stderr.read_text():
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the demo never reached its hold"
            time.sleep(0.2)
        yield Demo(state, process, stderr)
        process.send_signal(signal.SIGINT)  # ends the hold early
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.read_text()
    assert json.loads(stdout)["errors"] == []
    assert not (state / "kubeconfig").exists()
    assert not (state / "endpoints.json").exists()


def table(output: str) -> tuple[list[str], dict[str, list[str]]]:
    """kubectl's table: its header and each row by name, cut where the header's columns start (a
    cell may be empty, a header may hold a space)."""
    header, *lines = output.rstrip("\n").splitlines()
    starts = [(m.group(), m.start()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    bounds = [
        (start, next_start) for (_, start), (_, next_start) in zip(starts, [*starts[1:], ("", None)], strict=True)
    ]
    rows = [[line[start:end].strip() for start, end in bounds] for line in lines]
    return [name for name, _ in starts], {cells[0]: cells for cells in rows}


def row(output: str, name: str) -> dict[str, str]:
    header, rows = table(output)
    return dict(zip(header, rows[name], strict=True))


def test_the_demo_says_how_and_writes_where_everything_is(demo: Demo) -> None:
    assert f"kubectl --kubeconfig {demo.state / 'kubeconfig'} get wai" in demo.stderr.read_text().splitlines()[0]
    endpoints = json.loads((demo.state / "endpoints.json").read_text())
    assert {"kubernetes", "webhooks", "database", "metrics", "status_api", "status_api_token"} <= set(endpoints)
    assert endpoints["kubernetes"].startswith("http://127.0.0.1:")
    assert endpoints["webhooks"].endswith("/webhooks/evolution")
    samples = [
        (sample.labels.get("phase"), sample.value)
        for family in text_string_to_metric_families(httpx.get(endpoints["metrics"]).text)
        for sample in family.samples
        if sample.name == "whatsapp_operator_instances"
    ]
    assert ("LoggedOut", 1.0) in samples
    url = f"{endpoints['status_api']}/api/v1/drivers/driver-davi/whatsapp/status"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {endpoints['status_api_token']}"})
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert {k: v for k, v in answer.json().items() if k != "updatedAt"} == {
        "instanceName": "driver-davi",
        "state": "close",
        "statusReason": 401,
        "phase": "LoggedOut",
    }
    assert answer.json()["updatedAt"].endswith("Z")
    assert httpx.get(url).status_code == 401, "not without the token"


def test_get_wai_shows_every_printer_column_with_the_operators_values(demo: Demo) -> None:
    output = demo.kubectl("get", "wai").stdout
    header, _ = table(output)
    assert header == ["NAME", "DRIVER", "PHONE", "PHASE", "READY", "REASON", "SERVER", "AGE"]
    ana, davi = row(output, "driver-ana"), row(output, "driver-davi")
    assert {k: ana[k] for k in ("PHONE", "PHASE", "READY", "REASON", "SERVER")} == {
        "PHONE": "+5511987654321",
        "PHASE": "Connected",
        "READY": "True",
        "REASON": "200",
        "SERVER": "default",
    }
    assert (davi["PHASE"], davi["READY"], davi["REASON"]) == ("LoggedOut", "False", "401")
    assert ana["DRIVER"] == "Driver driver-ana"
    assert AGE.fullmatch(ana["AGE"])


def test_get_wide_adds_the_raw_state_forced_logouts_transition_and_message(demo: Demo) -> None:
    forced = "--for=jsonpath={.status.forcedLogouts}=1"
    demo.kubectl("wait", forced, "wai/driver-carla", "--timeout=60s")
    output = demo.kubectl("get", "whatsappinstances", "-o", "wide").stdout
    header, _ = table(output)
    assert header[-5:] == ["STATE", "FORCED LOGOUTS", "RESTARTS", "LAST TRANSITION", "MESSAGE"]
    ana, davi, carla = (row(output, name) for name in ("driver-ana", "driver-davi", "driver-carla"))
    assert (ana["STATE"], ana["FORCED LOGOUTS"], ana["MESSAGE"]) == ("open", "", "WhatsApp is connected")
    assert (davi["STATE"], carla["FORCED LOGOUTS"]) == ("close", "1")
    assert AGE.fullmatch(davi["LAST TRANSITION"])


def test_get_the_category_lists_both_kinds(demo: Demo) -> None:
    output = demo.kubectl("get", "whatsapp").stdout
    assert "evolutionserver.whatsapp.evolution-operator.io/default" in output
    for name in ("driver-ana", "driver-davi", "driver-carla"):
        assert f"whatsappinstance.whatsapp.evolution-operator.io/{name}" in output
    server = row(demo.kubectl("get", "evo").stdout, "default")
    assert (server["BREAKER"], server["INSTANCES"], server["CONNECTED"]) == ("Closed", "3", "1")


def test_describe_shows_the_operators_events(demo: Demo) -> None:
    output = demo.kubectl("describe", "wai", "driver-davi").stdout
    events = output[output.index("Events:") :]
    assert re.search(r"Warning\s+LoggedOut\s+\S+\s+whatsapp-operator\s+WhatsApp session ended", events), events


def test_apply_of_the_examples_validates_on_the_server_and_is_idempotent(demo: Demo) -> None:
    examples = str(ROOT / "manifests" / "examples")
    demo.kubectl("apply", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: examples}\n")
    first = demo.kubectl("apply", "-n", "examples", "-f", examples).stdout.splitlines()
    assert sorted(first) == [
        "evolutionserver.whatsapp.evolution-operator.io/default created",
        "secret/evolution-api created",
        "whatsappinstance.whatsapp.evolution-operator.io/driver-7f3c9a created",
    ]
    again = demo.kubectl("apply", "-n", "examples", "-f", examples).stdout
    assert "evolutionserver.whatsapp.evolution-operator.io/default unchanged" in again
    assert "whatsappinstance.whatsapp.evolution-operator.io/driver-7f3c9a unchanged" in again


INVALID = {
    "bad phone": (
        "spec: {driverId: d1, phoneNumber: 'call me'}",
        'The WhatsAppInstance "refused" is invalid: spec.phoneNumber: Invalid value: "call me"',
    ),
    "missing driverId": (
        "spec: {phoneNumber: '+5511987654321'}",
        'The WhatsAppInstance "refused" is invalid: spec.driverId: Required value',
    ),
    "unknown pairing method": (
        "spec: {driverId: d1, phoneNumber: '+5511987654321', pairing: {method: sms}}",
        'spec.pairing.method: Unsupported value: "sms": supported values: "pairingCode", "qrcode"',
    ),
    "unknown field": (
        "spec: {driverId: d1, phoneNumber: '+5511987654321', colour: blue}",
        'Error from server (BadRequest): error when creating "STDIN": WhatsAppInstance in version "v1alpha1"'
        ' cannot be handled as a WhatsAppInstance: strict decoding error: unknown field "spec.colour"',
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_manifest_is_refused_with_kubectls_message(demo: Demo, case: str) -> None:
    spec, message = INVALID[case]
    manifest = "apiVersion: whatsapp.evolution-operator.io/v1alpha1\nkind: WhatsAppInstance\n"
    manifest += f"metadata: {{name: refused}}\n{spec}\n"
    done = demo.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert done.returncode == 1
    assert message in done.stderr
    assert "refused" not in demo.kubectl("get", "wai", "-o", "name").stdout


def test_an_unknown_phase_is_refused_on_the_status_subresource(demo: Demo) -> None:
    patch = '{"status": {"phase": "Asleep"}}'
    done = demo.kubectl("patch", "wai", "driver-ana", "--subresource=status", "--type=merge", "-p", patch, check=False)
    assert done.returncode == 1
    assert 'status.phase: Unsupported value: "Asleep"' in done.stderr
    assert row(demo.kubectl("get", "wai").stdout, "driver-ana")["PHASE"] == "Connected"


def test_get_watch_shows_a_phase_change(demo: Demo) -> None:
    watch = demo.popen("get", "wai", "driver-ana", "--watch")
    lines: queue.Queue[str] = queue.Queue()
    assert watch.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in watch.stdout], daemon=True).start()
    suspend = '{"spec": {"suspend": %s}}'
    try:
        assert lines.get(timeout=30).split()[:2] == ["NAME", "DRIVER"]
        phases = [phase_of(lines.get(timeout=30))]
        demo.kubectl("patch", "wai", "driver-ana", "--type=merge", "-p", suspend % "true")
        deadline = time.monotonic() + 30
        while phases[-1] != "Suspended":
            phases.append(phase_of(lines.get(timeout=max(deadline - time.monotonic(), 0.1))))
        assert phases[0] == "Connected"
    finally:
        watch.terminate()
        watch.wait(timeout=10)
        demo.kubectl("patch", "wai", "driver-ana", "--type=merge", "-p", suspend % "false")


def phase_of(line: str) -> str | None:
    """The phase in one line of `get -w`: each event's line is aligned on its own."""
    return next((cell for cell in re.split(r"\s{2,}", line.strip()) if cell in PHASES), None)


def test_a_typed_create_is_refused_with_what_to_do_instead(demo: Demo) -> None:
    done = demo.kubectl("create", "namespace", "typed", check=False)
    assert done.returncode == 1
    assert "takes JSON, not application/vnd.kubernetes.protobuf: write this object with kubectl apply -f" in done.stderr
    assert "typed" not in demo.kubectl("get", "namespaces", "-o", "name").stdout
