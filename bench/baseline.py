"""The original plan's Phase 2 health check (`whatsapp-health-check-v2.job.ts`), ported faithfully to
Python, as the baseline the operator's probe round is compared with.

Kept from the original: one instance after the other; up to 3 attempts per instance with a 100 ms,
200 ms backoff; its circuit breaker (5 failures, 60 s, checked once at the start of the run); the
state mapping and the comparison with the stored status. Left out, which only flatters the baseline:
the Supabase query for the connected users (one query per run; the rows are passed in) and the DB
update and notification on a discrepancy (a steady round has none; they are counted instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import httpx

CONNECTED, CONNECTING, DISCONNECTED = "connected", "connecting", "disconnected"


class CircuitBreaker:
    """The original's: counts failures, opens at 5, forgets them 60 s after the last one."""

    threshold = 5
    timeout = 60.0

    def __init__(self) -> None:
        self.failure_count = 0
        self.last_failure_time = 0.0

    def is_open(self) -> bool:
        if self.failure_count >= self.threshold:
            if time.monotonic() - self.last_failure_time > self.timeout:
                self.failure_count = 0
                return False
            return True
        return False

    def record_failure(self) -> None:
        self.failure_count += 1
        self.last_failure_time = time.monotonic()

    def record_success(self) -> None:
        self.failure_count = 0


@dataclasses.dataclass
class Usuario:
    id: str
    whatsapp_status: str = CONNECTED


@dataclasses.dataclass
class HealthCheckResult:
    total_checked: int = 0
    fixed: int = 0
    errors: int = 0
    details: list[dict[str, Any]] = dataclasses.field(default_factory=list)


async def get_instance_status(http: httpx.AsyncClient, instance_name: str) -> dict[str, Any]:
    """whatsappService.getInstanceStatus: Evolution's connectionState, `{"instance": {"state": ...}}`."""
    response = await http.get(f"/instance/connectionState/{instance_name}")
    response.raise_for_status()
    instance: dict[str, Any] = response.json()["instance"]
    return instance


async def health_check(http: httpx.AsyncClient, breaker: CircuitBreaker, usuarios: list[Usuario]) -> HealthCheckResult:
    result = HealthCheckResult()
    if breaker.is_open():
        return result
    result.total_checked = len(usuarios)
    for usuario in usuarios:
        instance_name = usuario.id  # whatsappService.getInstanceName: the operator's default name too
        try:
            api_status: dict[str, Any] | None = None
            last_error: Exception | None = None
            for attempt in range(3):
                try:
                    api_status = await get_instance_status(http, instance_name)
                    breaker.record_success()
                    break
                except Exception as err:
                    last_error = err
                    if attempt < 2:
                        await asyncio.sleep(0.1 * 2**attempt)
            if not api_status:
                raise last_error or RuntimeError("Falha ao obter status após 3 tentativas")
            real_status = {"open": CONNECTED, "connecting": CONNECTING}.get(api_status.get("state"), DISCONNECTED)
            if real_status != usuario.whatsapp_status:
                result.fixed += 1
                result.details.append({"usuarioId": usuario.id, "newStatus": real_status})
        except Exception:
            result.errors += 1
            breaker.record_failure()
    return result


async def timed_round(base_url: str, api_key: str, names: list[str]) -> dict[str, Any]:
    """One run of the original job over `names`, on a keep-alive client (axios' Node default)."""
    async with httpx.AsyncClient(base_url=base_url, headers={"apikey": api_key}, timeout=5.0) as http:
        started = time.monotonic()
        result = await health_check(http, CircuitBreaker(), [Usuario(name) for name in names])
        seconds = time.monotonic() - started
    return {
        "instances_run": len(names),
        "seconds": round(seconds, 3),
        "per_instance_ms": round(1000 * seconds / len(names), 2),
        "errors": result.errors,
        "discrepancies": result.fixed,
    }
