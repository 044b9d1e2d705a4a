"""`whatsapp-operator notifications`: the operator's people list the outbox and replay dead deliveries."""

from __future__ import annotations

import asyncio
import datetime

import psycopg
import pytest

from tests.support.pg import query
from whatsapp_operator.cli import main
from whatsapp_operator.core.notifications import DeliveryState, Notification
from whatsapp_operator.db import outbox
from whatsapp_operator.db.outbox import Outbox

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)


def notification(n: int) -> Notification:
    return Notification(
        instance_uid=f"uid-{n}",
        episode=NOW - datetime.timedelta(hours=n),
        namespace="drivers",
        name=f"driver-{n}",
        instance=f"driver-{n}",
        server="default",
        driver_id=f"d{n}",
        driver_name="",
        phone="+5511987654321",
        kind="logged_out",
        reason=401,
        decided_at=NOW + datetime.timedelta(minutes=n),
        channels=("event", "whatsapp"),
    )


FATES = {  # (name, channel): how the delivery ended; the others were delivered
    ("driver-2", "whatsapp"): (DeliveryState.DEAD, "sendText: EvolutionUnavailable"),
    ("driver-3", "whatsapp"): (DeliveryState.FAILED, "the driver's number is not on WhatsApp"),
    ("driver-3", "event"): (DeliveryState.DEAD, "posting the Event: HTTP 503"),
}


async def fill(url: str) -> None:
    """Three notifications: driver-1's delivered on both channels, driver-2's Event delivered and its
    text dead, driver-3's text failed and its Event dead; a repeated insert of driver-1's episode
    changes nothing."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for n in (1, 2, 3):
            assert await outbox.insert(conn, notification(n))
        assert not await outbox.insert(conn, notification(1)), "one notification per episode"
    store = Outbox(url)
    await store.open()
    try:
        for delivery in await store.claim(NOW + datetime.timedelta(hours=1), datetime.timedelta(minutes=2), 10):
            fate = (delivery.notification.name, delivery.channel)
            state, error = FATES.get(fate, (DeliveryState.DELIVERED, None))
            await store.settle(delivery, state, error, NOW)
    finally:
        await store.close()


def cli(url: str, *args: str) -> int:
    return main(["notifications", "--database-url", url, *args])


def lines(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """What the last command printed, one list of columns per delivery (the header left out)."""
    return [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]


def test_list_and_replay_of_dead_deliveries(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(fill(pg_url))

    assert cli(pg_url, "list") == 0
    header, *rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert header[:3] == ["id", "namespace", "name"]
    assert [(r[2], r[6], r[7]) for r in rows] == [
        ("driver-3", "event", "dead"),
        ("driver-3", "whatsapp", "failed"),
        ("driver-2", "event", "delivered"),
        ("driver-2", "whatsapp", "dead"),
        ("driver-1", "event", "delivered"),
        ("driver-1", "whatsapp", "delivered"),
    ]

    assert cli(pg_url, "list", "--failed") == 0
    assert [(r[2], r[6], r[-1]) for r in lines(capsys)] == [
        ("driver-3", "whatsapp", "the driver's number is not on WhatsApp")
    ]

    assert cli(pg_url, "list", "--dead") == 0
    dead3, dead2 = lines(capsys)
    assert (dead2[2], dead2[3], dead2[-1]) == ("driver-2", "d2", "sendText: EvolutionUnavailable")
    assert (dead3[2], dead3[6]) == ("driver-3", "event")

    assert cli(pg_url, "list", "--driver", "d1") == 0
    assert {r[3] for r in lines(capsys)} == {"d1"}

    assert cli(pg_url, "replay", "--id", dead2[0]) == 0
    assert capsys.readouterr().out.strip() == "replayed 1 deliveries"
    assert deliveries(pg_url, int(dead2[0])) == [("event", "delivered", 1), ("whatsapp", "pending", 0)]
    assert cli(pg_url, "replay", "--id", dead2[0]) == 1, "nothing dead left"
    capsys.readouterr()

    assert cli(pg_url, "replay", "--all-dead") == 0
    assert capsys.readouterr().out.strip() == "replayed 1 deliveries"
    assert deliveries(pg_url, int(dead3[0])) == [("event", "pending", 0), ("whatsapp", "failed", 1)], (
        "a delivery refused for good is not replayed"
    )
    assert cli(pg_url, "replay", "--all-dead") == 0
    assert capsys.readouterr().out.strip().endswith("nothing to replay")


def deliveries(url: str, notification_id: int) -> list[tuple[str, str, int]]:
    rows = query(url, "SELECT channel, state, attempts FROM whatsapp_operator.notification_deliveries"
                 " WHERE notification_id = %s ORDER BY channel", [notification_id])  # fmt: skip
    return [(r["channel"], r["state"], r["attempts"]) for r in rows]
