"""Opening the SQLite database: connection settings and numbered schema migrations.

Opening is cheap (one connect, four PRAGMAs, one read of `user_version`), so code that runs in
threads opens one connection per thread instead of sharing one: sqlite3 connections must not be
used from two threads at once.

To change the schema, APPEND a `Migration` to `MIGRATIONS` with the next number; never edit one
that has shipped. Every migration not yet applied runs on open, all of them in one transaction,
and `PRAGMA user_version` records the last one applied.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError

# How long a writer waits for another writer (the send engine's threads, a second CLI command)
# before giving up with "database is locked".
BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "subscribers",
        (
            """
            CREATE TABLE subscriber (
                id INTEGER PRIMARY KEY,
                -- address as normalised by email-validator; address_key is its casefold, so an
                -- address is unique without regard to case (Unicode too, unlike COLLATE NOCASE)
                address TEXT NOT NULL,
                address_key TEXT NOT NULL UNIQUE,
                name TEXT,
                status TEXT NOT NULL DEFAULT 'subscribed'
                    CHECK (status IN ('subscribed', 'unsubscribed', 'bounced', 'complained')),
                source TEXT NOT NULL DEFAULT '',
                joined_at TEXT NOT NULL,   -- ISO 8601, UTC
                changed_at TEXT NOT NULL,  -- ISO 8601, UTC
                reason TEXT                -- why the status last changed
            )
            """,
            "CREATE INDEX subscriber_by_status ON subscriber (status, address_key)",
        ),
    ),
    Migration(
        2,
        "send ledger",
        (
            """
            CREATE TABLE delivery (
                id INTEGER PRIMARY KEY,
                issue_id TEXT NOT NULL,
                address TEXT NOT NULL,
                address_key TEXT NOT NULL,  -- joins subscriber.address_key
                state TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'skipped')),
                attempts INTEGER NOT NULL DEFAULT 0,
                message_id TEXT,
                error_kind TEXT,
                error_code TEXT,
                error TEXT,
                enqueued_at TEXT NOT NULL,  -- ISO 8601, UTC
                -- microseconds kept: the rate check counts calls per one-second window
                started_at TEXT,
                finished_at TEXT,
                UNIQUE (issue_id, address_key)
            )
            """,
            "CREATE INDEX delivery_by_state ON delivery (issue_id, state, id)",
            "CREATE INDEX delivery_sent_recently ON delivery (state, finished_at)",
        ),
    ),
    Migration(
        3,
        "feedback loop: SES events and our own, applied once each",
        (
            # Every event `sync` applied, by its SNS MessageId or our own event id: applying the
            # same message twice changes nothing.
            """
            CREATE TABLE applied_event (
                event_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                applied_at TEXT NOT NULL  -- ISO 8601, UTC
            ) WITHOUT ROWID
            """,
            "CREATE INDEX applied_event_by_time ON applied_event (applied_at)",
            # SES reports name the message by the MessageId SendEmail returned.
            "CREATE INDEX delivery_by_message_id ON delivery (message_id) WHERE message_id IS NOT NULL",
            # The strongest report on the row so far (delivery < delay... < complaint, see
            # store/events.py), and every report, for the counts.
            "ALTER TABLE delivery ADD COLUMN feedback TEXT",
            "ALTER TABLE delivery ADD COLUMN feedback_at TEXT",
            """
            CREATE TABLE delivery_event (
                id INTEGER PRIMARY KEY,
                delivery_id INTEGER NOT NULL REFERENCES delivery (id) ON DELETE CASCADE,
                issue_id TEXT NOT NULL,
                kind TEXT NOT NULL,  -- send, delivery, delay, reject, rendering_failure, bounce,
                                     -- soft_bounce, complaint, open, click
                detail TEXT,
                at TEXT NOT NULL     -- ISO 8601, UTC: when SES says it happened
            )
            """,
            "CREATE INDEX delivery_event_by_issue ON delivery_event (issue_id, kind, delivery_id)",
            """
            CREATE TABLE transient_bounce (
                address_key TEXT NOT NULL,
                at TEXT NOT NULL
            )
            """,
            "CREATE INDEX transient_bounce_by_address ON transient_bounce (address_key, at)",
            "CREATE TABLE sync_run (id INTEGER PRIMARY KEY, finished_at TEXT NOT NULL, applied INTEGER NOT NULL)",
        ),
    ),
    Migration(
        4,
        "what version of an issue each row was sent",
        (
            """
            CREATE TABLE issue_version (
                id INTEGER PRIMARY KEY,
                issue_id TEXT NOT NULL,
                subject TEXT NOT NULL,
                content_hash TEXT NOT NULL,  -- sha256 of the rendered HTML and text parts
                first_used_at TEXT NOT NULL,  -- ISO 8601, UTC
                UNIQUE (issue_id, subject, content_hash)
            )
            """,
            "ALTER TABLE delivery ADD COLUMN version_id INTEGER REFERENCES issue_version (id)",
        ),
    ),
    Migration(
        5,
        "the archive's index of published issues; the subscribe form's daily records",
        (
            """
            CREATE TABLE published_issue (
                issue_id TEXT PRIMARY KEY,         -- the issue's date, ISO 8601
                title TEXT NOT NULL,
                summary TEXT NOT NULL,             -- the feed entry's summary (the preheader)
                paper_titles TEXT NOT NULL,        -- JSON array, for the index page
                page_sha256 TEXT NOT NULL,         -- of the published <date>.web.html
                first_published_at TEXT NOT NULL,  -- ISO 8601, UTC
                updated_at TEXT NOT NULL,          -- ISO 8601, UTC: the page last changed
                published_to TEXT NOT NULL         -- the folder and S3 URL it went to
            ) WITHOUT ROWID
            """,
            # The subscribe form's "one confirmation email per address per day": a keyed hash of
            # (day, address), never the address itself (most are typed by strangers, or bots).
            """
            CREATE TABLE confirmation_request (
                record TEXT PRIMARY KEY,
                day TEXT NOT NULL  -- ISO 8601 date, UTC
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        6,
        "the archive keeps each paper (anchor, titles, tags, searchable text) for tag pages and search",
        (
            # JSON array of {slug, title_ko, title_en, tags, text}. A week published before this
            # keeps its titles, with no anchor, tags or text until it is published again.
            "ALTER TABLE published_issue ADD COLUMN papers TEXT NOT NULL DEFAULT '[]'",
            """
            UPDATE published_issue SET papers = (
                SELECT json_group_array(json_object('slug', '', 'title_ko', title.value, 'title_en', NULL,
                                                    'tags', json('[]'), 'text', ''))
                FROM json_each(published_issue.paper_titles) AS title
            )
            """,
            "ALTER TABLE published_issue DROP COLUMN paper_titles",
        ),
    ),
    Migration(
        7,
        "a status change's own time, kept apart from other edits; an editor's re-join",
        (
            # When the event that gave the subscriber its status happened (the event's own time,
            # not when sync applied it): what the next status change is ordered against (see
            # newsletter/events/apply.py). NULL on a subscription the editor added, which
            # shields from nothing. `changed_at` stays the time of the last edit of any kind.
            "ALTER TABLE subscriber ADD COLUMN status_at TEXT",
            # An editor's explicit resubscribe: events older than it no longer count.
            "ALTER TABLE subscriber ADD COLUMN resubscribed_at TEXT",
            # Before this, a status change and a rename both set changed_at; it is the best record
            # of a status change for the rows whose reason says their status last changed.
            """UPDATE subscriber SET status_at = changed_at
               WHERE status != 'subscribed' OR reason = 'confirmed on the subscribe form'
                  OR reason LIKE 'resubscribed by %'""",
            "UPDATE subscriber SET resubscribed_at = changed_at WHERE status = 'subscribed' AND reason LIKE 'resubscribed by %'",
        ),
    ),
    Migration(
        8,
        "each reader's edition (bilingual, ko, en), and the edition each ledger row is sent",
        (
            # Everyone had the bilingual email until now.
            """ALTER TABLE subscriber ADD COLUMN edition TEXT NOT NULL DEFAULT 'bilingual'
                   CHECK (edition IN ('bilingual', 'ko', 'en'))""",
            # When the choice that set it was made (ISO 8601, UTC, microseconds kept): edition
            # changes are ordered by it, apart from status changes. NULL: nobody chose yet.
            "ALTER TABLE subscriber ADD COLUMN edition_at TEXT",
            # Fixed when the row is queued, so a resume sends the edition the reader had then.
            """ALTER TABLE delivery ADD COLUMN edition TEXT NOT NULL DEFAULT 'bilingual'
                   CHECK (edition IN ('bilingual', 'ko', 'en'))""",
        ),
    ),
]


def _check_numbering(migrations: list[Migration]) -> None:
    numbers = [migration.version for migration in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise AssertionError(f"migrations must be numbered 1, 2, 3, ... in order, got {numbers}")


_check_numbering(MIGRATIONS)


def explain(path: str | Path, error: sqlite3.Error) -> StoreError:
    """An SQLite failure in the words of what the editor can do about it."""
    text = str(error)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"{path}: the database is busy: another program has been writing to it for more than "
            f"{BUSY_TIMEOUT_MS / 1000:g} s (another newsletter command, or a tool holding it open); "
            "let it finish or close it, then try again"
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(
            f"{path}: the database is read-only (a read-only file, folder or disk): SQLite must write "
            "the file and create its -wal and -shm files in the same folder; make them writable"
        )
    if "unable to open" in text:
        return StoreError(
            f"{path}: cannot open the database: SQLite could not open the file or create its -wal and "
            "-shm files next to it (a read-only or inaccessible folder); make the folder writable"
        )
    if "disk is full" in text:
        return StoreError(f"{path}: the disk is full; free some space, then try again")
    return StoreError(f"{path}: not a usable newsletter database ({text})")


def check_single_name(path: Path) -> None:
    """Refuse a database file with a second hard link: SQLite keeps its -wal and -shm files next
    to the name it was opened by, so two names would be two journals for one file."""
    try:
        links = path.stat().st_nlink
    except OSError:
        return  # not there yet (it is created on open) or not readable (the open says so)
    if links > 1:
        raise StoreError(
            f"{path}: the database file has {links} names (hard links); SQLite keeps its journal next "
            "to the name used, so opening it by two names can corrupt it: delete the other link "
            "(a symbolic link is safe)"
        )


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database; raise StoreError if it cannot be used.

    The connection is in autocommit mode: writes that belong together go inside `transaction()`.
    """
    path = Path(path)
    try:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            check_single_name(path)
        connection = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except (OSError, sqlite3.Error) as error:
        raise StoreError(f"{path}: cannot open the database ({error})") from None
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL loses no committed transaction on a crash of the process.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        _migrate(connection, path)
    except sqlite3.DatabaseError as error:  # locked, read-only, disk full, or not a database at all
        connection.close()
        raise explain(path, error) from None
    except BaseException:
        connection.close()
        raise
    return connection


def schema_version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA user_version").fetchone()[0]


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    latest = len(MIGRATIONS)
    if schema_version(connection) == latest:
        return
    # IMMEDIATE takes the write lock first, so two processes opening a fresh database at once
    # cannot both apply migration 1; the version is read again under the lock.
    with transaction(connection):
        current = schema_version(connection)
        if current > latest:
            raise StoreError(
                f"{path}: the database has schema version {current}, newer than this program's "
                f"{latest}; upgrade newsletter"
            )
        for migration in MIGRATIONS[current:]:
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {migration.version}")


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection, *, commit: bool = True) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises: all of it or none of it.

    With commit=False the block's writes are always rolled back (a dry run of real writes).
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT" if commit else "ROLLBACK")


@contextlib.contextmanager
def savepoint(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A part of the transaction already open that is undone alone if the block raises."""
    connection.execute("SAVEPOINT part")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK TO part")
        connection.execute("RELEASE part")
        raise
    connection.execute("RELEASE part")
