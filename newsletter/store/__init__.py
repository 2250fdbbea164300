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
import functools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from types import TracebackType

from ..errors import StoreError
from ..model import EDITIONS, SUBSCRIBER_STATUSES, Delivery, PublishedIssue, Subscriber
from . import db
from . import ledger
from . import confirmation_requests, published
from . import subscribers as subscriber_table
from .subscribers import address_key

__all__ = ["Delivery", "Store", "Subscriber", "address_key", "utc_now"]


def _explained(method: Callable) -> Callable:
    """A ledger call whose SQLite errors (locked past the busy timeout, read-only, disk full) are
    a StoreError that says what to do (`Store.writing`), instead of a traceback mid-send."""

    @functools.wraps(method)
    def call(self: Store, *args, **kwargs):
        with self.writing():
            return method(self, *args, **kwargs)

    return call


def utc_now() -> dt.datetime:
    """The time stamps the store keeps: UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _check_status(status: str) -> None:
    if status not in SUBSCRIBER_STATUSES:
        raise StoreError(f"unknown status {status!r}; expected one of {', '.join(SUBSCRIBER_STATUSES)}")


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
        with self.writing(), db.transaction(self.connection, commit=commit):
            yield self

    @contextlib.contextmanager
    def part(self) -> Iterator[Store]:
        """Inside `transaction()`: everything written inside the block, or nothing if it raises,
        while the rest of the transaction stands (an SQLite savepoint). Outside one: a transaction."""
        if not self.connection.in_transaction:
            with self.transaction():
                yield self
            return
        with self.writing(), db.savepoint(self.connection):
            yield self

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A write that SQLite refuses (a read-only file or folder, a lock held past the busy
        timeout) is a StoreError naming the database, not a traceback."""
        try:
            yield
        except sqlite3.OperationalError as error:
            raise db.explain(self.path, error) from None

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

    def count_by_edition(self, status: str = "subscribed") -> dict[str, int]:
        """How many subscribers with `status` get each edition."""
        _check_status(status)
        return subscriber_table.count_by_edition(self.connection, status)

    def get(self, address: str) -> Subscriber | None:
        return self.find([address]).get(address_key(address))

    def find(self, addresses: Iterable[str]) -> dict[str, Subscriber]:
        """The stored subscribers among `addresses`, keyed by `address_key`."""
        return subscriber_table.find(self.connection, addresses)

    def insert(self, subscribers: Iterable[Subscriber]) -> None:
        """Add new subscribers (StoreError if one is already stored)."""
        try:
            with self.writing():
                subscriber_table.insert_many(self.connection, subscribers)
        except sqlite3.IntegrityError as error:
            raise StoreError(f"{self.path}: cannot add subscribers ({error})") from None

    @contextlib.contextmanager
    def import_staging(self) -> Iterator[subscriber_table.Staging]:
        """A temporary table for the rows of one import (`subscribers.Staging`), dropped after."""
        staging = subscriber_table.Staging(self.connection)
        try:
            yield staging
        finally:
            staging.close()

    def set_status(self, address: str, status: str, reason: str | None, *, record_unknown: bool = False) -> str | None:
        """Give `address` a new status, e.g. ("unsubscribed", "one-click"); returns its previous
        status, or None if it was not on the list. With `record_unknown`, an unknown address is
        added with that status, so that a later import cannot subscribe it.
        """
        _check_status(status)
        now = utc_now()
        with self.writing():
            previous = subscriber_table.set_status(self.connection, address, status, reason, now)
        if previous is None and record_unknown:
            self.insert([Subscriber(address, None, status, "manual", now, now, reason, status_at=now,
                                    resubscribed_at=now if status == "subscribed" else None)])
        return previous

    def record_status(self, address: str, status: str, reason: str | None, at: dt.datetime, *,
                      name: str | None = None) -> None:
        """Write a status change that an event decided (`newsletter.events.apply` orders them by
        `at`, the event's own time); the address must be on the list."""
        _check_status(status)
        with self.writing():
            subscriber_table.record_status(self.connection, address, status, reason, at, utc_now(), name)

    def record_edition(self, address: str, edition: str, at: dt.datetime) -> None:
        """Write an edition change that a choice decided (`newsletter.events.apply` orders them by
        `at`, when the choice was made); the address must be on the list."""
        if edition not in EDITIONS:
            raise StoreError(f"unknown edition {edition!r}; expected one of {', '.join(EDITIONS)}")
        with self.writing():
            subscriber_table.record_edition(self.connection, address, edition, at, utc_now())

    def delete(self, address: str) -> bool:
        """Forget `address` entirely (True if it was stored)."""
        with self.writing():
            return subscriber_table.delete(self.connection, address)

    # The send ledger (one row per issue and recipient; see `ledger.py`)

    @_explained
    def prepare_issue(
        self,
        issue_id: str,
        *,
        resend_unknown: bool = False,
        retry_failed: bool = False,
        version: ledger.IssueVersion | None = None,
        allow_changed_version: bool = False,
        commit: bool = True,
    ) -> ledger.Preparation:
        """Bring the issue's ledger up to date before a run, in one transaction: rows a crashed run
        left `sending` become `unknown`, subscribed addresses without a row are queued, queued
        addresses that left the list are skipped (and back if they returned), and `unknown` or
        `failed` rows go back to `pending` if asked. With `version`, IssueChangedError if rows
        were sent a different version (unless `allow_changed_version`). commit=False: what it
        would do, changing nothing (to show before asking)."""
        requeued_states = [state for state, asked in (("unknown", resend_unknown), ("failed", retry_failed)) if asked]
        now = ledger.precise_now()
        with self.transaction(commit=commit):
            interrupted = ledger.mark_interrupted(self.connection, issue_id, now)
            queued = ledger.enqueue_subscribed(self.connection, issue_id, now)
            ledger.sync_with_list(self.connection, issue_id)
            ledger.requeue(self.connection, issue_id, requeued_states)
            version_id = None
            if version is not None:
                version_id = ledger.check_version(
                    self.connection, issue_id, version, now, allow_change=allow_changed_version
                )
            return ledger.Preparation(interrupted, queued, ledger.counts(self.connection, issue_id), version_id)

    @_explained
    def delivery_counts(self, issue_id: str) -> dict[str, int]:
        return ledger.counts(self.connection, issue_id)

    @_explained
    def delivery_counts_by_edition(self, issue_id: str) -> dict[str, dict[str, int]]:
        """The issue's rows by the edition they are sent, then by state."""
        return ledger.counts_by_edition(self.connection, issue_id)

    @_explained
    def latest_issue(self) -> str | None:
        return ledger.latest_issue(self.connection)

    @_explained
    def count_unqueued(self, issue_id: str) -> int:
        """Subscribed addresses the issue has not been queued for (the next send queues them)."""
        return ledger.count_unqueued(self.connection, issue_id)

    @_explained
    def pending_deliveries(self, issue_id: str, *, after_id: int = 0, limit: int = 500) -> list[Delivery]:
        return ledger.pending_page(self.connection, issue_id, after_id, limit)

    def deliveries(self, issue_id: str, states: Collection[str]) -> Iterator[Delivery]:
        """The issue's rows in `states`, in queueing order (e.g. the failed and unknown ones)."""
        return ledger.with_states(self.connection, issue_id, tuple(states))

    @_explained
    def claim_delivery(self, delivery_id: int, started_at: dt.datetime | None = None, version_id: int | None = None) -> str:
        """Mark the row `sending` (committed before the call) if it is still `pending`: "claimed",
        or "skipped" (left the list) or "taken" (another run has it). `started_at`: when the rate
        limiter let the call go (default: now); `version_id`: what is being sent."""
        return ledger.claim(self.connection, delivery_id, started_at or ledger.precise_now(), version_id)

    @_explained
    def finish_delivery(self, delivery_id: int, state: str, *, message_id: str | None = None, error=None) -> None:
        ledger.finish(self.connection, delivery_id, state, ledger.precise_now(), message_id=message_id, error=error)

    @_explained
    def fail_unsent_delivery(self, delivery_id: int, error: Exception) -> None:
        ledger.fail_unsent(self.connection, delivery_id, error, ledger.precise_now())

    @_explained
    def sent_in_last_24h(self) -> int:
        return ledger.sent_since(self.connection, ledger.precise_now() - dt.timedelta(hours=24))

    def send_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held for a whole send: SendError if another send holds this database file."""
        return ledger.send_lock(self.path)

    # The archive's index (`published.py`)

    def published_issues(self) -> list[PublishedIssue]:
        """Every published issue, newest first."""
        return published.all_entries(self.connection)

    def published_issue(self, issue_id: str) -> PublishedIssue | None:
        return published.get(self.connection, issue_id)

    def save_published(self, entries: Iterable[PublishedIssue], *, only: bool = False) -> list[str]:
        """Add or replace these issues in the index; with `only`, drop every other issue from it
        (returns the dropped issue ids)."""
        entries = list(entries)
        with self.transaction():
            dropped = published.delete_except(self.connection, [e.issue_id for e in entries]) if only else []
            published.save(self.connection, entries)
        return dropped

    # The subscribe form's daily records (`confirmation_requests.py`)

    def record_confirmation_request(self, record_key: str, today: dt.date) -> bool:
        """True if `record_key` (a keyed hash of day and address) was not yet recorded today."""
        with self.transaction():
            return confirmation_requests.record(self.connection, record_key, today)

    def forget_confirmation_request(self, record_key: str) -> None:
        with self.transaction():
            confirmation_requests.forget(self.connection, record_key)
