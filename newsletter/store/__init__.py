"""The SQLite store: the one place in `newsletter` that writes SQL.

    with Store.open(config.database) as store:
        for subscriber in store.subscribed():
            ...

A `Store` wraps one sqlite3 connection, which must stay in the thread that opened it. Opening is
cheap, so threads (the send engine's workers, the web server's) each open their own.
Each table's queries live in their own module (`subscribers.py`, ...); migrations in `db.py`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from types import TracebackType

from ..errors import StoreError
from ..model import SUBSCRIBER_STATUSES, Subscriber
from . import db
from . import subscribers as subscriber_table
from .subscribers import address_key

__all__ = ["Store", "Subscriber", "address_key", "utc_now"]


def utc_now() -> dt.datetime:
    """The time stamps the store keeps: UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Store:
    def __init__(self, connection: sqlite3.Connection, path: Path):
        self.connection = connection
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open the database at `path`, creating it and applying migrations as needed."""
        return cls(db.connect(path), Path(path))

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[Store]:
        """Everything written inside the block is committed together, or nothing if it raises
        (or if commit=False: a dry run)."""
        with db.transaction(self.connection, commit=commit):
            yield self

    @property
    def schema_version(self) -> int:
        return db.schema_version(self.connection)

    # Subscribers

    def subscribed(self) -> Iterator[Subscriber]:
        """Everyone a send goes to, ordered by address, streamed a page at a time."""
        return subscriber_table.stream(self.connection, ("subscribed",))

    def subscribers(self, statuses: Collection[str] = SUBSCRIBER_STATUSES) -> Iterator[Subscriber]:
        """Subscribers with any of `statuses` (all by default), ordered by address, streamed."""
        unknown = set(statuses) - set(SUBSCRIBER_STATUSES)
        if unknown:
            raise StoreError(f"unknown status {sorted(unknown)[0]!r}; expected one of {', '.join(SUBSCRIBER_STATUSES)}")
        return subscriber_table.stream(self.connection, tuple(statuses))

    def count_subscribed(self) -> int:
        return subscriber_table.count_with_status(self.connection, "subscribed")

    def count_by_status(self) -> dict[str, int]:
        return subscriber_table.count_by_status(self.connection)

    def get(self, address: str) -> Subscriber | None:
        return self.find([address]).get(address_key(address))

    def find(self, addresses: Iterable[str]) -> dict[str, Subscriber]:
        """The stored subscribers among `addresses`, keyed by `address_key`."""
        return subscriber_table.find(self.connection, addresses)

    def insert(self, subscribers: Iterable[Subscriber]) -> None:
        """Add new subscribers (StoreError if one is already stored)."""
        try:
            subscriber_table.insert_many(self.connection, subscribers)
        except sqlite3.IntegrityError as error:
            raise StoreError(f"{self.path}: cannot add subscribers ({error})") from None

    def update(self, subscribers: Iterable[Subscriber]) -> None:
        """Store new names, statuses and reasons of subscribers already stored."""
        subscriber_table.update_many(self.connection, subscribers)

    def set_status(self, address: str, status: str, reason: str | None, *, record_unknown: bool = False) -> str | None:
        """Give `address` a new status, e.g. ("unsubscribed", "one-click"); returns its previous
        status, or None if it was not on the list. With `record_unknown`, an unknown address is
        added with that status, so that a later import cannot subscribe it.
        """
        if status not in SUBSCRIBER_STATUSES:
            raise StoreError(f"unknown status {status!r}; expected one of {', '.join(SUBSCRIBER_STATUSES)}")
        now = utc_now()
        previous = subscriber_table.set_status(self.connection, address, status, reason, now)
        if previous is None and record_unknown:
            self.insert([Subscriber(address, None, status, "manual", now, now, reason)])
        return previous

    def delete(self, address: str) -> bool:
        """Forget `address` entirely (True if it was stored)."""
        return subscriber_table.delete(self.connection, address)
