"""What a webhook tells about an instance that a probe could not see yet.

`refused` (the QR limit, reason 428) exists only in webhooks, and the API says `close` without a reason
after it: the webhook is the observation. `LOGOUT_INSTANCE` and `REMOVE_INSTANCE` are delivered before
Evolution acts on them (it awaits their delivery, contract 2.5), so a probe at once may still find the
instance as it was: they ask for a closer look, a few probes seconds apart, which see what Evolution
did. Every other event pulls the instance's next probe forward.
"""

from __future__ import annotations

from typing import Any

from whatsapp_operator.core.state import Observation, Outcome

QR_LIMIT_REASON = 428
CLOSER_LOOK = frozenset({"logout.instance", "remove.instance"})


def news(event: str, payload: dict[str, Any]) -> Observation | None:
    """The observation a stored webhook (`payload`, the inbox's form of it) stands for, if any."""
    data = payload.get("data")
    if event == "connection.update" and isinstance(data, dict) and data.get("state") == "refused":
        reason = data.get("statusReason")
        reason = reason if isinstance(reason, int) else QR_LIMIT_REASON
        return Observation(Outcome.STATE, state="refused", reason=reason)
    return None
