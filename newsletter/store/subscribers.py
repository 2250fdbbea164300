"""The subscriber table's queries. Functions of a connection; `Store` is how the rest calls them."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
from collections.abc import Collection, Iterable, Iterator

from ..model import EDITIONS, STATUS_STRENGTH, SUBSCRIBER_STATUSES, Subscriber, weakens

# Rows fetched per query while streaming: the list is read a page at a time (keyset pagination),
# so no read transaction stays open for a whole send and memory stays flat for any list size.
PAGE_SIZE = 1000
# SQLite's default limit on bound parameters is far above this; small batches keep queries cheap.
LOOKUP_BATCH = 500

_COLUMNS = "address, name, status, source, joined_at, changed_at, reason, status_at, resubscribed_at, edition, edition_at"


def address_key(address: str) -> str:
    """What makes two addresses the same subscriber: equal without regard to case."""
    return address.casefold()


def _timestamp(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _parsed(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value is not None else None


def _subscriber(row: tuple) -> Subscriber:
    address, name, status, source, joined_at, changed_at, reason, status_at, resubscribed_at, edition, edition_at = row
    return Subscriber(
        address=address,
        name=name,
        status=status,
        source=source,
        joined_at=dt.datetime.fromisoformat(joined_at),
        changed_at=dt.datetime.fromisoformat(changed_at),
        reason=reason,
        status_at=_parsed(status_at),
        resubscribed_at=_parsed(resubscribed_at),
        edition=edition,
        edition_at=_parsed(edition_at),
    )


def _row(subscriber: Subscriber) -> tuple:
    return (
        subscriber.address,
        address_key(subscriber.address),
        subscriber.name,
        subscriber.status,
        subscriber.source,
        _timestamp(subscriber.joined_at),
        _timestamp(subscriber.changed_at),
        subscriber.reason,
        _timestamp(subscriber.status_at),
        _timestamp(subscriber.resubscribed_at),
        subscriber.edition,
        _timestamp(subscriber.edition_at),
    )


def stream(connection: sqlite3.Connection, statuses: Collection[str] = SUBSCRIBER_STATUSES) -> Iterator[Subscriber]:
    """Subscribers with one of `statuses`, ordered by address key, read PAGE_SIZE rows at a time."""
    placeholders = ", ".join("?" for _ in statuses)
    query = (
        f"SELECT {_COLUMNS}, address_key FROM subscriber "
        f"WHERE status IN ({placeholders}) AND address_key > ? ORDER BY address_key LIMIT {PAGE_SIZE}"
    )
    after = ""
    while True:
        rows = connection.execute(query, (*statuses, after)).fetchall()
        for row in rows:
            yield _subscriber(row[:-1])
        if len(rows) < PAGE_SIZE:
            return
        after = rows[-1][-1]


def count_by_status(connection: sqlite3.Connection) -> dict[str, int]:
    counts = dict.fromkeys(SUBSCRIBER_STATUSES, 0)
    counts.update(connection.execute("SELECT status, count(*) FROM subscriber GROUP BY status"))
    return counts


def count_by_edition(connection: sqlite3.Connection, status: str = "subscribed") -> dict[str, int]:
    """How many subscribers with `status` get each edition."""
    counts = dict.fromkeys(EDITIONS, 0)
    counts.update(connection.execute("SELECT edition, count(*) FROM subscriber WHERE status = ? GROUP BY edition",
                                     (status,)))
    return counts


def count_with_status(connection: sqlite3.Connection, status: str) -> int:
    return connection.execute("SELECT count(*) FROM subscriber WHERE status = ?", (status,)).fetchone()[0]


def find(connection: sqlite3.Connection, addresses: Iterable[str]) -> dict[str, Subscriber]:
    """The stored subscribers among `addresses`, by address key."""
    keys = list({address_key(address) for address in addresses})
    found: dict[str, Subscriber] = {}
    for start in range(0, len(keys), LOOKUP_BATCH):
        batch = keys[start : start + LOOKUP_BATCH]
        placeholders = ", ".join("?" for _ in batch)
        query = f"SELECT {_COLUMNS}, address_key FROM subscriber WHERE address_key IN ({placeholders})"
        for row in connection.execute(query, batch):
            found[row[-1]] = _subscriber(row[:-1])
    return found


def insert_many(connection: sqlite3.Connection, subscribers: Iterable[Subscriber]) -> None:
    connection.executemany(
        "INSERT INTO subscriber (address, address_key, name, status, source, joined_at, changed_at, reason, "
        "status_at, resubscribed_at, edition, edition_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (_row(subscriber) for subscriber in subscribers),
    )


def set_status(
    connection: sqlite3.Connection, address: str, status: str, reason: str | None, now: dt.datetime
) -> str | None:
    """The editor sets one subscriber's status now; the status it had before, or None if the
    address is unknown. Setting `subscribed` is an explicit resubscribe (events older than it no
    longer count).

    Setting the status it already has changes nothing (the first reason and time are kept), and
    neither does a weaker opt-out than the one it holds (an unsubscribe of an address that
    complained): the stronger stays.
    """
    key = address_key(address)
    row = connection.execute("SELECT status FROM subscriber WHERE address_key = ?", (key,)).fetchone()
    if row is not None and row[0] != status and not weakens(status, row[0]):
        connection.execute(
            "UPDATE subscriber SET status = :status, reason = :reason, changed_at = :now, status_at = :now, "
            "resubscribed_at = CASE WHEN :status = 'subscribed' THEN :now ELSE resubscribed_at END "
            "WHERE address_key = :key",
            {"status": status, "reason": reason, "now": _timestamp(now), "key": key},
        )
    return row[0] if row is not None else None


def record_status(
    connection: sqlite3.Connection, address: str, status: str, reason: str | None, at: dt.datetime,
    now: dt.datetime, name: str | None = None,
) -> None:
    """Write a status change an event decided (`newsletter.events.apply` orders them): `at` is
    the event's own time, `now` when it was applied; a `name` replaces the stored one."""
    connection.execute(
        "UPDATE subscriber SET status = ?, reason = ?, status_at = ?, changed_at = ?, name = coalesce(?, name) "
        "WHERE address_key = ?",
        (status, reason, _timestamp(at), _timestamp(now), name, address_key(address)),
    )


def record_edition(connection: sqlite3.Connection, address: str, edition: str, at: dt.datetime, now: dt.datetime
                   ) -> None:
    """Write an edition change that a choice decided (`newsletter.events.apply` orders them): `at`
    is when the choice was made, `now` when it was applied."""
    connection.execute(
        "UPDATE subscriber SET edition = ?, edition_at = ?, changed_at = ? WHERE address_key = ?",
        (edition, _timestamp(at), _timestamp(now), address_key(address)),
    )


def delete(connection: sqlite3.Connection, address: str) -> bool:
    cursor = connection.execute("DELETE FROM subscriber WHERE address_key = ?", (address_key(address),))
    return cursor.rowcount > 0


# An import's rows on their way in. A temporary table (in SQLite's temp file, not the database)
# holds one row per address as the file is read: SQLite merges duplicates as they arrive, so an
# import's memory stays flat for any file size, and the plan (new, changed, left alone) is a join.

STAGING_BATCH = 5_000

_STAGING_TABLE = """
    CREATE TEMP TABLE IF NOT EXISTS import_row (
        address_key TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        name TEXT,
        status TEXT NOT NULL,
        source TEXT NOT NULL,
        joined_at TEXT,
        changed_at TEXT,
        reason TEXT,                   -- (rowid: the row's place in the file; new subscribers keep that order)
        edition TEXT NOT NULL,         -- the file's (bilingual when it has no edition column)
        duplicates INTEGER NOT NULL DEFAULT 0,
        verdict TEXT                   -- what the import does with it; see plan_import
    )
"""


def _strength(column: str) -> str:
    """SQL for STATUS_STRENGTH of a status column."""
    return "CASE " + column + "".join(f" WHEN '{status}' THEN {rank}" for status, rank in STATUS_STRENGTH.items()) \
        + " END"


# The first row of an address wins (its edition too); a later one may fill in a missing name, and
# the strongest opt-out in the file (with its reason) wins over a weaker one or a plain
# subscription. SET reads the row as it was.
_STAGE_ROW = f"""
    INSERT INTO import_row (address, address_key, name, status, source, joined_at, changed_at, reason, edition)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (address_key) DO UPDATE SET
        duplicates = duplicates + 1,
        name = coalesce(name, excluded.name),
        reason = CASE WHEN {_strength("excluded.status")} > {_strength("status")} THEN excluded.reason ELSE reason END,
        status = CASE WHEN {_strength("excluded.status")} > {_strength("status")} THEN excluded.status ELSE status END
"""

# Whether the file changes a stored subscriber's edition: only a file that says editions
# (`:editions`, an edition column or `add --edition`) sets them; any other keeps each reader's.
_NEW_EDITION = "(:editions AND import_row.edition != s.edition)"

# What happens to each staged address, given the stored one (none: 'new'). An opt-out in the file
# stronger than the stored status is recorded; a weaker one changes nothing.
_PLAN = f"""
    UPDATE import_row SET verdict = coalesce((
        SELECT CASE
            WHEN {_strength("import_row.status")} > {_strength("s.status")} THEN 'opt-out'
            WHEN s.status != 'subscribed' AND import_row.status = 'subscribed'
                THEN CASE WHEN :resubscribe THEN 'resubscribe' ELSE 'left:' || s.status END
            WHEN (import_row.name IS NOT NULL AND import_row.name IS NOT s.name) OR {_NEW_EDITION} THEN 'edit'
            ELSE 'unchanged'
        END
        FROM subscriber AS s WHERE s.address_key = import_row.address_key
    ), 'new')
"""

# An edit (a new name or edition) sets only those and changed_at: it is no status change, so it
# shields from no status event (see newsletter/events/apply.py); a changed edition is the editor's
# choice now, ordered as such against the readers' own. A new subscriber's edition is nobody's
# choice yet (an export imports back to the same list). An opt-out in the file happens now; so
# does a resubscribe, which is the editor's explicit re-join. An address that left and stays out
# is left as it is.
_APPLY = (
    """INSERT INTO subscriber (address, address_key, name, status, source, joined_at, changed_at, reason, status_at,
                               edition, edition_at)
        SELECT address, address_key, name, status, source, coalesce(joined_at, :now),
               coalesce(changed_at, :now), reason,
               CASE WHEN status != 'subscribed' THEN coalesce(changed_at, :now) END,
               edition, NULL
        FROM import_row WHERE verdict = 'new' ORDER BY rowid""",
    """UPDATE subscriber SET edition = i.edition, edition_at = :now, changed_at = :now
       FROM import_row AS i WHERE i.address_key = subscriber.address_key
         AND i.verdict IN ('opt-out', 'resubscribe', 'edit') AND :editions AND i.edition != subscriber.edition""",
    """UPDATE subscriber SET status = i.status, changed_at = :now, status_at = :now,
              reason = coalesce(i.reason, i.status || ' in ' || :source)
       FROM import_row AS i WHERE i.address_key = subscriber.address_key AND i.verdict = 'opt-out'""",
    """UPDATE subscriber SET name = coalesce(i.name, subscriber.name), status = 'subscribed',
              changed_at = :now, status_at = :now, resubscribed_at = :now, reason = 'resubscribed by ' || :source
       FROM import_row AS i WHERE i.address_key = subscriber.address_key AND i.verdict = 'resubscribe'""",
    """UPDATE subscriber SET name = coalesce(i.name, subscriber.name), changed_at = :now
       FROM import_row AS i WHERE i.address_key = subscriber.address_key AND i.verdict = 'edit'""",
)


class Staging:
    """The rows of one import, merged by address as they are added (see `_STAGE_ROW`)."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection
        self.rows = 0
        self._editions = False  # set by `plan`
        connection.execute(_STAGING_TABLE)
        connection.execute("DELETE FROM temp.import_row")

    def add(self, subscribers: Iterable[Subscriber]) -> None:
        """Stage subscribers, STAGING_BATCH rows per statement and transaction."""
        rows = iter(subscribers)
        while batch := list(itertools.islice(rows, STAGING_BATCH)):
            # A deferred transaction that writes only the temp table takes no lock on the
            # database, so a send or the web endpoint can go on writing meanwhile.
            self.connection.execute("BEGIN")
            try:
                # A file gives no status times (`_APPLY` sets them): the first eight columns, and
                # the edition.
                self.connection.executemany(
                    _STAGE_ROW, ((*_row(subscriber)[:8], subscriber.edition) for subscriber in batch))
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")
            self.rows += len(batch)

    def duplicates(self) -> int:
        return self.connection.execute("SELECT coalesce(sum(duplicates), 0) FROM import_row").fetchone()[0]

    def plan(self, *, resubscribe: bool, editions: bool = False) -> dict[tuple[str, str], int]:
        """(verdict, status in the file) -> how many. Verdicts: new, opt-out, resubscribe,
        edit (a new name or edition), unchanged, and left:STATUS for an address that left and
        stays out. `editions`: the rows' editions are the editor's (the file has an edition
        column); otherwise stored subscribers keep theirs."""
        self._editions = editions
        self.connection.execute(_PLAN, {"resubscribe": resubscribe, "editions": editions})
        query = "SELECT verdict, status, count(*) FROM import_row GROUP BY verdict, status"
        return {(verdict, status): count for verdict, status, count in self.connection.execute(query)}

    def apply(self, now: dt.datetime, source: str) -> None:
        """Write the plan to the subscriber table (call `plan` first, in the same transaction)."""
        values = {"now": _timestamp(now), "source": source, "editions": self._editions}
        for statement in _APPLY:
            self.connection.execute(statement, values)

    def close(self) -> None:
        self.connection.execute("DROP TABLE IF EXISTS temp.import_row")
