"""What the operator logs, with logging set up as `whatsapp-operator run` sets it up: nothing per probe
at the default level, and never a secret or a driver's phone number, even with `--verbose`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from tests.support.operator_harness import (
    API_KEY,
    WEBHOOK_SECRET,
    IssuedCodes,
    environment,
    instance_manifest,
    requests_to,
    wait_phase,
)
from whatsapp_operator.engine import logs

pytestmark = pytest.mark.looptime

PHONE = "(21) 99123-4567"
PHONE_FORMS = ("5521991234567", "21991234567", "991234567", "99123-4567")


@pytest.fixture
def operator_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The levels `run` sets (the test picks verbose or not), restored afterwards; caplog's handler,
    with the filter `run` puts on kopf's, stands in for it on the root logger."""
    chatty = {name: logging.getLogger(name) for name in logs.CHATTY}
    saved = {name: logger.level for name, logger in chatty.items()}
    redactor = logs.Redactor()
    caplog.handler.addFilter(redactor)
    yield caplog
    caplog.handler.removeFilter(redactor)
    for name, level in saved.items():
        chatty[name].setLevel(level)


async def test_a_steady_fleet_logs_nothing_at_the_default_level(operator_logging: pytest.LogCaptureFixture) -> None:
    operator_logging.set_level(logging.INFO)  # kopf.configure's root level without --verbose
    logs.set_levels(verbose=False)
    async with environment() as (kube, simulator, _operator):
        names = [f"steady-{i:02d}" for i in range(40)]
        for name in names:
            simulator.add_instance(name, "open")
            await kube.create(instance_manifest(name, phone=PHONE))
        for name in names:
            await wait_phase(kube, name, "Connected")
        await asyncio.sleep(35)  # the server's counts settle
        operator_logging.clear()
        probes = len(requests_to(simulator, "GET", "/instance/connectionState/"))
        await asyncio.sleep(300)  # ten rounds
        probes = len(requests_to(simulator, "GET", "/instance/connectionState/")) - probes
        records = list(operator_logging.records)  # taken before the stop, which kopf logs at INFO
    assert probes >= len(names) * 9, "every instance was probed every round"
    logged = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records if r.levelno >= logging.INFO]
    assert logged == [], "a steady round logs nothing"


async def test_no_log_record_carries_a_secret_or_a_phone_number(operator_logging: pytest.LogCaptureFixture) -> None:
    """Verbose, so that every record of every library is made: pairing by code (the phone goes to
    Evolution in a query string), a forced logout, a logout by the phone, an Evolution outage."""
    operator_logging.set_level(logging.DEBUG)
    logs.set_levels(verbose=True)
    async with environment() as (kube, simulator, _operator):
        codes = IssuedCodes(simulator)
        await kube.create(instance_manifest("pairs", phone=PHONE))
        await wait_phase(kube, "pairs", "Pairing")
        simulator.act("pairs", "pair")
        await wait_phase(kube, "pairs", "Connected")
        simulator.add_instance("stuck", "open")
        await kube.create(instance_manifest("stuck", phone=PHONE))
        await wait_phase(kube, "stuck", "Connected")
        simulator.act("stuck", "stick")
        await wait_phase(kube, "stuck", "Pairing")
        simulator.act("pairs", "disconnect", 401)
        await wait_phase(kube, "pairs", "LoggedOut")
        await simulator.stop()
        await asyncio.sleep(120)
        secrets = {API_KEY, WEBHOOK_SECRET, *PHONE_FORMS, *codes.secrets()}
        secrets |= {instance.token for instance in simulator.instances.values()}
    assert codes.secrets(), "pairing codes were issued"
    assert len(operator_logging.records) > 100, "verbose logging was on"
    requests = [r for r in operator_logging.records if r.getMessage().startswith("GET /instance/connect/pairs")]
    assert requests, "the client's request lines were logged"
    for record in operator_logging.records:
        text = f"{record.getMessage()} {record.exc_text or ''} {record.__dict__}"
        leaked = sorted(s for s in secrets if s and s in text)
        assert not leaked, f"{record.name}: {record.getMessage()!r} carries {leaked}"
