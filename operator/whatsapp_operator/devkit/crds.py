"""The project's CustomResourceDefinitions and example manifests, read from the repository's `crds/`
and `manifests/examples/`.

The YAML files are the single source of truth (kubectl, Kustomize, the emulator and the tests all
read them); this only finds and parses them. An installed wheel carries no `crds/`, so whoever runs
from one points WHATSAPP_OPERATOR_CRDS_DIR at a copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

CRDS_DIR_ENV = "WHATSAPP_OPERATOR_CRDS_DIR"
REPOSITORY = Path(__file__).resolve().parents[3]


def crds_dir() -> Path:
    override = os.environ.get(CRDS_DIR_ENV)
    return Path(override) if override else REPOSITORY / "crds"


def examples_dir() -> Path:
    return REPOSITORY / "manifests" / "examples"


def read_manifests(path: Path) -> list[dict[str, Any]]:
    """Every document of a (multi-document) YAML file, skipping empty ones as kubectl does."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def load_crds(directory: Path | None = None) -> list[dict[str, Any]]:
    directory = directory if directory is not None else crds_dir()
    crds = [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in read_manifests(path)
        if doc.get("kind") == "CustomResourceDefinition"
    ]
    if not crds:
        raise FileNotFoundError(f"No CustomResourceDefinition in {directory} (set {CRDS_DIR_ENV}?)")
    return crds


def load_examples(directory: Path | None = None) -> list[dict[str, Any]]:
    """The example manifests, files by name and each file's documents in order (a Secret before its user)."""
    directory = directory if directory is not None else examples_dir()
    return [doc for path in sorted(directory.glob("*.yaml")) for doc in read_manifests(path)]
