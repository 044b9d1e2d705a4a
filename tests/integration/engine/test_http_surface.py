"""Property-based tests of the operator's HTTP server with schemathesis, against the OpenAPI document
it serves: the status API and the webhook receiver, on the real operator with Postgres (so that the
webhook routes exist). Every answer to valid and to invalid requests, with and without credentials:
no 5xx, a documented status, content type, headers and body, and invalid data refused with a 4xx.

The operator runs on a loop of its own in a thread, since schemathesis' client is synchronous. A
bounded number of examples per operation and mode, derandomized: the same requests each run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.loop_thread import LoopThread
from tests.support.operator_harness import (
    STATUS_API_TOKEN,
    WEBHOOK_SECRET,
    environment,
    instance_manifest,
    wait_phase,
)
from tests.support.webhook_samples import token
from whatsapp_operator.status_api import OPENAPI_PATH

EXAMPLES = 40  # per operation, mode and credentials
KNOWN_EXAMPLES = 5  # the same with the driverId of an existing driver
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclasses.dataclass
class Served:
    url: str = ""
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)


@pytest.fixture
def served(pg_url: str) -> Iterator[Served]:
    """The operator with Postgres and its webhooks on, a Connected driver `ana` and two instances of
    the driver `dup`, until the test ends."""
    served = Served()

    async def main(stop: asyncio.Event) -> None:
        async with environment(database_url=pg_url, webhooks=True, status_api=True) as (kube, sim, runtime):
            sim.add_instance("ana", "open")
            await kube.create(instance_manifest("ana"))
            await kube.create(instance_manifest("dup-1", driver_id="dup"))
            await kube.create(instance_manifest("dup-2", driver_id="dup"))
            await wait_phase(kube, "ana", "Connected", within=30)
            assert runtime.http is not None
            assert runtime.http.url is not None
            served.url = runtime.http.url
            served.ready.set()
            await stop.wait()

    thread = LoopThread(main, "operator")
    thread.start()
    if not served.ready.wait(60):
        thread.stop()
        pytest.fail("the operator did not start")
    yield served
    thread.stop()


def credentials(path: str) -> dict[str, str]:
    """What the application (the status API) or Evolution (the webhooks) would send."""
    if path.startswith("/api/v1/drivers/"):
        return {"Authorization": f"Bearer {STATUS_API_TOKEN}"}
    if path.startswith("/webhooks/"):
        return {"Authorization": f"Bearer {token(WEBHOOK_SECRET)}"}
    return {}


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # schemathesis' own strategies
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("authenticated", [True, False], ids=["credentials", "none"])
def test_every_answer_matches_the_document(served: Served, mode: GenerationMode, authenticated: bool) -> None:
    document = requests.get(served.url + OPENAPI_PATH, timeout=10).json()
    assert {"/webhooks/evolution", "/webhooks/evolution/{event}"} <= set(document["paths"])
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode.is_negative and not (any(operation.iter_parameters()) or operation.body):
            continue  # nothing in it can be invalid (the OpenAPI document's GET)
        headers = credentials(operation.path) if authenticated else {}
        exchange(served.url, session, operation.as_strategy(generation_mode=mode), headers, EXAMPLES)
        if "driverId" in operation.path_parameters:  # drivers that exist: a 200, and a 409 for `dup`'s two
            for driver in ("ana", "dup"):
                known = operation.as_strategy(generation_mode=mode, path_parameters={"driverId": driver})
                exchange(served.url, session, known, headers, KNOWN_EXAMPLES)


def exchange(
    url: str,
    session: requests.Session,
    cases: SearchStrategy[schemathesis.Case],
    headers: dict[str, str],
    examples: int,
) -> None:
    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=cases)
    def one(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=url, session=session, headers=headers, checks=CHECKS)

    one()
