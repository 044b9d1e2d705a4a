"""What the simulator records for inspection: API requests and accepted messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RecordedRequest:
    """One Evolution API request as the simulator saw it (the apikey header is never kept)."""

    at: float  # seconds since the simulator started
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: str  # global | token | invalid | missing
    instance: str | None = None
    status: int | None = None  # None: no answer (hung, or connection dropped by an outage)
    fault: str | None = None  # the injected fault that shaped the answer, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "body": self.body,
            "auth": self.auth,
            "instance": self.instance,
            "status": self.status,
            "fault": self.fault,
        }


@dataclass(slots=True)
class SentRecord:
    """A sendText the simulator accepted."""

    at: float
    instance: str
    number: str  # as given by the caller
    remote_jid: str
    text: str
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "instance": self.instance,
            "number": self.number,
            "remote_jid": self.remote_jid,
            "text": self.text,
            "id": self.id,
        }
