"""`whatsapp-operator demo` as a user runs it: a real process, real time, real Postgres.

Each run takes as long as its --duration plus a few seconds, so the scenarios are short: the
shortest clocks the CRD allows (probe every 5 s, stuck after 5 s) and events a few seconds apart.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from whatsapp_operator.core.phases import DB_STATUS, Phase
from whatsapp_operator.devkit.demo import BUILTIN_SCENARIO
from whatsapp_operator.devkit.simulator.instance import PAIRING_ALPHABET
from whatsapp_operator.http_server import free_port

DEMO = [str(Path(sys.executable).with_name("whatsapp-operator")), "demo"]
FAST = ["--probe-interval", "5", "--stuck-after", "5", "--liveness-interval", "5"]
PAIRING_CODE = re.compile(rf"(?<![{PAIRING_ALPHABET}])[{PAIRING_ALPHABET}]{{8}}(?![{PAIRING_ALPHABET}])")

# The built-in scenario with its events squeezed for the test (the built-in takes 90 s): the same
# instances, actions and fault, in the same order. test_the_short_copy_follows_the_builtin_scenario
# keeps the two in step. Probes come every 5 s from creation, and at once after each webhook: the
# drop's webhook at 6 s brings a probe into driver-ana's 3 s reconnect, the reconnect's webhook
# another one after it. driver-elena's checks (every 5 s) fail from 1 s on: Unresponsive by 12 s at
# the latest, and its text sent before the outage (one sent during it waits 30 s for its retry, past
# the end).
SHORT_BUILTIN = """
instances:
  - {name: driver-ana, start: open, number: "5511987654321", events: [{at: 6, action: drop, reason: 428}]}
  - {name: driver-bruno, start: pairing, number: "5521998765432", events: [{at: 6, action: pair}]}
  - {name: driver-carla, start: connecting, number: "5531991234567"}
  - {name: driver-davi, start: open, number: "5541992345678", events: [{at: 8, action: disconnect, reason: 401}]}
  - {name: driver-elena, start: open, number: "5551993456789", events: [{at: 1, action: zombie}]}
faults:
  - {from: 16, to: 24, kind: outage, mode: "503"}
"""

# Anything the simulator's format allows must work, names that are no DNS label included.
SMALL = """
instances:
  - name: "Motorista José #7"
    start: open
    events: [{at: 6, action: disconnect, reason: 401}]
  - {name: driver-b, start: pairing, events: [{at: 6, action: pair}]}
  - {name: stuck-one, start: connecting}
"""


def run_demo(tmp_path: Path, scenario: str, duration: float) -> dict[str, Any]:
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    command = [*DEMO, "--scenario", str(path), "--duration", str(duration), "--json", *FAST]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    assert done.returncode == 0, done.stderr
    state = state_dir_named(done.stderr)
    assert state.parent == Path(tempfile.gettempdir()), "without --state-dir, a temporary directory"
    assert not state.exists(), "removed at the end"
    assert done.stdout.count("\n") == 1, "stdout is one JSON object on one line, nothing else"
    summary = json.loads(done.stdout)
    assert isinstance(summary, dict)
    assert not PAIRING_CODE.search(done.stdout + done.stderr), "a pairing code was printed"
    return summary


def state_dir_named(stderr: str) -> Path:
    """The state directory the demo's first line names (`... kubectl --kubeconfig DIR/kubeconfig get wai`)."""
    first = stderr.splitlines()[0]
    match = re.fullmatch(r"demo: look around while it runs: kubectl --kubeconfig (\S+)/kubeconfig get wai", first)
    assert match, first
    return Path(match[1])


def db_status_of(phases: dict[str, int]) -> dict[str, int]:
    """What usuarios.whatsapp_status must say for these final phases."""
    counts = dict.fromkeys(("connected", "connecting", "disconnected"), 0)
    for phase, n in phases.items():
        counts[DB_STATUS[Phase(phase)] or "unset"] += n
    return counts


def assert_consistent(summary: dict[str, Any]) -> None:
    """What holds for any run: Postgres agrees with the API server, every webhook the receiver
    stored was processed, the notifications and the metrics say what the outbox and the cluster say."""
    assert summary["errors"] == []
    assert summary["db_status"] == db_status_of(summary["phases"])
    history = summary["phase_history"]
    assert collections.Counter(phases[-1] for phases in history.values()) == summary["phases"]
    assert summary["transitions"] == sum(len(phases) for phases in history.values()), "one history row per change"
    assert summary["status_patches"] >= summary["transitions"]
    decided = collections.Counter(d["instance"] for d in summary["notify_decisions"])
    for channel in ("whatsapp", "event", "callback"):
        delivered = [n["instance"] for n in summary["notifications"] if n["channel"] == channel]
        assert collections.Counter(delivered) == decided, f"one {channel} delivery per decision"
    assert {n["state"] for n in summary["notifications"]} <= {"delivered"}
    metrics = summary["metrics"]  # scraped from the operator's endpoint: it agrees with what was read back
    assert {phase: n for phase, n in metrics["instances"].items() if n} == summary["phases"]
    assert metrics["forced_logouts"] == sum(summary["forced_logouts"].values())
    sent = collections.Counter(n["channel"] for n in summary["notifications"])
    assert {channel: results["delivered"] for channel, results in metrics["notifications"].items()} == sent
    webhooks = summary["webhooks"]
    assert metrics["webhooks"].get("accepted", 0) == webhooks["received"]
    assert set(webhooks) == {"received", "processed", "dead"}
    assert webhooks["processed"] == webhooks["received"], "every stored webhook was processed before the end"
    assert webhooks["dead"] == 0


def test_a_small_scenario_with_any_instance_names(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, SMALL, duration=16)
    assert_consistent(summary)
    assert summary["instances"] == 3
    assert summary["phases"] == {"LoggedOut": 1, "Connected": 1, "Pairing": 1}
    assert summary["phase_history"] == {
        "Motorista José #7": ["Connected", "LoggedOut"],
        "driver-b": ["Pairing", "Connected"],
        "stuck-one": ["Connecting", "Pairing"],
    }
    assert summary["forced_logouts"] == {"stuck-one": 1}
    assert summary["notify_decisions"] == [{"instance": "Motorista José #7", "phase": "LoggedOut"}]
    assert summary["webhooks"]["received"] > 0, "the simulator's webhooks reached the operator's receiver"


def test_the_builtin_scenario_shows_each_behaviour_and_nothing_else(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, SHORT_BUILTIN, duration=38)
    assert_consistent(summary)
    assert summary["phases"] == {"Connected": 3, "Pairing": 1, "LoggedOut": 1}
    history = summary["phase_history"]
    for name, phases in history.items():
        assert "Unknown" in phases, f"{name} went Unknown during the outage"
        assert "Disconnected" not in phases, f"{name}: neither a transient drop nor an outage is a disconnection"
    assert set(history["driver-ana"]) <= {"Connected", "Connecting", "Unknown"}, "the transient drop"
    assert history["driver-ana"][:3] == ["Connected", "Connecting", "Connected"], (
        "the drop's webhook pulled a probe forward into the 3 s reconnect, the reconnect's webhook another"
    )
    assert history["driver-bruno"][:2] == ["Pairing", "Connected"], "paired"
    assert history["driver-carla"][:2] == ["Connecting", "Pairing"], "logged out and given a fresh code"
    assert history["driver-davi"][:2] == ["Connected", "LoggedOut"], "the terminal disconnect"
    assert history["driver-elena"][:2] == ["Connected", "Unresponsive"], "the zombie"
    assert history["driver-elena"][-1] == "Connected", "healed by its restart"
    assert summary["forced_logouts"] == {"driver-carla": 1}
    assert summary["restarts"] == {"driver-elena": 1}
    assert summary["notify_decisions"] == [
        {"instance": "driver-davi", "phase": "LoggedOut"},
        {"instance": "driver-elena", "phase": "Unresponsive"},
    ], "one decision per broken link: not for the drop, the outage or the never-connected"
    assert summary["notifications"] == [
        *(
            {"instance": "driver-davi", "channel": channel, "kind": "logged_out", "state": "delivered"}
            for channel in ("callback", "event", "whatsapp")
        ),
        *(
            {"instance": "driver-elena", "channel": channel, "kind": "disconnected", "state": "delivered"}
            for channel in ("callback", "event", "whatsapp")
        ),
    ]
    # Each scripted change sends webhooks (carla's forced logout and new code, the drop and its
    # reconnect, the pairing, the disconnect): all authenticated, stored and processed.
    assert summary["webhooks"]["received"] >= 5, summary["webhooks"]


def test_the_short_copy_follows_the_builtin_scenario() -> None:
    def shape(scenario: dict[str, Any]) -> tuple[Any, ...]:
        instances = [
            (i["name"], i["start"], i.get("number"), [(e["action"], e.get("reason")) for e in i.get("events", [])])
            for i in scenario["instances"]
        ]
        faults = [(f["kind"], f.get("mode")) for f in scenario["faults"]]
        return instances, faults

    assert shape(yaml.safe_load(SHORT_BUILTIN)) == shape(yaml.safe_load(BUILTIN_SCENARIO.read_text()))


def postgres_processes(under: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(under) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A $TMPDIR short enough for Postgres' socket path (at most 107 bytes), unlike pytest's."""
    path = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ctrl_c_stops_and_removes_everything(tmp_path: Path, short_tmpdir: Path) -> None:
    """Also: the operator's metrics are served where --metrics-listen says."""
    temp = short_tmpdir
    stderr = tmp_path / "stderr"
    metrics = f"127.0.0.1:{free_port()}"
    command = [*DEMO, "--json", "--duration", "120", "--metrics-listen", metrics, *FAST]
    with stderr.open("w") as err:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "TMPDIR": str(temp)}
        )
    try:
        deadline = time.monotonic() + 30
        while "operator running" not in stderr.read_text():
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the operator never started"
            time.sleep(0.2)
        assert postgres_processes(temp), "Postgres runs with its data under $TMPDIR"
        scraped = httpx.get(f"http://{metrics}/metrics", timeout=10).raise_for_status().text
        assert "whatsapp_operator_build_info{" in scraped
        assert list(temp.glob("whatsapp-operator-pg-*"))
        state = state_dir_named(stderr.read_text())
        assert (state.parent, (state / "kubeconfig").exists()) == (temp, True), "a temporary state directory"
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr.read_text()
    assert stdout == "", "no JSON for an interrupted run"
    assert "interrupted" in stderr.read_text()
    assert not postgres_processes(temp), "Postgres was stopped"
    # (the wheel keeps its lock file in runtime-0/ there, shared by every embedded server)
    assert list(temp.glob("whatsapp-operator-pg-*")) == [], "its data directory was removed"
    assert not state.exists(), "and the state directory it made"


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--probe-interval", "4"], "at least 5"),
        (["--stuck-after", "2"], "at least 5"),
        (["--liveness-interval", "-1"], "0 or more"),
        (["--duration", "0"], "positive"),
    ],
)
def test_flags_below_what_the_crd_accepts_are_refused(flags: list[str], complaint: str) -> None:
    done = subprocess.run([*DEMO, *flags], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert complaint in done.stderr


def test_an_invalid_scenario_is_refused_with_its_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("instances: [{name: x, events: [{at: 1, action: explode}]}]\n")
    done = subprocess.run([*DEMO, "--scenario", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "instances[0].events[0]" in done.stderr
    assert done.stdout == ""
