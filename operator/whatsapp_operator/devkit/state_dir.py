"""The demo's state directory: how a user (or a test) reaches what the demo runs, while it runs.

`kubeconfig` points kubectl at the emulated API server; `endpoints.json` is one object naming every
endpoint (keys in docs/demo.md; a part that does not exist yet has no key). Both are written once
everything has started and removed at the end; the directory itself is removed only if the demo
made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

KUBECONFIG = "kubeconfig"
ENDPOINTS = "endpoints.json"
CONTEXT = "whatsapp-operator-demo"


class StateDir:
    def __init__(self, path: Path | None) -> None:
        self._made = path is None or not path.exists()
        self.path = Path(tempfile.mkdtemp(prefix="whatsapp-operator-demo-")) if path is None else path
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def kubeconfig(self) -> Path:
        return self.path / KUBECONFIG

    def write(self, kubernetes: str, endpoints: dict[str, Any]) -> None:
        """The kubeconfig for `kubernetes` (the API server's URL) and the endpoints, each written
        whole under a temporary name first: a reader never sees half a file."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {"server": kubernetes}}],
            "users": [{"name": CONTEXT, "user": {}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}}],
            "current-context": CONTEXT,
        }
        self._replace(KUBECONFIG, yaml.safe_dump(config, sort_keys=False))
        self._replace(ENDPOINTS, json.dumps({"kubernetes": kubernetes, **endpoints}, indent=2) + "\n")

    def remove(self) -> None:
        for name in (KUBECONFIG, ENDPOINTS):
            (self.path / name).unlink(missing_ok=True)
        if self._made:
            with contextlib.suppress(OSError):  # the user left files of their own there
                self.path.rmdir()

    def _replace(self, name: str, text: str) -> None:
        partial = self.path / f".{name}.partial"
        partial.write_text(text)
        os.chmod(partial, 0o600)  # the database URL carries its password, and the status API's token
        partial.replace(self.path / name)
