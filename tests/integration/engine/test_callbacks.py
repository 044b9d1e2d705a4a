"""The application's callback over real HTTP: signed so that `standardwebhooks` verifies it, and each
answer turned into the outcome the notifier acts on."""

from __future__ import annotations

import base64
import datetime

import httpx
import pytest
import standardwebhooks

from whatsapp_operator import callbacks
from whatsapp_operator.core.notifications import Delivered, Fail, Retry
from whatsapp_operator.devkit.simulator.receiver import WebhookSink

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


async def post(sink: WebhookSink) -> object:
    async with httpx.AsyncClient() as client:
        return await callbacks.post(
            client, f"{sink.url}/hook", callbacks.signing_key(SECRET), "notification-7", {"driverId": "d1"}, NOW
        )


async def test_a_2xx_is_delivered_and_the_signature_verifies() -> None:
    async with WebhookSink() as sink:
        assert await post(sink) == Delivered(NOW)
    (received,) = sink.posts
    assert standardwebhooks.Webhook(SECRET).verify(received.raw, received.headers) == {"driverId": "d1"}
    assert received.headers["webhook-id"] == "notification-7"
    tampered = received.raw.replace(b"d1", b"d2")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(tampered, received.headers)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(400, Fail), (401, Fail), (404, Fail), (410, Fail), (408, Retry), (429, Retry), (500, Retry), (503, Retry)],
)
async def test_answers_are_delivered_failed_or_retried(status: int, outcome: type) -> None:
    async with WebhookSink(default=status) as sink:
        assert isinstance(await post(sink), outcome)


async def test_no_answer_is_retried() -> None:
    async with WebhookSink() as sink:
        url = sink.url
    async with httpx.AsyncClient() as client:
        result = await callbacks.post(client, f"{url}/hook", callbacks.signing_key(SECRET), "n-1", {}, NOW)
    assert isinstance(result, Retry)


def test_a_secret_that_is_not_whsec_base64_is_refused() -> None:
    with pytest.raises(callbacks.CallbackSecretInvalid):
        callbacks.signing_key("whsec_not base64!")
