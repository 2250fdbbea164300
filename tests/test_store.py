"""The SQLite store: migrations on open, streaming, statuses, transactions, one connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from newsletter.errors import StoreError
from newsletter.model import Subscriber
from newsletter.store import Store, db, utc_now
from newsletter.store import subscribers as subscriber_table


def subscriber(address: str, status: str = "subscribed", name: str | None = None) -> Subscriber:
    now = utc_now()
    return Subscriber(address, name, status, "test", now, now, None)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "list.db") as opened:
        yield opened


def test_open_creates_the_schema_once_and_sets_the_connection_up(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "list.db"
    with Store.open(path) as store:
        assert store.schema_version == len(db.MIGRATIONS)
        assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.connection.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
        store.insert([subscriber("a@example.com")])
    with Store.open(path) as again:  # opening again migrates nothing and keeps the data
        assert again.count_subscribed() == 1


def test_an_appended_migration_runs_on_the_next_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "list.db"
    Store.open(path).close()
    ledger = db.Migration(len(db.MIGRATIONS) + 1, "ledger", ("CREATE TABLE ledger (id INTEGER PRIMARY KEY)",))
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, ledger])
    with Store.open(path) as store:
        assert store.schema_version == ledger.version
        assert store.connection.execute("SELECT count(*) FROM ledger").fetchone() == (0,)


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "list.db"
    Store.open(path).close()
    broken = db.Migration(
        len(db.MIGRATIONS) + 1, "broken", ("CREATE TABLE half (id INTEGER)", "CREATE TABLE oops (")
    )
    monkeypatch.setattr(db, "MIGRATIONS", [*db.MIGRATIONS, broken])
    with pytest.raises(StoreError, match="not a usable newsletter database"):
        Store.open(path)
    monkeypatch.undo()
    with Store.open(path) as store:
        assert store.schema_version == len(db.MIGRATIONS)
        tables = {row[0] for row in store.connection.execute("SELECT name FROM sqlite_master")}
        assert "half" not in tables


def test_a_database_from_a_newer_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.db"
    Store.open(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {len(db.MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this program"):
        Store.open(path)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "list.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(path)):
        Store.open(path)


def test_migrations_are_numbered_in_order() -> None:
    with pytest.raises(AssertionError):
        db._check_numbering([db.Migration(2, "skips one", ())])
    db._check_numbering(db.MIGRATIONS)


def test_addresses_are_unique_without_regard_to_case(store: Store) -> None:
    store.insert([subscriber("Kim@Example.com")])
    with pytest.raises(StoreError, match="cannot add"):
        store.insert([subscriber("kim@example.COM")])
    assert store.get("KIM@EXAMPLE.COM").address == "Kim@Example.com"


def test_subscribed_streams_only_subscribed_in_address_order_page_by_page(store: Store) -> None:
    count = subscriber_table.PAGE_SIZE * 2 + 3
    store.insert(subscriber(f"user{i:05d}@example.com") for i in reversed(range(count)))
    store.insert([subscriber("gone@example.com", "unsubscribed"), subscriber("bounce@example.com", "bounced")])
    stream = store.subscribed()
    first = next(stream)
    # Rows are read a page at a time, so one added after the first page was read still shows up.
    store.insert([subscriber("zz-late@example.com")])
    rest = [s.address for s in stream]
    addresses = [first.address, *rest]
    assert addresses == sorted(addresses)
    assert len(addresses) == count + 1 and addresses[-1] == "zz-late@example.com"
    assert "gone@example.com" not in addresses and "bounce@example.com" not in addresses
    assert store.count_subscribed() == count + 1
    assert store.count_by_status() == {"subscribed": count + 1, "unsubscribed": 1, "bounced": 1, "complained": 0}


def test_set_status_reports_the_previous_status_and_keeps_the_first_reason(store: Store) -> None:
    store.insert([subscriber("a@example.com")])
    assert store.set_status("A@example.com", "unsubscribed", "one-click") == "subscribed"
    assert store.set_status("a@example.com", "unsubscribed", "again") == "unsubscribed"
    kept = store.get("a@example.com")
    assert (kept.status, kept.reason) == ("unsubscribed", "one-click")
    assert store.set_status("nobody@example.com", "bounced", "hard bounce") is None
    assert store.get("nobody@example.com") is None
    assert store.set_status("nobody@example.com", "complained", "abuse report", record_unknown=True) is None
    assert store.get("nobody@example.com").status == "complained"
    with pytest.raises(StoreError, match="unknown status"):
        store.set_status("a@example.com", "gone", None)


def test_a_transaction_that_raises_writes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.insert([subscriber("a@example.com")])
            raise RuntimeError("stop")
    with store.transaction(commit=False):
        store.insert([subscriber("b@example.com")])
    assert store.count_subscribed() == 0


def test_delete_forgets_an_address(store: Store) -> None:
    store.insert([subscriber("a@example.com")])
    assert store.delete("A@EXAMPLE.COM") is True
    assert store.delete("a@example.com") is False
    assert store.get("a@example.com") is None


def test_one_connection_per_thread_writes_concurrently_without_locking_errors(tmp_path: Path) -> None:
    path = tmp_path / "list.db"
    with Store.open(path) as store:
        store.insert(subscriber(f"user{i}@example.com") for i in range(200))
    errors: list[BaseException] = []

    def unsubscribe_every_fourth(offset: int) -> None:
        try:
            with Store.open(path) as own:
                for i in range(offset, 200, 4):
                    own.set_status(f"user{i}@example.com", "unsubscribed", "thread test")
        except BaseException as error:  # noqa: BLE001  (reported by the assert below)
            errors.append(error)

    threads = [threading.Thread(target=unsubscribe_every_fourth, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store.open(path) as store:
        assert store.count_by_status()["unsubscribed"] == 200
