"""The overlays as `kubectl kustomize` renders them, for the tests of tests/manifests/."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@functools.cache
def render_text(overlay: str) -> str:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(overlay)) if doc]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The only object of `kind` (named `name`, with the hash suffix of a generated one, if given)."""
    named = re.compile(re.escape(name or "") + r"(-[a-z0-9]{10})?")
    found = [o for o in objects if o["kind"] == kind and (name is None or named.fullmatch(o["metadata"]["name"]))]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]
