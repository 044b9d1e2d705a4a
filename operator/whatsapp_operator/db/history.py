"""`whatsapp-operator history`: a driver's phase transitions and uptime, read from the history table.

Uptime is the share of observed time spent Connected. Phases that do not tell the link's state
(Unknown: Evolution unreachable; Suspended: not probed; the ones whose `whatsapp_status` the mirror
leaves untouched) count as the last phase that did, so an Evolution outage neither hides nor
invents downtime. Time before the driver's first recorded transition is not observed and counts
neither way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from whatsapp_operator.core.phases import DB_STATUS, Phase
from whatsapp_operator.db.connection import (
    SCHEMA,
    DatabaseConfigError,
    add_database_url_argument,
    connection_params,
    error_line,
    resolve_database_url,
)

WINDOWS = (("24 h", timedelta(hours=24)), ("7 d", timedelta(days=7)))
# Phases that say nothing about the link: uptime carries the previous phase through them.
_UNINFORMATIVE = frozenset(phase for phase, status in DB_STATUS.items() if status is None)

_QUERY = sql.SQL(
    """
    SELECT occurred_at, from_phase, to_phase, state, status_reason, forced, namespace, instance, repaired
    FROM {table}
    WHERE driver_id = %(driver)s
      AND occurred_at >= COALESCE(
          (SELECT max(occurred_at) FROM {table}
           WHERE driver_id = %(driver)s AND occurred_at < %(since)s AND to_phase <> ALL(%(uninformative)s)),
          %(since)s)
    ORDER BY occurred_at, id
    """
).format(table=sql.Identifier(SCHEMA, "transitions"))


@dataclass(frozen=True)
class Transition:
    occurred_at: datetime
    from_phase: Phase | None
    to_phase: Phase
    state: str | None = None
    reason: int | None = None
    forced: bool = False
    resource: str = ""  # namespace/name of the WhatsAppInstance
    repaired: str | None = None  # a drift repair of the driver's row (same phase): what it held


def uptime(transitions: Sequence[Transition], window_start: datetime, now: datetime) -> float | None:
    """Fraction of [window_start, now] spent Connected, or None when none of it was observed.

    `transitions` are in time order and start with the last informative one before the window.
    """
    up = observed = 0.0
    known: Phase | None = None
    for i, transition in enumerate(transitions):
        if transition.to_phase not in _UNINFORMATIVE:
            known = transition.to_phase
        end = transitions[i + 1].occurred_at if i + 1 < len(transitions) else now
        seconds = (min(end, now) - max(transition.occurred_at, window_start)).total_seconds()
        if known is None or seconds <= 0:
            continue
        observed += seconds
        if known is Phase.CONNECTED:
            up += seconds
    return up / observed if observed else None


def fetch_transitions(conn: psycopg.Connection, driver_id: str, since: datetime) -> list[Transition]:
    """The driver's transitions from `since` on, plus the last informative one before it."""
    params = {"driver": driver_id, "since": since, "uninformative": sorted(_UNINFORMATIVE)}
    return [
        Transition(
            occurred_at=occurred_at.astimezone(UTC),
            from_phase=Phase(from_phase) if from_phase else None,
            to_phase=Phase(to_phase),
            state=state,
            reason=reason,
            forced=forced,
            resource=f"{namespace}/{instance}",
            repaired=repaired,
        )
        for occurred_at, from_phase, to_phase, state, reason, forced, namespace, instance, repaired in conn.execute(
            _QUERY, params
        )
    ]


def format_report(driver_id: str, transitions: Sequence[Transition], now: datetime) -> str:
    if not transitions:
        return f"no transitions recorded for driver {driver_id!r} in the last {WINDOWS[-1][0]}"
    lines = [f"driver {driver_id!r}:"]
    for t in transitions:
        if t.repaired is not None:
            stamp = t.occurred_at.isoformat(timespec="seconds")
            lines.append(f"  {stamp}  {t.resource}  {t.to_phase}: row repaired ({t.repaired})")
            continue
        lines.append(
            f"  {t.occurred_at.isoformat(timespec='seconds')}  {t.resource}  "
            f"{t.from_phase or '(new)'} -> {t.to_phase}  state={t.state or '-'}  "
            f"reason={'-' if t.reason is None else t.reason}{'  forced' if t.forced else ''}"
        )
    shares = []
    for label, length in WINDOWS:
        share = uptime(transitions, now - length, now)
        shares.append(f"last {label} {'n/a' if share is None else f'{share:.1%}'}")
    lines.append(f"uptime (Connected): {', '.join(shares)}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--driver", required=True, metavar="ID", help="the driver's id (usuarios.id)")
    add_database_url_argument(parser)


def run(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        params = connection_params(resolve_database_url(args))
        with psycopg.connect(**params) as conn:
            transitions = fetch_transitions(conn, args.driver, now - WINDOWS[-1][1])
    except DatabaseConfigError as exc:
        print(f"whatsapp-operator history: error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"whatsapp-operator history: error: {error_line(exc)}", file=sys.stderr)
        return 1
    print(format_report(args.driver, transitions, now))
    return 0
