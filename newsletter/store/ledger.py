"""The send ledger's queries: one `delivery` row per (issue, recipient). Functions of a connection;
`Store` is how the rest calls them.

A row moves pending -> sending -> sent | failed | unknown. `claim` commits `sending` before the
network call and `finish` commits the outcome right after it, so a killed process leaves at most
one `sending` row per worker, which `mark_interrupted` turns into `unknown` at the next start.
`claim` is a compare-and-set: of two processes claiming one row, exactly one wins.

Each row also records which version of the issue it was sent (`issue_version`: the subject and a
hash of the rendered content), so a resume of an edited issue is noticed (`check_version`).
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

from ..errors import SendError, StoreError
from ..model import DELIVERY_STATES, EDITIONS, Delivery
from .db import check_single_name

_COLUMNS = (
    "d.id, d.issue_id, d.address, d.state, d.attempts, d.message_id, d.error_kind, d.error_code, d.error, "
    "d.enqueued_at, d.started_at, d.finished_at, s.name, d.edition"
)
# The name comes from the subscriber row, so a name changed after queueing is the one used.
_FROM = "FROM delivery d LEFT JOIN subscriber s ON s.address_key = d.address_key"
_STILL_SUBSCRIBED = (
    "EXISTS (SELECT 1 FROM subscriber s WHERE s.address_key = delivery.address_key AND s.status = 'subscribed')"
)
INTERRUPTED_ERROR = "the run ended during the call (crash or kill): it may have been delivered"
LEFT_LIST_ERROR = "no longer subscribed"


@dataclass(frozen=True)
class IssueVersion:
    """What the recipients of an issue get: two runs send the same issue only if these match."""

    subject: str
    content_hash: str  # of the rendered HTML and text parts (compose.content_hash)


class IssueChangedError(SendError):
    """Rows of this issue were sent a different version than the one about to be sent."""


@dataclass(frozen=True)
class Preparation:
    """What bringing an issue's ledger up to date before a run found."""

    interrupted: int  # rows a crashed run had left `sending`, now `unknown`
    queued: int  # subscribed addresses newly queued
    counts: dict[str, int]  # rows by state afterwards
    version_id: int | None = None  # the `issue_version` row the run's claims record

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
     enqueued_at, started_at, finished_at, name, edition) = row
    return Delivery(
        id=id_, issue_id=issue_id, address=address, state=state, attempts=attempts, message_id=message_id,
        error_kind=error_kind, error_code=error_code, error=error, enqueued_at=_parse_time(enqueued_at),
        started_at=_parse_time(started_at), finished_at=_parse_time(finished_at), name=name, edition=edition,
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
    """A `pending` row for every subscribed address that has no row for this issue yet, in the
    edition the reader has now: the row keeps it through any resume, whatever they choose later."""
    cursor = connection.execute(
        "INSERT OR IGNORE INTO delivery (issue_id, address, address_key, enqueued_at, edition) "
        "SELECT ?, address, address_key, ?, edition FROM subscriber WHERE status = 'subscribed'",
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


def counts_by_edition(connection: sqlite3.Connection, issue_id: str) -> dict[str, dict[str, int]]:
    """The issue's rows by edition, then by state (every edition and state, zeros included)."""
    result = {edition: dict.fromkeys(DELIVERY_STATES, 0) for edition in EDITIONS}
    query = "SELECT edition, state, count(*) FROM delivery WHERE issue_id = ? GROUP BY edition, state"
    for edition, state, number in connection.execute(query, (issue_id,)):
        result[edition][state] = number
    return result


def latest_issue(connection: sqlite3.Connection) -> str | None:
    """The newest issue the ledger holds rows for (issue ids are dates), or None."""
    return connection.execute("SELECT max(issue_id) FROM delivery").fetchone()[0]


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


def claim(connection: sqlite3.Connection, delivery_id: int, now: dt.datetime, version_id: int | None = None) -> str:
    """pending -> sending, counting the attempt and recording the version sent; only while the
    address is still subscribed, and only if the row is still `pending` (compare-and-set).

    Returns "claimed" when this call won the row, "skipped" when the address left the list (the row
    says so), or "taken" when another run claimed or finished it first (leave it alone).
    """
    claimed = connection.execute(
        f"UPDATE delivery SET state = 'sending', attempts = attempts + 1, started_at = ?, finished_at = NULL, "
        f"version_id = coalesce(?, version_id) WHERE id = ? AND state = 'pending' AND {_STILL_SUBSCRIBED}",
        (_time(now), version_id, delivery_id),
    ).rowcount
    if claimed:
        return "claimed"
    left = connection.execute(
        "UPDATE delivery SET state = 'skipped', error = ? WHERE id = ? AND state = 'pending'",
        (LEFT_LIST_ERROR, delivery_id),
    ).rowcount
    return "skipped" if left else "taken"


def _delivered_version(connection: sqlite3.Connection, issue_id: str) -> tuple[int, IssueVersion, int] | None:
    """The version the issue's most recently sent rows got (sent or unknown: they may have it),
    with how many rows got that version; None if no row with a known version was sent."""
    row = connection.execute(
        "SELECT v.id, v.subject, v.content_hash FROM delivery d JOIN issue_version v ON v.id = d.version_id "
        "WHERE d.issue_id = ? AND d.state IN ('sent', 'unknown') ORDER BY d.started_at DESC LIMIT 1",
        (issue_id,),
    ).fetchone()
    if row is None:
        return None
    count = connection.execute(
        "SELECT count(*) FROM delivery WHERE issue_id = ? AND version_id = ? AND state IN ('sent', 'unknown')",
        (issue_id, row[0]),
    ).fetchone()[0]
    return row[0], IssueVersion(row[1], row[2]), count


def check_version(
    connection: sqlite3.Connection, issue_id: str, version: IssueVersion, now: dt.datetime, *, allow_change: bool
) -> int:
    """The `issue_version` id the run's claims record. IssueChangedError if rows of the issue were
    sent another version and the editor did not allow sending the changed one to the rest."""
    delivered = _delivered_version(connection, issue_id)
    if delivered is not None and delivered[1] != version and not allow_change:
        _, before, count = delivered
        changed = [
            f"the subject ({before.subject!r}, now {version.subject!r})" if before.subject != version.subject else "",
            "the content (the issue file or the email templates)" if before.content_hash != version.content_hash else "",
        ]
        pending = counts(connection, issue_id)["pending"]
        rest = (
            f"to send this version to the {pending} who do not have the issue yet, run the send again "
            "with --send-changed-version" if pending else "everyone on the list has the earlier version"
        )
        raise IssueChangedError(
            f"issue {issue_id} was already sent to {count} recipient(s) in another version: "
            f"{' and '.join(part for part in changed if part)} changed since. If this is a new issue, "
            f"give it its own date; {rest}"
        )
    connection.execute(
        "INSERT OR IGNORE INTO issue_version (issue_id, subject, content_hash, first_used_at) VALUES (?, ?, ?, ?)",
        (issue_id, version.subject, version.content_hash, _time(now)),
    )
    return connection.execute(
        "SELECT id FROM issue_version WHERE issue_id = ? AND subject = ? AND content_hash = ?",
        (issue_id, version.subject, version.content_hash),
    ).fetchone()[0]


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
    """One send at a time per database file, whatever path it is reached by. Without it a second
    run would take the first one's `sending` rows for crash leftovers.

    The lock is an flock on a file next to the database's real path (symbolic links resolved), the
    folder where SQLite keeps the -wal and -shm files that every connection to the database shares;
    a database with a second hard link is refused (SQLite would keep a second journal for it). An
    flock dies with its process, so a kill leaves no stale lock behind."""
    real = Path(os.path.realpath(database))
    check_single_name(real)
    lock_path = real.with_name(f"{real.name}.send-lock")
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise StoreError(f"{lock_path}: cannot create the send lock ({error.strerror}); the database's folder "
                         "must be writable") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SendError(f"another send is running on {database}; wait for it to end") from None
        yield
    finally:
        os.close(descriptor)
