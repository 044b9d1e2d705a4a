"""Evolution's webhook envelope: what is accepted, what the operator acts on, and what may be stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.webhook_samples import INSTANCE_TOKEN, PAIRING_CODE, QR_IMAGE, QR_PAYLOAD, envelope, qrcode_updated
from whatsapp_operator.webhooks.envelope import MAX_INSTANCE_NAME, InvalidWebhook, parse, path_suffix


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


# ------------------------------------------------------------------------------------------ valid envelopes


def test_connection_update_is_parsed_with_its_state() -> None:
    parsed = parse(body(envelope(data={"instance": "drv-1", "state": "refused", "statusReason": 428})))

    assert parsed.event == "connection.update"
    assert parsed.instance == "drv-1"
    assert parsed.state == "refused"
    assert parsed.date_time == "2025-10-21T10:00:00.000Z"
    assert parsed.server_url == "https://evolution.example"
    assert parsed.relevant


def test_qrcode_updated_is_parsed_and_has_no_state() -> None:
    parsed = parse(body(qrcode_updated()))

    assert parsed.event == "qrcode.updated"
    assert parsed.state is None
    assert parsed.relevant


def test_qrcode_updated_at_the_limit_has_no_qrcode_key_and_is_still_valid() -> None:
    limit = {"message": "QR code limit reached, please login again", "statusCode": 500}
    parsed = parse(body(envelope("qrcode.updated", limit)))

    assert parsed.stored()["data"] == limit


def test_status_instance_is_parsed() -> None:
    data = {
        "instance": "drv-1",
        "status": "closed",
        "disconnectionAt": "2025-10-21T10:00:00.000Z",
        "disconnectionReasonCode": 401,
        "disconnectionObject": "{}",
    }
    parsed = parse(body(envelope("status.instance", data)))

    assert (parsed.event, parsed.data, parsed.relevant) == ("status.instance", data, True)


@pytest.mark.parametrize("event", ["logout.instance", "remove.instance"])
def test_events_with_null_data_are_valid(event: str) -> None:
    assert parse(body(envelope(event, None))).relevant


def test_non_string_date_time_and_server_url_are_dropped_not_refused() -> None:
    parsed = parse(body(envelope(date_time=1761040800, server_url=None)))

    assert (parsed.date_time, parsed.server_url) == (None, None)


@pytest.mark.parametrize("event", ["messages.upsert", "send.message", "presence.update", "application.startup"])
def test_message_and_other_events_are_valid_but_irrelevant(event: str) -> None:
    parsed = parse(body(envelope(event, {"key": {"id": "ABC"}, "message": {"conversation": "oi"}})))

    assert not parsed.relevant


# ------------------------------------------------------------------------------------------ refused


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[]", "JSON object"),
        (b'"connection.update"', "JSON object"),
        (b"null", "JSON object"),
    ],
)
def test_bodies_that_are_not_json_objects_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidWebhook, match=reason):
        parse(raw)


@pytest.mark.parametrize(
    "event", [None, "", 42, "CONNECTION_UPDATE", "connection.update ", "connection..update", "x/y"]
)
def test_bad_event_names_are_refused(event: Any) -> None:
    with pytest.raises(InvalidWebhook, match="'event'"):
        parse(body(envelope(event=event)))


def test_a_missing_event_is_refused() -> None:
    raw = envelope()
    del raw["event"]
    with pytest.raises(InvalidWebhook, match="'event'"):
        parse(body(raw))


@pytest.mark.parametrize("instance", [None, "", 7, ["drv-1"], "x" * (MAX_INSTANCE_NAME + 1)])
def test_missing_empty_or_too_long_instances_are_refused(instance: Any) -> None:
    with pytest.raises(InvalidWebhook, match="'instance'"):
        parse(body(envelope(instance=instance)))


def test_an_instance_name_at_the_limit_is_accepted() -> None:
    assert parse(body(envelope(instance="x" * MAX_INSTANCE_NAME))).instance == "x" * MAX_INSTANCE_NAME


def test_an_absent_instance_is_refused() -> None:
    raw = envelope()
    del raw["instance"]
    with pytest.raises(InvalidWebhook, match="'instance'"):
        parse(body(raw))


@pytest.mark.parametrize(
    "data",
    [None, {}, {"state": None}, {"state": "OPEN"}, {"state": "opened"}, {"state": 1}, ["open"], "open"],
)
def test_connection_update_without_a_valid_state_is_refused(data: Any) -> None:
    raw = envelope()
    raw["data"] = data
    with pytest.raises(InvalidWebhook, match=r"data\.state"):
        parse(body(raw))


@pytest.mark.parametrize("state", ["open", "connecting", "close", "refused"])
def test_every_connection_state_is_accepted(state: str) -> None:
    assert parse(body(envelope(data={"instance": "drv-1", "state": state}))).state == state


def test_text_postgres_cannot_store_is_refused_rather_than_failing_later() -> None:
    # jsonb has no NUL character and no NaN: stored, these would fail in Postgres on every retry.
    with pytest.raises(InvalidWebhook):
        parse(body(envelope(data={"instance": "drv-1", "state": "open", "profileName": "Ana\x00"})))
    with pytest.raises(InvalidWebhook):
        parse(body(envelope(instance="drv\x001")))
    with pytest.raises(InvalidWebhook):
        parse(b'{"event": "status.instance", "instance": "drv-1", "data": {"disconnectionReasonCode": NaN}}')
    with pytest.raises(InvalidWebhook):
        parse(b'{"event": "status.instance", "instance": "drv-1", "data": {"disconnectionReasonCode": 1e400}}')
    with pytest.raises(InvalidWebhook):
        parse(b'{"event": "logout.instance", "instance": "drv-\\ud800", "data": null}')


def test_a_deeply_nested_body_is_refused_not_crashed_on() -> None:
    with pytest.raises(InvalidWebhook, match="nested too deeply"):
        parse(b'{"event": "connection.update", "instance": "drv-1", "data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")


def test_irrelevant_events_with_unstorable_text_are_not_refused() -> None:
    # They are acknowledged and dropped, never stored.
    parsed = parse(body(envelope("messages.upsert", {"message": {"conversation": "\x00"}})))

    assert not parsed.relevant


# ------------------------------------------------------------------------------------------ by-events paths


@pytest.mark.parametrize(
    ("event", "suffix"),
    [
        ("connection.update", "connection-update"),
        ("qrcode.updated", "qrcode-updated"),
        ("logout.instance", "logout-instance"),
        ("remove.instance", "remove-instance"),
        ("status.instance", "status-instance"),
        ("messages.upsert", "messages-upsert"),
    ],
)
def test_the_by_events_suffix_of_the_event_is_accepted(event: str, suffix: str) -> None:
    assert path_suffix(event) == suffix
    data = {"instance": "drv-1", "state": "open"} if event == "connection.update" else None

    assert parse(body(envelope(event, data)), suffix).event == event


@pytest.mark.parametrize("suffix", ["connection-update", "connection.update", "Qrcode-Updated", "qrcode", ""])
def test_a_suffix_naming_another_event_is_refused(suffix: str) -> None:
    with pytest.raises(InvalidWebhook, match="the path ends in"):
        parse(body(qrcode_updated()), suffix)


# ------------------------------------------------------------------------------------------ what is stored


def test_stored_qrcode_keeps_neither_pairing_code_nor_qr_payload_nor_image() -> None:
    parsed = parse(body(qrcode_updated()))

    stored = parsed.stored()
    text = json.dumps(stored)
    assert stored["data"] == {"qrcode": {"instance": "drv-1"}}
    for secret in (PAIRING_CODE, QR_PAYLOAD, QR_IMAGE, "iVBORw0KGgo"):
        assert secret not in text
    # The parsed envelope itself is untouched (stored() copies).
    assert parsed.data["qrcode"]["pairingCode"] == PAIRING_CODE


def test_stored_envelope_drops_apikey_sender_and_destination() -> None:
    stored = parse(body(envelope())).stored()

    assert set(stored) == {"event", "instance", "data", "date_time", "server_url"}
    assert INSTANCE_TOKEN not in json.dumps(stored)


def test_pairing_codes_only_disappear_from_qrcode_updated() -> None:
    # Another event with a field named `code` is stored as it came.
    data = {"instanceName": "drv-1", "instanceId": "abc", "code": "not-a-secret"}

    assert parse(body(envelope("instance.create", data))).stored()["data"] == data


# ------------------------------------------------------------------------------------------ dedup key


def test_deliveries_to_instance_and_global_webhooks_share_a_dedup_key() -> None:
    instance_hook = parse(body(qrcode_updated(destination="http://operator/webhooks/evolution", apikey=None)))
    global_hook = parse(
        body(qrcode_updated(destination="http://operator/webhooks/evolution/qrcode-updated", apikey=INSTANCE_TOKEN)),
        "qrcode-updated",
    )

    assert instance_hook.dedup_key() == global_hook.dedup_key()
    assert INSTANCE_TOKEN not in instance_hook.dedup_key()


def test_a_retried_delivery_has_the_same_dedup_key() -> None:
    raw = body(envelope())

    assert parse(raw).dedup_key() == parse(raw).dedup_key()


def test_different_events_have_different_dedup_keys() -> None:
    first = parse(body(envelope(date_time="2025-10-21T10:00:00.000Z")))
    later = parse(body(envelope(date_time="2025-10-21T10:00:00.001Z")))
    other_instance = parse(body(envelope(instance="drv-2")))
    other_state = parse(body(envelope(data={"instance": "drv-1", "state": "close", "statusReason": 401})))

    keys = {first.dedup_key(), later.dedup_key(), other_instance.dedup_key(), other_state.dedup_key()}
    assert len(keys) == 4
