"""`whatsapp-operator webhooks`: the operator's people look at the inbox and replay dead webhooks."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from tests.support.pg import query
from whatsapp_operator.cli import main
from whatsapp_operator.webhooks.envelope import Envelope
from whatsapp_operator.webhooks.inbox import Inbox

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


async def fill(url: str) -> list[int]:
    """Three webhooks: one done, two dead (after their attempts)."""
    inbox = Inbox(url)
    await inbox.open()
    try:
        for n in range(3):
            envelope = Envelope("connection.update", f"driver-{n}", {"state": "close"}, date_time=f"t{n}")
            assert await inbox.accept(envelope, NOW)
        jobs = await inbox.claim(NOW, datetime.timedelta(seconds=60), 10)
        await inbox.complete({jobs[0].id: "probed soon: default/driver-0"}, NOW)
        for job in jobs[1:]:
            await inbox.bury(job.id, "RetryLater: no EvolutionServer is being probed yet", NOW)
        return [job.id for job in jobs]
    finally:
        await inbox.close()


def statuses(url: str) -> dict[int, tuple[str, int]]:
    rows = query(url, "SELECT id, status, attempts FROM whatsapp_operator.webhook_inbox")
    return {row["id"]: (row["status"], row["attempts"]) for row in rows}


def test_stats_dead_and_replay_of_one_then_all(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    done, dead1, dead2 = asyncio.run(fill(pg_url))

    assert main(["webhooks", "--database-url", pg_url, "stats"]) == 0
    assert capsys.readouterr().out.split() == ["queued", "0", "done", "1", "dead", "2"]

    assert main(["webhooks", "--database-url", pg_url, "dead"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:4] for line in lines] == [
        [str(dead1), "connection.update", "driver-1", "1"],
        [str(dead2), "connection.update", "driver-2", "1"],
    ]
    assert all(line.endswith("no EvolutionServer is being probed yet") for line in lines)

    assert main(["webhooks", "--database-url", pg_url, "replay", "--id", str(dead1)]) == 0
    assert capsys.readouterr().out.strip() == f"replayed 1: {dead1}"
    assert statuses(pg_url) == {done: ("done", 1), dead1: ("queued", 0), dead2: ("dead", 1)}

    assert main(["webhooks", "--database-url", pg_url, "replay", "--id", str(done)]) == 1, "done is not dead"
    assert f"not dead (or unknown): {done}" in capsys.readouterr().err

    assert main(["webhooks", "--database-url", pg_url, "replay"]) == 0
    assert capsys.readouterr().out.strip() == f"replayed 1: {dead2}"
    assert statuses(pg_url)[dead2] == ("queued", 0)
    assert main(["webhooks", "--database-url", pg_url, "replay"]) == 0
    assert capsys.readouterr().out.strip() == "nothing to replay"


def test_without_a_database_url_it_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WHATSAPP_OPERATOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["webhooks", "stats"]) == 1
    assert "pass --database-url or set $WHATSAPP_OPERATOR_DATABASE_URL" in capsys.readouterr().err
