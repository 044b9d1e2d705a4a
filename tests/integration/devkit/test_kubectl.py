"""kubectl, the real binary, as a user points it at the demo while it holds: what it prints.

One demo runs for the module (`--state-dir`, `--hold`): driver-ana stays connected, driver-davi is
logged out by Evolution (401) two seconds in, driver-carla is stuck connecting until the operator
logs it out (after 5 s). The tests read what kubectl shows against the
emulated API server with the project's CRDs and the running operator. They are skipped only where
no kubectl is installed; CI's `.ci/run` refuses to start without it.

While the scenario plays, the fixture applies an invalid manifest as a user would: the demo's
summary (read after the play, printed before the hold) must still report no errors.
"""

from __future__ import annotations

import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
GROUP = "whatsapp.evolution-operator.io"
API = f"{GROUP}/v1alpha1"
AGE = re.compile(r"\d+[smhdy](\d+[smhd])?")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


class Demo:
    def __init__(self, state: Path, process: subprocess.Popen[str], stderr: Path, summary: dict[str, Any]) -> None:
        self.state, self.process, self.stderr = state, process, stderr
        self.summary = summary  # the JSON the demo printed before its hold
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
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 90
        while not (state / "kubeconfig").exists():
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the demo never wrote its kubeconfig"
            time.sleep(0.1)
        user = Demo(state, process, stderr, {})
        refused = user.kubectl("apply", "-f", "-", stdin=manifest(INVALID["bad phone"][0]), check=False)
        assert refused.returncode == 1, refused.stderr
        assert not select.select([process.stdout], [], [], 0)[0], "refused before the summary was read"
        while "holding for" not in stderr.read_text():
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the demo never reached its hold"
            time.sleep(0.2)
        assert select.select([process.stdout], [], [], 10)[0], "the JSON is printed before the hold"
        user.summary = json.loads(process.stdout.readline())
        yield user
        process.send_signal(signal.SIGINT)  # ends the hold early
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.read_text()
    assert stdout == "", "one JSON object, printed before the hold"
    assert user.summary["errors"] == [], "a user's refused kubectl apply is no error of the demo"
    assert not (state / "kubeconfig").exists()
    assert not (state / "endpoints.json").exists()


def manifest(spec: str, name: str = "refused") -> str:
    return f"apiVersion: {API}\nkind: WhatsAppInstance\nmetadata: {{name: {name}}}\n{spec}\n"


def cells(output: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's table: its header and each row's cells, cut where the header's columns start (a
    cell may be empty, a header may hold a space)."""
    header, *lines = output.rstrip("\n").splitlines()
    columns = list(re.finditer(r"\S+(?: \S+)*", header))
    bounds = list(zip([c.start() for c in columns], [*(c.start() for c in columns[1:]), None], strict=True))
    return [c.group() for c in columns], [[line[start:end].strip() for start, end in bounds] for line in lines]


def table(output: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header, and each row's cells by its first cell (the name)."""
    header, lines = cells(output)
    return header, {line[0]: line for line in lines}


def row(output: str, name: str) -> dict[str, str]:
    header, by_name = table(output)
    return dict(zip(header, by_name[name], strict=True))


def rows(output: str) -> list[dict[str, str]]:
    """Every row by column, for tables whose first column is no name (`kubectl get events`)."""
    header, lines = cells(output)
    return [dict(zip(header, line, strict=True)) for line in lines]


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
    # The heartbeat counts once driver-carla, stuck, was logged out and is pairing again.
    demo.kubectl("wait", "--for=jsonpath={.status.pairing}=1", "evo/default", "--timeout=60s")
    server = row(demo.kubectl("get", "evo", "-o", "wide").stdout, "default")
    assert (server["BREAKER"], server["INSTANCES"], server["CONNECTED"]) == ("Closed", "3", "1")
    assert (server["UNHEALTHY"], server["UNKNOWN"], server["PAIRING"]) == ("1", "0", "1"), "driver-davi, logged out"


DISCOVERY_DOCUMENT = re.compile(r"/api(/v1)?|/apis(/[^/]+){0,2}")  # not a list: those name a resource


def test_discovery_is_aggregated_as_a_132_api_servers(demo: Demo, tmp_path: Path) -> None:
    """kubectl reads /api and /apis in one aggregated document each and no per-group document (a
    fresh cache, so that every request it makes is heard)."""
    assert KUBECTL is not None

    def discovered(*args: str) -> tuple[str, list[str]]:
        command = [KUBECTL, "--kubeconfig", str(demo.state / "kubeconfig"), "--cache-dir", str(tmp_path), "-v=6"]
        done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=True)
        requested = re.findall(r"GET https?://[^/\s]+(/\S*?)(?:\?\S*)? 200 OK", done.stderr)
        return done.stdout, [path for path in requested if DISCOVERY_DOCUMENT.fullmatch(path)]

    got, requested = discovered("get", "whatsapp", "-o", "name")
    assert requested == ["/api", "/apis"]
    assert {"evolutionserver.whatsapp.evolution-operator.io/default"} < set(got.split())
    listed, requested = discovered("api-resources")
    assert requested == ["/api", "/apis"], "api-resources reads discovery again, aggregated"
    header, resources = table(listed)
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert resources["whatsappinstances"][1:] == ["wai", API, "true", "WhatsAppInstance"]
    assert resources["evolutionservers"][1] == "evo"
    assert "whatsappinstances/status" not in resources
    whatsapp = demo.kubectl("api-resources", "--categories", "whatsapp", "-o", "name").stdout.split()
    assert sorted(whatsapp) == [f"evolutionservers.{GROUP}", f"whatsappinstances.{GROUP}"]


def test_describe_shows_the_operators_events(demo: Demo) -> None:
    output = demo.kubectl("describe", "wai", "driver-davi").stdout
    events = output[output.index("Events:") :]
    assert re.search(r"Warning\s+LoggedOut\s+\S+\s+whatsapp-operator\s+WhatsApp session ended", events), events


def test_apply_of_the_examples_validates_on_the_server_and_is_idempotent(demo: Demo) -> None:
    examples = str(ROOT / "manifests" / "examples")
    absent = demo.kubectl("apply", "-n", "examples-twice", "-f", examples, check=False)
    assert absent.returncode == 1
    assert 'namespaces "examples-twice" not found' in absent.stderr, "no namespace is made on the way"
    namespace = demo.kubectl("create", "namespace", "examples-twice", "--dry-run=client", "-o", "yaml").stdout
    demo.kubectl("apply", "-f", "-", stdin=namespace)
    first = demo.kubectl("apply", "-n", "examples-twice", "-f", examples).stdout.splitlines()
    assert sorted(first) == [
        "evolutionserver.whatsapp.evolution-operator.io/default created",
        "secret/evolution-api created",
        "whatsappinstance.whatsapp.evolution-operator.io/driver-7f3c9a created",
    ]
    again = demo.kubectl("apply", "-n", "examples-twice", "-f", examples).stdout
    assert "evolutionserver.whatsapp.evolution-operator.io/default unchanged" in again
    assert "whatsappinstance.whatsapp.evolution-operator.io/driver-7f3c9a unchanged" in again


def readme_kubectl_lines() -> list[str]:
    """The `kubectl` commands of README.md's "Look around while it runs" block, as written."""
    section = (ROOT / "README.md").read_text().split("### Look around while it runs", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", "")
    commands = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines()]
    return [command for command in commands if command.startswith("kubectl ")]


def test_the_readmes_kubectl_commands_work_and_leave_the_demo_as_it_was(demo: Demo) -> None:
    commands = readme_kubectl_lines()
    assert len(commands) >= 10
    assert any("apply" in command for command in commands)
    env = {**os.environ, "KUBECONFIG": str(demo.state / "kubeconfig"), "KUBECACHEDIR": str(demo.cache)}
    server = json.loads(demo.kubectl("get", "evo", "default", "-o", "json").stdout)
    instances = demo.kubectl("get", "wai", "-o", "name").stdout
    for command in commands:
        shell = ["bash", "-o", "pipefail", "-c", command]
        if " -w" in command:  # a watch runs until Ctrl-C: its first event is enough
            with subprocess.Popen(
                shell, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ) as watch:
                assert watch.stdout is not None
                assert watch.stdout.readline().split()[:1] == ["NAME"], command
                assert watch.stdout.readline().strip(), command
                watch.terminate()
            continue
        done = subprocess.run(shell, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stderr) == (0, ""), command
        assert done.stdout or command.startswith("kubectl diff"), command
    after = json.loads(demo.kubectl("get", "evo", "default", "-o", "json").stdout)
    assert after["spec"] == server["spec"], "the demo's EvolutionServer is the demo's still"
    assert demo.kubectl("get", "wai", "-o", "name").stdout == instances, "the dry-run delete deleted nothing"
    assert row(demo.kubectl("get", "wai").stdout, "driver-ana")["PHASE"] == "Connected"


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
    dry = demo.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest(spec), check=False)
    assert (dry.returncode, message in dry.stderr) == (1, True), "a dry run is validated as a write"
    done = demo.kubectl("apply", "-f", "-", stdin=manifest(spec), check=False)
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


def test_a_server_dry_run_answers_and_changes_nothing(demo: Demo) -> None:
    spec = "spec: {driverId: d1, phoneNumber: '+5511987654321'}"
    created = demo.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest(spec, "dry-one")).stdout
    assert created == "whatsappinstance.whatsapp.evolution-operator.io/dry-one created (server dry run)\n"
    assert "dry-one" not in demo.kubectl("get", "wai", "-o", "name").stdout
    deleted = demo.kubectl("delete", "wai", "driver-davi", "--dry-run=server").stdout
    assert deleted == 'whatsappinstance.whatsapp.evolution-operator.io "driver-davi" deleted (server dry run)\n'
    assert row(demo.kubectl("get", "wai").stdout, "driver-davi")["PHASE"] == "LoggedOut"


def test_diff_shows_a_change_and_leaves_the_live_object_alone(demo: Demo) -> None:
    changed = manifest(
        "spec: {driverId: driver-ana, phoneNumber: '+5511987654321', driverName: Ana Diffed}", "driver-ana"
    )
    done = demo.kubectl("diff", "-f", "-", stdin=changed, check=False)
    assert done.returncode == 1, done.stderr  # kubectl diff: 1 means "there are differences"
    assert re.search(r"^-\s+driverName: Driver driver-ana$", done.stdout, re.M), done.stdout
    assert re.search(r"^\+\s+driverName: Ana Diffed$", done.stdout, re.M), done.stdout
    live = demo.kubectl("get", "wai", "driver-ana", "-o", "jsonpath={.spec.driverName}").stdout
    assert live == "Driver driver-ana"


def test_builtin_kinds_print_the_api_servers_columns(demo: Demo) -> None:
    namespaces = demo.kubectl("get", "ns").stdout
    assert table(namespaces)[0] == ["NAME", "STATUS", "AGE"]
    assert row(namespaces, "default")["STATUS"] == "Active"
    secrets = demo.kubectl("get", "secrets").stdout
    assert table(secrets)[0] == ["NAME", "TYPE", "DATA", "AGE"]
    assert (row(secrets, "status-api")["TYPE"], row(secrets, "status-api")["DATA"]) == ("Opaque", "1")
    configmap = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: printed}\ndata: {a: '1', b: '2'}\nbinaryData: {c: AA==}\n"
    )
    demo.kubectl("apply", "-f", "-", stdin=configmap)
    configmaps = demo.kubectl("get", "cm").stdout
    assert table(configmaps)[0] == ["NAME", "DATA", "AGE"]
    assert row(configmaps, "printed")["DATA"] == "3"


def test_get_events_prints_the_api_servers_columns(demo: Demo) -> None:
    (logged_out,) = (e for e in rows(demo.kubectl("get", "events").stdout) if e["REASON"] == "LoggedOut")
    assert list(logged_out) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert (logged_out["TYPE"], logged_out["OBJECT"]) == ("Warning", "whatsappinstance/driver-davi")
    assert AGE.fullmatch(logged_out["LAST SEEN"])
    (wide,) = (e for e in rows(demo.kubectl("get", "events", "-o", "wide").stdout) if e["REASON"] == "LoggedOut")
    assert list(wide) == [
        "LAST SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "SUBOBJECT",
        "SOURCE",
        "MESSAGE",
        "FIRST SEEN",
        "COUNT",
        "NAME",
    ]
    assert (wide["SUBOBJECT"], wide["SOURCE"], wide["COUNT"]) == ("", f"whatsapp-operator, {socket.gethostname()}", "1")
    assert AGE.fullmatch(wide["FIRST SEEN"])
    assert wide["NAME"] in demo.kubectl("get", "events", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()


def test_version_is_the_one_the_project_targets(demo: Demo) -> None:
    server = json.loads(demo.kubectl("version", "-o", "json").stdout)["serverVersion"]  # no skew warning either
    assert (server["major"], server["minor"], server["gitVersion"]) == ("1", "32", "v1.32.0")


def test_what_is_not_served_is_refused_as_an_api_server_would(demo: Demo) -> None:
    raw = demo.kubectl("get", "--raw", "/openapi/v2", check=False)
    assert raw.returncode == 1
    assert raw.stderr == "Error from server (NotFound): the server could not find the requested resource\n"
    spec = "spec: {driverId: d1, phoneNumber: '+5511987654321'}"
    applied = demo.kubectl("apply", "--server-side", "-f", "-", stdin=manifest(spec, "server-side"), check=False)
    assert applied.returncode == 1
    assert "server-side apply (application/apply-patch+yaml) is not served by the emulated API server" in applied.stderr
    assert "use client-side kubectl apply" in applied.stderr


def test_validate_warn_drops_an_unknown_field_with_the_api_servers_warning(demo: Demo) -> None:
    spec = "spec: {driverId: d1, phoneNumber: '+5511987654321', colour: blue}"
    warned = demo.kubectl("apply", "--validate=warn", "--dry-run=server", "-f", "-", stdin=manifest(spec), check=False)
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr == 'Warning: unknown field "spec.colour"\n'
    assert warned.stdout == "whatsappinstance.whatsapp.evolution-operator.io/refused created (server dry run)\n"
