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


async def fill(url: str) -> None:
    """Two notifications: driver-1's delivered on both channels, driver-2's Event delivered and its
    text dead; a repeated insert of driver-1's episode changes nothing."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        assert await outbox.insert(conn, notification(1))
        assert await outbox.insert(conn, notification(2))
        assert not await outbox.insert(conn, notification(1)), "one notification per episode"
    store = Outbox(url)
    await store.open()
    try:
        for delivery in await store.claim(NOW + datetime.timedelta(hours=1), datetime.timedelta(minutes=2), 10):
            dead = delivery.notification.name == "driver-2" and delivery.channel == "whatsapp"
            state = DeliveryState.DEAD if dead else DeliveryState.DELIVERED
            await store.settle(delivery, state, "sendText: EvolutionUnavailable" if dead else None, NOW)
    finally:
        await store.close()


def test_list_and_replay_of_dead_deliveries(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(fill(pg_url))

    assert main(["notifications", "--database-url", pg_url, "list"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split("\t")[:3] == ["id", "namespace", "name"]
    rows = [line.split("\t") for line in lines]
    assert [(r[2], r[6], r[7]) for r in rows] == [
        ("driver-2", "event", "delivered"),
        ("driver-2", "whatsapp", "dead"),
        ("driver-1", "event", "delivered"),
        ("driver-1", "whatsapp", "delivered"),
    ]

    assert main(["notifications", "--database-url", pg_url, "list", "--dead"]) == 0
    (dead,) = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert (dead[2], dead[3], dead[-1]) == ("driver-2", "d2", "sendText: EvolutionUnavailable")

    assert main(["notifications", "--database-url", pg_url, "list", "--driver", "d1"]) == 0
    assert {line.split("\t")[3] for line in capsys.readouterr().out.splitlines()[1:]} == {"d1"}

    assert main(["notifications", "--database-url", pg_url, "replay", "--id", dead[0]]) == 0
    assert capsys.readouterr().out.strip() == "replayed 1 deliveries"
    rows = query(pg_url, "SELECT channel, state, attempts FROM whatsapp_operator.notification_deliveries"
                 " WHERE notification_id = %s ORDER BY channel", [int(dead[0])])  # fmt: skip
    assert [(r["channel"], r["state"], r["attempts"]) for r in rows] == [
        ("event", "delivered", 1),
        ("whatsapp", "pending", 0),
    ]

    assert main(["notifications", "--database-url", pg_url, "replay", "--id", dead[0]]) == 1, "nothing dead left"
    assert main(["notifications", "--database-url", pg_url, "replay", "--all-dead"]) == 0
    assert capsys.readouterr().out.strip().endswith("nothing to replay")
