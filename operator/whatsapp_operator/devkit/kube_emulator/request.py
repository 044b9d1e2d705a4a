"""What a request asks besides its path: its headers, its write options, its JSON body."""


from __future__ import annotations

import contextvars
import copy
import dataclasses
from typing import Any

import kmock

from whatsapp_operator.devkit.kube_emulator.printing import wants_table
from whatsapp_operator.devkit.kube_emulator.schema import Body, Cause, api_error, go

PROTOBUF = "application/vnd.kubernetes.protobuf"


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    """What a write request asks besides its body, as the API server's CreateOptions, PatchOptions,
    UpdateOptions and DeleteOptions carry it."""

    strict: bool = False  # fieldValidation=Strict: an unknown field is refused, not dropped
    warn: bool = False  # fieldValidation=Warn or none: an unknown field is dropped with a Warning header
    dry_run: bool = False  # dryRun=All: admitted and answered as a real write, stored nowhere
    user_agent: str = ""  # who wrote, for the record of pruned fields


PLAIN_WRITE = WriteOptions()  # the emulator's own writes (CRDs, the default namespace)

# The warnings of the request being served, which its response sends as Warning headers; a context
# variable because they arise deep in the write path, whose callers answer with the object alone.
WARNINGS: contextvars.ContextVar[list[str]] = contextvars.ContextVar("warnings")


def header(request: kmock.Request, name: str) -> str | None:
    return next((value for key, value in request.headers.items() if key.lower() == name.lower()), None)


def write_options(request: kmock.Request, kind: str) -> WriteOptions:
    """The request's options; `kind` names them in the 422 for a dryRun other than All, as the API
    server's does. A DELETE with a body (kubectl's) carries its options there, not in the query."""
    if kind == "DeleteOptions" and isinstance(request.data, dict):
        dry_run = list(request.data.get("dryRun") or [])
    else:
        dry_run = request.url.query.getall("dryRun", [])
    if any(value != "All" for value in dry_run):
        values = ", ".join(go(value) for value in dry_run)
        message = f'Unsupported value: []string{{{values}}}: supported values: "All"'
        cause = Cause("dryRun", "FieldValueNotSupported", message)
        details = {"name": "", "group": "meta.k8s.io", "kind": kind, "causes": [dataclasses.asdict(cause)]}
        raise api_error(422, "Invalid", f'{kind}.meta.k8s.io "" is invalid: {cause}', **details)
    return WriteOptions(
        strict=request.params.get("fieldValidation") == "Strict",
        warn=request.params.get("fieldValidation", "Warn") in ("", "Warn"),  # the default since 1.23
        dry_run=bool(dry_run),
        user_agent=header(request, "User-Agent") or "",
    )


def tabular(request: kmock.Request) -> bool:
    return wants_table(header(request, "Accept") or "")


def included(request: kmock.Request) -> str | None:
    return request.params.get("includeObject")


def content_type(request: kmock.Request) -> str:
    return (header(request, "Content-Type") or "").split(";")[0].strip()


def json_body(request: kmock.Request) -> Any:
    """The request's JSON; kubectl's typed commands (`create namespace`, `create secret`) send
    protobuf, which the emulator does not decode: a 415 says so (`kubectl apply -f` sends JSON)."""
    if content_type(request) == PROTOBUF:
        raise api_error(
            415,
            "UnsupportedMediaType",
            f"the emulated API server takes JSON, not {PROTOBUF}: write this object with kubectl apply -f",
        )
    return request.data


def as_object(data: Any) -> Body:
    """A body shaped like an object (a JSON object with an object for metadata), or a 400."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata", {}), dict):
        raise api_error(400, "BadRequest", "the body must be a JSON object whose metadata is an object")
    return copy.deepcopy(data)
