"""`whatsapp-operator simulator` as a real process: it serves the contract over HTTP and stops cleanly."""

from __future__ import annotations

import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_line(process: subprocess.Popen[str], needle: str) -> str:
    """Read the process's stdout until a line contains `needle` (no polling: select on the pipe)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while selector.select(STARTUP_TIMEOUT):
            line = process.stdout.readline()
            if not line:
                break
            if needle in line:
                return line
    raise AssertionError(f"the simulator never printed {needle!r} (exit code {process.poll()})")


@pytest.fixture
def simulator_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    command = [sys.executable, "-m", "whatsapp_operator", "simulator", "--port", str(port), "--api-key", "k"]
    process = subprocess.Popen(
        [*command, "--connect-wait", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        wait_for_line(process, "listening on")
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_simulator_command_serves_the_api_and_stops_cleanly(
    simulator_process: tuple[subprocess.Popen[str], str], stop_signal: signal.Signals
) -> None:
    process, base_url = simulator_process
    with httpx.Client(base_url=base_url, headers={"apikey": "k"}, timeout=10) as api:
        created = api.post("/instance/create", json={"instanceName": "drv-1", "integration": "WHATSAPP-BAILEYS"})
        connect = api.get("/instance/connect/drv-1", params={"number": "5511987654321"})
        state = api.get("/instance/connectionState/drv-1")
        unauthorized = api.get("/instance/connectionState/drv-1", headers={"apikey": "nope"})
        admin = api.get("/_sim/requests")

    process.send_signal(stop_signal)
    exit_code = process.wait(timeout=STARTUP_TIMEOUT)

    assert created.status_code == 201
    assert created.json()["instance"]["status"] == "close"
    assert connect.status_code == 200
    assert "count" in connect.json()  # with no wait, the first QR may not be out yet, as with Evolution
    assert state.json() == {"instance": {"instanceName": "drv-1", "state": "connecting"}}
    assert unauthorized.status_code == 401
    assert [request["status"] for request in admin.json()] == [201, 200, 200, 401]
    assert exit_code == 0
    assert "simulator stopped" in (process.stdout.read() if process.stdout else "")


def test_an_invalid_scenario_stops_the_command_with_a_clear_message(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("instances:\n  - {name: a, start: nowhere}\n")

    result = subprocess.run(
        [sys.executable, "-m", "whatsapp_operator", "simulator", "--api-key", "k", "--scenario", str(scenario)],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )

    assert result.returncode == 2
    assert "instances[0].start: 'nowhere' is not one of" in result.stderr
