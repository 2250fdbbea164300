"""The subscriber table's queries. Functions of a connection; `Store` is how the rest calls them."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Collection, Iterable, Iterator

from ..model import SUBSCRIBER_STATUSES, Subscriber

# Rows fetched per query while streaming: the list is read a page at a time (keyset pagination),
# so no read transaction stays open for a whole send and memory stays flat for any list size.
PAGE_SIZE = 1000
# SQLite's default limit on bound parameters is far above this; small batches keep queries cheap.
LOOKUP_BATCH = 500

_COLUMNS = "address, name, status, source, joined_at, changed_at, reason"


def address_key(address: str) -> str:
    """What makes two addresses the same subscriber: equal without regard to case."""
    return address.casefold()


def _timestamp(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _subscriber(row: tuple) -> Subscriber:
    address, name, status, source, joined_at, changed_at, reason = row
    return Subscriber(
        address=address,
        name=name,
        status=status,
        source=source,
        joined_at=dt.datetime.fromisoformat(joined_at),
        changed_at=dt.datetime.fromisoformat(changed_at),
        reason=reason,
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
        "INSERT INTO subscriber (address, address_key, name, status, source, joined_at, changed_at, reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (_row(subscriber) for subscriber in subscribers),
    )


def update_many(connection: sqlite3.Connection, subscribers: Iterable[Subscriber]) -> None:
    """Store the name, status, change time and reason of subscribers already in the table."""
    connection.executemany(
        "UPDATE subscriber SET name = ?, status = ?, changed_at = ?, reason = ? WHERE address_key = ?",
        (
            (s.name, s.status, _timestamp(s.changed_at), s.reason, address_key(s.address))
            for s in subscribers
        ),
    )


def set_status(
    connection: sqlite3.Connection, address: str, status: str, reason: str | None, now: dt.datetime
) -> str | None:
    """Set one subscriber's status; the status it had before, or None if the address is unknown.

    Setting the status it already has changes nothing (the first reason and time are kept).
    """
    key = address_key(address)
    row = connection.execute("SELECT status FROM subscriber WHERE address_key = ?", (key,)).fetchone()
    if row is not None and row[0] != status:
        connection.execute(
            "UPDATE subscriber SET status = ?, reason = ?, changed_at = ? WHERE address_key = ?",
            (status, reason, _timestamp(now), key),
        )
    return row[0] if row is not None else None


def delete(connection: sqlite3.Connection, address: str) -> bool:
    cursor = connection.execute("DELETE FROM subscriber WHERE address_key = ?", (address_key(address),))
    return cursor.rowcount > 0
