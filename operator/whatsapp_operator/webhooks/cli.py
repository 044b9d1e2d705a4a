"""`whatsapp-operator webhooks`: look at the inbox, and replay the webhooks that died.

A replayed webhook is queued again with fresh attempts; the running operator's worker picks it up
within its poll interval (5 s)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys

from whatsapp_operator.db.connection import DatabaseConfigError, add_database_url_argument, resolve_database_url
from whatsapp_operator.webhooks.inbox import Inbox, InboxUnavailable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_url_argument(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("stats", help="webhooks in the inbox by status (queued, done, dead)")
    dead = sub.add_parser("dead", help="the dead webhooks, with their last error")
    dead.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    replay = sub.add_parser("replay", help="queue dead webhooks again: all of them, or those of --id")
    replay.add_argument("--id", type=int, action="append", dest="ids", metavar="ID", help="a dead webhook's id")


async def _run(args: argparse.Namespace, url: str) -> int:
    inbox = Inbox(url, pool_max_size=1, connection_timeout=10)
    await inbox.open()
    try:
        if args.action == "stats":
            for status, count in (await inbox.counts()).items():
                print(f"{status}\t{count}")
        elif args.action == "dead":
            rows = await inbox.dead(args.limit)
            for row in rows:
                print(f"{row['id']}\t{row['event']}\t{row['instance']}\t{row['attempts']}\t{row['last_error']}")
            if not rows:
                print("no dead webhooks", file=sys.stderr)
        else:
            replayed = await inbox.replay(datetime.datetime.now(datetime.UTC), args.ids)
            print(f"replayed {len(replayed)}: {' '.join(map(str, replayed))}" if replayed else "nothing to replay")
            missing = sorted(set(args.ids or ()) - set(replayed))
            if missing:
                print(f"not dead (or unknown): {' '.join(map(str, missing))}", file=sys.stderr)
                return 1
    finally:
        await inbox.close()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args, resolve_database_url(args)))
    except (DatabaseConfigError, InboxUnavailable) as exc:
        print(f"whatsapp-operator webhooks: error: {exc}", file=sys.stderr)
        return 1
