"""The status API's answer about one driver: the shape the application's `useWhatsappStatus` hook
reads (the original plan, Phase 5), made from the operator's state of the driver's instance. Pure."""

from __future__ import annotations

from typing import Any

from whatsapp_operator.core.phases import HOOK_STATE
from whatsapp_operator.core.state import InstanceState
from whatsapp_operator.core.status import rfc3339


def driver_status(instance_name: str, state: InstanceState) -> dict[str, Any]:
    """`statusReason` is Evolution's reason code as `.status` has it; `updatedAt` the last phase
    transition (null before the first). Nothing secret: no pairing code, QR or phone number."""
    return {
        "instanceName": instance_name,
        "state": str(HOOK_STATE[state.phase]),
        "statusReason": state.status_reason,
        "phase": str(state.phase),
        "updatedAt": rfc3339(state.last_transition),
    }
