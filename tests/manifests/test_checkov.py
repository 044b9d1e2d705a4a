"""checkov's Kubernetes checks on the rendered prod overlay: every one passes or is skipped, and each
skip is an annotation the prod kustomization adds with its reason. checkov runs from the tools
virtualenv that `make test` creates (Makefile, TOOLS_VENV), never from the operator's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.manifests.render import ROOT, needs_kubectl, render_text

CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv-tools" / "bin" / "checkov"))

pytestmark = [
    needs_kubectl,
    pytest.mark.skipif(not CHECKOV.exists(), reason=f"no {CHECKOV}: `make test` installs checkov there"),
]


def test_checkov_passes_on_the_prod_overlay(tmp_path: Path) -> None:
    rendered = tmp_path / "prod.yaml"
    rendered.write_text(render_text("prod"))
    done = subprocess.run(
        [str(CHECKOV), "--framework", "kubernetes", "--file", str(rendered), "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert failed == [], done.stderr
    assert report["summary"]["passed"] > 100  # the checks ran on every object
    kustomization = (ROOT / "manifests" / "overlays" / "prod" / "kustomization.yaml").read_text()
    for check in results["skipped_checks"]:
        reason = check["check_result"]["suppress_comment"]
        assert len(reason) > 20, check["check_id"]
        assert f"{check['check_id']}={reason}" in kustomization
    assert done.returncode == 0
