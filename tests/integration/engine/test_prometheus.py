"""The alert rules and the dashboard, checked by the field's own tools: promtool (the rule unit tests
in tests/prometheus/), and a real Prometheus (Debian's) that scrapes the real operator while it
handles a logout and a stuck instance. Neither is skipped: `make test` installs them."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.metrics import scrape
from tests.support.operator_harness import environment, instance_manifest, wait_phase
from tests.support.pg import eventually
from whatsapp_operator.devkit.manifests import notifier_spec
from whatsapp_operator.http_server import free_port

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "manifests" / "prometheus" / "rules.yaml"
DASHBOARD = ROOT / "manifests" / "grafana" / "whatsapp-operator.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
CASES = sorted((ROOT / "tests" / "prometheus").glob("*.test.yaml"))


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["spec"]["groups"] for rule in group["rules"]]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The PrometheusRule's groups as the plain rule file promtool and Prometheus read, beside the cases."""
    groups = yaml.safe_load(RULES.read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    for case in CASES:
        shutil.copy(case, tmp_path / case.name)
    return tmp_path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules_and_every_case_passes(rules_dir: Path) -> None:
    checked = promtool("check", "rules", "rules.yaml", cwd=rules_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout
    tested = promtool("test", "rules", *(case.name for case in CASES), cwd=rules_dir)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_documented_and_tested_firing_and_not_firing() -> None:
    anchors = {_anchor(line) for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    cases = [test for case in CASES for test in yaml.safe_load(case.read_text())["tests"]]
    checks = [check for test in cases for check in test.get("alert_rule_test", [])]
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        page, _, anchor = alert["annotations"]["runbook_url"].rpartition("#")
        assert page.endswith("/blob/main/docs/runbooks.md"), f"{name}: the runbook_url is not docs/runbooks.md"
        assert anchor in anchors, f"{name}: no runbook section"
        outcomes = {bool(check["exp_alerts"]) for check in checks if check["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: a promtool case must show it firing and not firing"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading[3:].strip().lower()).replace(" ", "-")


@pytest.fixture
async def prometheus(rules_dir: Path) -> AsyncIterator[tuple[Path, str]]:
    """Debian's Prometheus on a free loopback port, its configuration written by the test (which
    names the operator's endpoint and reloads it)."""
    port = free_port()
    config = rules_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}}))
    process = await asyncio.create_subprocess_exec(
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={rules_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            await eventually(lambda: _answers(client, f"{url}/-/ready"), within=30)
        yield config, url
    finally:
        process.terminate()
        await process.wait()


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url)).status_code == 200
    except httpx.TransportError:
        return False


async def query(client: httpx.AsyncClient, url: str, expr: str) -> list[dict[str, Any]]:
    answer = (await client.get(f"{url}/api/v1/query", params={"query": expr})).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return list(answer["data"]["result"])


async def scalar(client: httpx.AsyncClient, url: str, expr: str) -> float | None:
    result = await query(client, url, expr)
    return float(result[0]["value"][1]) if result else None


async def test_a_real_prometheus_scrapes_the_operator_and_the_dashboard_reads_it(
    prometheus: tuple[Path, str], pg_url: str
) -> None:
    config, url = prometheus
    fast = {"probe": {"intervalSeconds": 5}, "remediation": {"stuckAfterSeconds": 5}}
    notifier = notifier_spec("platform-sender")  # davi's logout makes a message due: the sender is looked at
    setup = environment(database_url=pg_url, webhooks=True, notifier=notifier, **fast)
    async with setup as (kube, sim, runtime), httpx.AsyncClient() as client:
        sim.add_instance("platform-sender", "open")
        assert runtime.metrics_url is not None
        target = runtime.metrics_url.removeprefix("http://").removesuffix("/metrics")
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(config.parent / "rules.yaml")],
                    "scrape_configs": [{"job_name": "whatsapp-operator", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        (await client.post(f"{url}/-/reload")).raise_for_status()
        for name, start in (("ana", "open"), ("davi", "open"), ("carla", "connecting")):
            sim.add_instance(name, start)
            await kube.create(instance_manifest(name))
        await wait_phase(kube, "davi", "Connected", within=30)
        sim.act("davi", "disconnect", 401)
        await wait_phase(kube, "davi", "LoggedOut", within=30)
        await wait_phase(kube, "carla", "Pairing", within=30)  # logged out by the operator, re-paired

        logged_out = 'sum(whatsapp_operator_instances{phase="LoggedOut"})'
        await eventually(lambda: _equals(client, url, logged_out, 1.0), within=60)
        # carla, stuck 5 s, is forced out once; then she pairs with fresh codes and is never forced again.
        forced = {n: (kube.emulator.read("wai", n) or {})["status"].get("forcedLogouts", 0) for n in ("ana", "carla")}
        assert forced == {"ana": 0, "carla": 1}
        forced_total = "sum(whatsapp_operator_forced_logouts_total)"
        await eventually(lambda: _equals(client, url, forced_total, 1.0), within=10)
        unhealthy = 'sum(whatsapp_operator_instances_health{health="unhealthy"})'
        await eventually(lambda: _equals(client, url, unhealthy, 1.0), within=10)  # davi; carla is pairing
        assert await scalar(client, url, 'whatsapp_operator_breaker_state{state="Closed"}') == 1.0
        assert await scalar(client, url, "count(whatsapp_operator_instances)") == 10.0, "every phase, 0 included"
        await eventually(lambda: _equals(client, url, "whatsapp_operator_sender_ready", 1.0), within=30)
        delivered = 'sum(whatsapp_operator_notifications_total{result="delivered"})'
        await eventually(lambda: _equals(client, url, delivered, 2.0), within=30)  # the text and the Event
        accepted = 'sum(whatsapp_operator_webhooks_total{result="accepted"})'
        assert (await scalar(client, url, accepted) or 0) >= 1.0, "Evolution's webhooks about davi and carla"

        # 1 of 2 probed instances unhealthy: the share alert is pending (it fires after 10 minutes).
        await eventually(lambda: _alerts(client, url, "WhatsAppInstancesUnhealthy"), within=30)
        (share,) = await _alerts(client, url, "WhatsAppInstancesUnhealthy")
        assert share["state"] in {"pending", "firing"}
        assert share["labels"]["server"] == "default/default"

        exported = (await scrape(runtime)).names()
        for panel in json.loads(DASHBOARD.read_text())["panels"]:
            for target_ in panel["targets"]:
                await query(client, url, target_["expr"])  # parses and evaluates
                used = set(re.findall(r"whatsapp_operator_[a-z_]+", target_["expr"]))
                assert used <= exported, f"{panel['title']}: {used - exported} is not exported"


async def _alerts(client: httpx.AsyncClient, url: str, name: str) -> list[dict[str, Any]]:
    found = (await client.get(f"{url}/api/v1/alerts")).json()["data"]["alerts"]
    return [alert for alert in found if alert["labels"]["alertname"] == name]


async def _equals(client: httpx.AsyncClient, url: str, expr: str, value: float) -> bool:
    return await scalar(client, url, expr) == value
