"""The send ledger's queries: one `delivery` row per (issue, recipient). Functions of a connection;
`Store` is how the rest calls them.

A row moves pending -> sending -> sent | failed | unknown. `claim` commits `sending` before the
network call and `finish` commits the outcome right after it, so a killed process leaves at most
one `sending` row per worker, which `mark_interrupted` turns into `unknown` at the next start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import SendError
from ..model import DELIVERY_STATES, Delivery

_COLUMNS = (
    "d.id, d.issue_id, d.address, d.state, d.attempts, d.message_id, d.error_kind, d.error_code, d.error, "
    "d.enqueued_at, d.started_at, d.finished_at, s.name"
)
# The name comes from the subscriber row, so a name changed after queueing is the one used.
_FROM = "FROM delivery d LEFT JOIN subscriber s ON s.address_key = d.address_key"
_STILL_SUBSCRIBED = (
    "EXISTS (SELECT 1 FROM subscriber s WHERE s.address_key = delivery.address_key AND s.status = 'subscribed')"
)
INTERRUPTED_ERROR = "the run ended during the call (crash or kill): it may have been delivered"
LEFT_LIST_ERROR = "no longer subscribed"


@dataclass(frozen=True)
class Preparation:
    """What bringing an issue's ledger up to date before a run found."""

    interrupted: int  # rows a crashed run had left `sending`, now `unknown`
    queued: int  # subscribed addresses newly queued
    counts: dict[str, int]  # rows by state afterwards

    @property
    def pending(self) -> int:
        return self.counts["pending"]


def precise_now() -> dt.datetime:
    """Ledger time stamps keep microseconds (the subscriber table's keep whole seconds)."""
    return dt.datetime.now(dt.UTC)


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _delivery(row: tuple) -> Delivery:
    (id_, issue_id, address, state, attempts, message_id, error_kind, error_code, error,
     enqueued_at, started_at, finished_at, name) = row
    return Delivery(
        id=id_, issue_id=issue_id, address=address, state=state, attempts=attempts, message_id=message_id,
        error_kind=error_kind, error_code=error_code, error=error, enqueued_at=_parse_time(enqueued_at),
        started_at=_parse_time(started_at), finished_at=_parse_time(finished_at), name=name,
    )


def mark_interrupted(connection: sqlite3.Connection, issue_id: str, now: dt.datetime) -> int:
    """Rows a crashed run left `sending` -> `unknown` (their call may have gone out)."""
    cursor = connection.execute(
        "UPDATE delivery SET state = 'unknown', error_kind = 'Interrupted', error_code = NULL, error = ?, "
        "finished_at = ? WHERE issue_id = ? AND state = 'sending'",
        (INTERRUPTED_ERROR, _time(now), issue_id),
    )
    return cursor.rowcount


def enqueue_subscribed(connection: sqlite3.Connection, issue_id: str, now: dt.datetime) -> int:
    """A `pending` row for every subscribed address that has no row for this issue yet."""
    cursor = connection.execute(
        "INSERT OR IGNORE INTO delivery (issue_id, address, address_key, enqueued_at) "
        "SELECT ?, address, address_key, ? FROM subscriber WHERE status = 'subscribed'",
        (issue_id, _time(now)),
    )
    return cursor.rowcount


def sync_with_list(connection: sqlite3.Connection, issue_id: str) -> None:
    """Pending rows of addresses that left the list -> `skipped`; skipped rows of addresses that
    are subscribed again -> `pending`."""
    connection.execute(
        f"UPDATE delivery SET state = 'skipped', error = ? "
        f"WHERE issue_id = ? AND state = 'pending' AND NOT {_STILL_SUBSCRIBED}",
        (LEFT_LIST_ERROR, issue_id),
    )
    connection.execute(
        f"UPDATE delivery SET state = 'pending', error = NULL "
        f"WHERE issue_id = ? AND state = 'skipped' AND {_STILL_SUBSCRIBED}",
        (issue_id,),
    )


def requeue(connection: sqlite3.Connection, issue_id: str, states: Collection[str]) -> None:
    """Rows in `states` (`unknown`, `failed`) -> `pending`, on the editor's say-so."""
    placeholders = ", ".join("?" for _ in states)
    connection.execute(
        f"UPDATE delivery SET state = 'pending' WHERE issue_id = ? AND state IN ({placeholders})",
        (issue_id, *states),
    )


def counts(connection: sqlite3.Connection, issue_id: str) -> dict[str, int]:
    result = dict.fromkeys(DELIVERY_STATES, 0)
    result.update(connection.execute("SELECT state, count(*) FROM delivery WHERE issue_id = ? GROUP BY state", (issue_id,)))
    return result


def count_unqueued(connection: sqlite3.Connection, issue_id: str) -> int:
    """Subscribed addresses with no row for the issue yet (the next send queues them)."""
    return connection.execute(
        "SELECT count(*) FROM subscriber s WHERE s.status = 'subscribed' AND NOT EXISTS "
        "(SELECT 1 FROM delivery d WHERE d.issue_id = ? AND d.address_key = s.address_key)",
        (issue_id,),
    ).fetchone()[0]


def pending_page(connection: sqlite3.Connection, issue_id: str, after_id: int, limit: int) -> list[Delivery]:
    """The next `limit` pending rows after row `after_id`, in queueing order."""
    rows = connection.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE d.issue_id = ? AND d.state = 'pending' AND d.id > ? ORDER BY d.id LIMIT ?",
        (issue_id, after_id, limit),
    )
    return [_delivery(row) for row in rows]


def with_states(connection: sqlite3.Connection, issue_id: str, states: Collection[str]) -> Iterator[Delivery]:
    placeholders = ", ".join("?" for _ in states)
    rows = connection.execute(
        f"SELECT {_COLUMNS} {_FROM} WHERE d.issue_id = ? AND d.state IN ({placeholders}) ORDER BY d.id",
        (issue_id, *states),
    )
    return (_delivery(row) for row in rows)


def claim(connection: sqlite3.Connection, delivery_id: int, now: dt.datetime) -> str:
    """pending -> sending, counting the attempt; only while the address is still subscribed.

    Returns "sending" when claimed, "skipped" when the address left the list (the row says so),
    or the state another process gave the row meanwhile.
    """
    claimed = connection.execute(
        f"UPDATE delivery SET state = 'sending', attempts = attempts + 1, started_at = ?, finished_at = NULL "
        f"WHERE id = ? AND state = 'pending' AND {_STILL_SUBSCRIBED}",
        (_time(now), delivery_id),
    ).rowcount
    if claimed:
        return "sending"
    connection.execute(
        "UPDATE delivery SET state = 'skipped', error = ? WHERE id = ? AND state = 'pending'",
        (LEFT_LIST_ERROR, delivery_id),
    )
    return connection.execute("SELECT state FROM delivery WHERE id = ?", (delivery_id,)).fetchone()[0]


def finish(
    connection: sqlite3.Connection,
    delivery_id: int,
    state: str,
    now: dt.datetime,
    *,
    message_id: str | None = None,
    error: BaseException | None = None,
) -> None:
    """sending -> `state` (sent, failed, unknown, or pending when the call surely sent nothing),
    with the provider's id or the error that decided it (a SendError keeps the provider's code)."""
    kind = code = text = None
    if error is not None:
        kind, code, text = type(error).__name__, getattr(error, "code", None), getattr(error, "message", str(error))
    connection.execute(
        "UPDATE delivery SET state = ?, message_id = coalesce(?, message_id), error_kind = ?, error_code = ?, "
        "error = ?, finished_at = ? WHERE id = ? AND state = 'sending'",
        (state, message_id, kind, code, text, _time(now), delivery_id),
    )


def fail_unsent(connection: sqlite3.Connection, delivery_id: int, error: Exception, now: dt.datetime) -> None:
    """pending -> failed without a call: the message could not even be composed."""
    connection.execute(
        "UPDATE delivery SET state = 'failed', error_kind = ?, error_code = NULL, error = ?, finished_at = ? "
        "WHERE id = ? AND state = 'pending'",
        (type(error).__name__, str(error), _time(now), delivery_id),
    )


def sent_since(connection: sqlite3.Connection, since: dt.datetime) -> int:
    """Messages sent (any issue) since `since`: the day's count when the provider cannot tell."""
    return connection.execute(
        "SELECT count(*) FROM delivery WHERE state = 'sent' AND finished_at >= ?", (_time(since),)
    ).fetchone()[0]


@contextlib.contextmanager
def send_lock(database: Path) -> Iterator[None]:
    """One send at a time per database. Without it a second run would take the first one's
    `sending` rows for crash leftovers. An flock dies with its process, so a kill leaves no stale
    lock behind."""
    lock_path = Path(f"{database}.send-lock")
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SendError(f"another send is running on {database}; wait for it to end") from None
        yield
    finally:
        os.close(descriptor)
