"""`whatsapp-operator notifications`: list the outbox's deliveries, and replay the dead ones.

A replayed delivery is pending again with fresh attempts; the running operator's notifier takes it
within its poll interval (2 s). Its deadline still counts from the decision, so each replay is one
more try unless it succeeds."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys

from whatsapp_operator.db.connection import DatabaseConfigError, add_database_url_argument, resolve_database_url
from whatsapp_operator.db.outbox import Outbox, OutboxUnavailable

COLUMNS = ("id", "namespace", "name", "driver_id", "kind", "decided_at", "channel", "state", "attempts", "last_error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_url_argument(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="deliveries, newest first, one line per channel")
    only = listing.add_mutually_exclusive_group()
    only.add_argument("--failed", action="store_true", help="only those refused for good")
    only.add_argument("--dead", action="store_true", help="only those still failing at their deadline")
    listing.add_argument("--driver", metavar="ID", help="only this driver's (spec.driverId)")
    listing.add_argument("--limit", type=int, default=100, help="at most this many lines (default 100)")
    replay = sub.add_parser("replay", help="make dead deliveries pending again")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, action="append", dest="ids", metavar="N", help="a notification's id")
    which.add_argument("--all-dead", action="store_true", help="every dead delivery")


async def _run(args: argparse.Namespace, url: str) -> int:
    outbox = Outbox(url, pool_max_size=1, connection_timeout=10)
    await outbox.open()
    try:
        if args.action == "list":
            states = ("failed",) if args.failed else ("dead",) if args.dead else ()
            rows = await outbox.listing(states=states, driver=args.driver, limit=args.limit)
            print("\t".join(COLUMNS))
            for row in rows:
                print("\t".join("" if row[column] is None else str(row[column]) for column in COLUMNS))
            return 0
        replayed = await outbox.replay(datetime.datetime.now(datetime.UTC), None if args.all_dead else args.ids)
        print(f"replayed {replayed} deliveries" if replayed else "nothing to replay")
        return 0 if replayed or args.all_dead else 1
    finally:
        await outbox.close()


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args, resolve_database_url(args)))
    except (DatabaseConfigError, OutboxUnavailable) as exc:
        print(f"whatsapp-operator notifications: error: {exc}", file=sys.stderr)
        return 1
