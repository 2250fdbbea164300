"""The feedback loop's queries: which events were applied, SES's reports on ledger rows,
transient bounces, and the counts `status`, `send` and `subscribers stats` show. Functions of a
connection, like the other table modules; `newsletter.events.apply` calls them inside one
transaction per message.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

# How a report ranks against the one already on a ledger row: a stronger one replaces it (a
# bounce after a delivery, a delivery after a delay), a weaker one never does. Sends, opens and
# clicks leave the row's report alone.
FEEDBACK_RANK = {
    "delay": 1, "delivery": 2, "soft_bounce": 3, "rendering_failure": 4, "reject": 4, "bounce": 5, "complaint": 6,
}


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class LedgerRow:
    id: int
    issue_id: str
    address_key: str
    feedback: str | None


def is_applied(connection: sqlite3.Connection, event_id: str) -> bool:
    return connection.execute("SELECT 1 FROM applied_event WHERE event_id = ?", (event_id,)).fetchone() is not None


def mark_applied(connection: sqlite3.Connection, event_id: str, kind: str, now: dt.datetime) -> None:
    connection.execute("INSERT INTO applied_event (event_id, kind, applied_at) VALUES (?, ?, ?)",
                       (event_id, kind, _time(now)))


def forget_applied_before(connection: sqlite3.Connection, before: dt.datetime) -> int:
    """Drop ids older than any message SQS can still hold (it keeps a message 14 days at most)."""
    return connection.execute("DELETE FROM applied_event WHERE applied_at < ?", (_time(before),)).rowcount


def ledger_row(connection: sqlite3.Connection, message_id: str) -> LedgerRow | None:
    row = connection.execute(
        "SELECT id, issue_id, address_key, feedback FROM delivery WHERE message_id = ? LIMIT 1", (message_id,)
    ).fetchone()
    return LedgerRow(*row) if row else None


def record_report(
    connection: sqlite3.Connection, row: LedgerRow, kind: str, detail: str | None, at: dt.datetime
) -> None:
    connection.execute(
        "INSERT INTO delivery_event (delivery_id, issue_id, kind, detail, at) VALUES (?, ?, ?, ?, ?)",
        (row.id, row.issue_id, kind, detail, _time(at)),
    )
    rank = FEEDBACK_RANK.get(kind)
    if rank is not None and rank >= FEEDBACK_RANK.get(row.feedback or "", 0):
        connection.execute("UPDATE delivery SET feedback = ?, feedback_at = ? WHERE id = ?", (kind, _time(at), row.id))


def record_transient_bounce(connection: sqlite3.Connection, key: str, at: dt.datetime) -> None:
    connection.execute("INSERT INTO transient_bounce (address_key, at) VALUES (?, ?)", (key, _time(at)))


def transient_bounce_times(
    connection: sqlite3.Connection, key: str, start: dt.datetime, end: dt.datetime
) -> list[dt.datetime]:
    """When `key` bounced transiently from `start` to `end` (both included), in time order."""
    return [
        dt.datetime.fromisoformat(at)
        for (at,) in connection.execute(
            "SELECT at FROM transient_bounce WHERE address_key = ? AND at >= ? AND at <= ? ORDER BY at",
            (key, _time(start), _time(end)),
        )
    ]


def record_sync(connection: sqlite3.Connection, now: dt.datetime, applied: int) -> None:
    connection.execute("INSERT INTO sync_run (finished_at, applied) VALUES (?, ?)", (_time(now), applied))


def last_sync(connection: sqlite3.Connection) -> dt.datetime | None:
    value = connection.execute("SELECT max(finished_at) FROM sync_run").fetchone()[0]
    return dt.datetime.fromisoformat(value) if value else None


def issue_reports(connection: sqlite3.Connection, issue_id: str) -> dict[str, tuple[int, int]]:
    """Per report kind: (recipients with at least one, reports in all) for the issue."""
    return {
        kind: (recipients, total)
        for kind, recipients, total in connection.execute(
            "SELECT kind, count(DISTINCT delivery_id), count(*) FROM delivery_event WHERE issue_id = ? GROUP BY kind",
            (issue_id,),
        )
    }


def count_sent(connection: sqlite3.Connection, issue_id: str) -> int:
    return connection.execute(
        "SELECT count(*) FROM delivery WHERE issue_id = ? AND state = 'sent'", (issue_id,)
    ).fetchone()[0]


def recent_issues(connection: sqlite3.Connection, limit: int) -> list[str]:
    """The issues most recently sent to, newest first."""
    return [
        row[0]
        for row in connection.execute(
            "SELECT issue_id FROM delivery WHERE state = 'sent' GROUP BY issue_id ORDER BY max(finished_at) DESC LIMIT ?",
            (limit,),
        )
    ]


def status_history(connection: sqlite3.Connection) -> dict[str, tuple[int, str | None, str | None]]:
    """Per subscriber status: (how many, earliest and latest change to it), ISO 8601 times. A
    status change is dated by its event (a rename is no change); one the editor added, by joining."""
    return {
        status: (count, first, last)
        for status, count, first, last in connection.execute(
            "SELECT status, count(*), min(coalesce(status_at, joined_at)), max(coalesce(status_at, joined_at)) "
            "FROM subscriber GROUP BY status"
        )
    }
