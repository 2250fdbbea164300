"""The send ledger in the SQLite store: migration, queueing, the row lifecycle, crash leftovers,
one connection per thread under contention, and the per-database send lock across processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from newsletter.errors import SendError, StoreError
from newsletter.model import Subscriber
from newsletter.store import Store, db, utc_now
from newsletter.store.ledger import IssueChangedError, IssueVersion
from newsletter.transports.base import RecipientRejectedError
from sending_fixtures import run_threads

ISSUE_ID = "2023-10-16"


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "newsletter.db") as opened:
        yield opened


def subscribe(store: Store, *addresses: str, status: str = "subscribed") -> None:
    now = utc_now()
    store.insert(Subscriber(address, None, status, "test", now, now) for address in addresses)


def states(store: Store) -> dict[str, str]:
    rows = store.deliveries(ISSUE_ID, ("pending", "sending", "sent", "failed", "unknown", "skipped"))
    return {row.address: row.state for row in rows}


def test_a_database_at_schema_1_gains_the_ledger_and_keeps_its_subscribers(tmp_path):
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    for statement in db.MIGRATIONS[0].statements:
        connection.execute(statement)
    connection.execute(
        "INSERT INTO subscriber (address, address_key, status, joined_at, changed_at) "
        "VALUES ('old@example.org', 'old@example.org', 'subscribed', '2023-01-01T00:00:00+00:00', '2023-01-01T00:00:00+00:00')"
    )
    connection.execute("PRAGMA user_version = 1")
    connection.commit()
    connection.close()
    with Store.open(path) as store:
        assert store.schema_version == len(db.MIGRATIONS) >= 2
        assert store.prepare_issue(ISSUE_ID).counts["pending"] == 1
        assert states(store) == {"old@example.org": "pending"}


def test_each_subscribed_address_is_queued_once_and_newcomers_on_the_next_run(store):
    subscribe(store, "a@example.org", "b@example.org")
    subscribe(store, "gone@example.org", status="unsubscribed")
    first = store.prepare_issue(ISSUE_ID)
    assert (first.queued, first.pending) == (2, 2)
    assert store.prepare_issue(ISSUE_ID).queued == 0
    subscribe(store, "new@example.org")
    assert store.count_unqueued(ISSUE_ID) == 1
    assert store.prepare_issue(ISSUE_ID).queued == 1
    assert states(store) == dict.fromkeys(["a@example.org", "b@example.org", "new@example.org"], "pending")


def test_a_preview_changes_nothing(store):
    subscribe(store, "a@example.org")
    preview = store.prepare_issue(ISSUE_ID, commit=False)
    assert (preview.queued, preview.pending) == (1, 1)
    assert states(store) == {}


def test_a_row_goes_pending_sending_sent_with_its_attempts_and_message_id(store):
    subscribe(store, "a@example.org", "b@example.org")
    store.prepare_issue(ISSUE_ID)
    first, second = store.pending_deliveries(ISSUE_ID)
    assert store.claim_delivery(first.id) == "claimed"
    assert store.claim_delivery(first.id) == "taken"  # not pending any more: a second claim takes nothing
    store.finish_delivery(first.id, "pending", error=RecipientRejectedError("busy", code="450"))
    assert store.claim_delivery(first.id) == "claimed"
    store.finish_delivery(first.id, "sent", message_id="ses-1")
    store.finish_delivery(first.id, "failed")  # only a `sending` row can be finished
    assert store.claim_delivery(second.id) == "claimed"
    store.finish_delivery(second.id, "failed", error=RecipientRejectedError("no such user", code="550"))
    sent, failed = store.deliveries(ISSUE_ID, ("sent", "failed"))
    assert (sent.state, sent.attempts, sent.message_id) == ("sent", 2, "ses-1")
    assert (failed.error_kind, failed.error_code, failed.error, failed.attempts) == (
        "RecipientRejectedError", "550", "no such user", 1
    )
    assert sent.started_at <= sent.finished_at
    assert store.pending_deliveries(ISSUE_ID) == []


def test_rows_left_sending_by_a_crash_become_unknown_and_return_only_when_asked(store):
    subscribe(store, "a@example.org", "b@example.org")
    store.prepare_issue(ISSUE_ID)
    cut_off = store.pending_deliveries(ISSUE_ID)[0]
    store.claim_delivery(cut_off.id)  # ... and the process dies here
    preparation = store.prepare_issue(ISSUE_ID)
    assert (preparation.interrupted, preparation.pending) == (1, 1)
    assert states(store)[cut_off.address] == "unknown"
    assert store.prepare_issue(ISSUE_ID).counts["unknown"] == 1  # a plain rerun leaves it alone
    assert store.prepare_issue(ISSUE_ID, resend_unknown=True).pending == 2


def test_an_address_that_left_the_list_is_skipped_and_back_if_it_returns(store):
    subscribe(store, "a@example.org", "b@example.org")
    store.prepare_issue(ISSUE_ID)
    row_a, row_b = store.pending_deliveries(ISSUE_ID)
    store.set_status("a@example.org", "unsubscribed", "one-click")
    assert store.claim_delivery(row_a.id) == "skipped"  # left while the run was going
    store.set_status("b@example.org", "bounced", "hard bounce")
    assert store.prepare_issue(ISSUE_ID).counts["skipped"] == 2
    store.set_status("b@example.org", "subscribed", "resubscribed")
    assert states(store) == {"a@example.org": "skipped", "b@example.org": "skipped"}
    assert store.prepare_issue(ISSUE_ID).pending == 1
    assert store.claim_delivery(row_b.id) == "claimed"


def test_failed_rows_are_sent_again_only_when_asked(store):
    subscribe(store, "a@example.org")
    store.prepare_issue(ISSUE_ID)
    (row,) = store.pending_deliveries(ISSUE_ID)
    store.claim_delivery(row.id)
    store.finish_delivery(row.id, "failed", error=RecipientRejectedError("rejected", code="MessageRejected"))
    assert store.prepare_issue(ISSUE_ID).pending == 0
    assert store.prepare_issue(ISSUE_ID, retry_failed=True).pending == 1


def test_sent_in_the_last_24_hours_counts_sent_rows_of_every_issue(store):
    subscribe(store, "a@example.org", "b@example.org")
    for issue_id in ("2023-10-09", ISSUE_ID):
        store.prepare_issue(issue_id)
        for number, row in enumerate(store.pending_deliveries(issue_id)):
            store.claim_delivery(row.id)
            store.finish_delivery(row.id, "sent" if number == 0 else "failed")
    assert store.sent_in_last_24h() == 2


def test_workers_with_a_connection_each_record_every_row_under_contention(tmp_path):
    path = tmp_path / "newsletter.db"
    with Store.open(path) as store:
        subscribe(store, *(f"reader{n}@example.org" for n in range(400)))
        store.prepare_issue(ISSUE_ID)
        rows = store.pending_deliveries(ISSUE_ID, limit=1000)

    def worker(share):
        with Store.open(path) as own:
            for row in share:
                assert own.claim_delivery(row.id) == "claimed"
                own.finish_delivery(row.id, "sent", message_id=f"id-{row.id}")

    assert run_threads(worker, [(rows[n::8],) for n in range(8)]) == []
    with Store.open(path) as store:
        assert store.delivery_counts(ISSUE_ID)["sent"] == 400
        assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_one_send_at_a_time_per_database_across_processes(tmp_path):
    path = tmp_path / "newsletter.db"
    other_process = [
        sys.executable, "-c",
        "import sys\nfrom newsletter.store import Store\nfrom newsletter.errors import SendError\n"
        f"store = Store.open({str(path)!r})\n"
        "try:\n    store.send_lock().__enter__()\nexcept SendError as error:\n    sys.exit(str(error))\n",
    ]
    with Store.open(path) as store:
        with store.send_lock():
            refused = subprocess.run(other_process, capture_output=True, text=True)
            with pytest.raises(SendError, match="another send is running"):
                with Store.open(path) as second, second.send_lock():
                    pass
        allowed = subprocess.run(other_process, capture_output=True, text=True)
    assert refused.returncode == 1 and "another send is running" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr


def test_of_two_processes_claiming_the_same_rows_exactly_one_wins_each(tmp_path):
    """The claim is a compare-and-set: a row another process holds (or finished) is not this
    run's, whatever the two processes' timing."""
    path = tmp_path / "newsletter.db"
    with Store.open(path) as store:
        subscribe(store, *(f"reader{n}@example.org" for n in range(300)))
        store.prepare_issue(ISSUE_ID)
    claimer = (
        "import sys\nfrom newsletter.store import Store\n"
        f"store = Store.open({str(path)!r})\n"
        "won = [row.id for row in store.pending_deliveries('2023-10-16', limit=1000) if store.claim_delivery(row.id) == 'claimed']\n"
        "print(' '.join(map(str, won)))\n"
    )
    children = [subprocess.Popen([sys.executable, "-c", claimer], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [child.communicate(timeout=60)[0] for child in children]
    won = [set(map(int, output.split())) for output in outputs]
    assert not won[0] & won[1]  # no row claimed twice
    with Store.open(path) as store:
        assert len(won[0] | won[1]) == store.delivery_counts(ISSUE_ID)["sending"] == 300


VERSION_1 = IssueVersion("Top ML Papers 10/16", "a" * 64)


def send_all(store: Store, version_id: int) -> None:
    for row in store.pending_deliveries(ISSUE_ID):
        assert store.claim_delivery(row.id, version_id=version_id) == "claimed"
        store.finish_delivery(row.id, "sent")


def test_a_changed_version_is_refused_saying_what_changed_unless_allowed(store):
    subscribe(store, "a@example.org", "b@example.org")
    first = store.prepare_issue(ISSUE_ID, version=VERSION_1)
    send_all(store, first.version_id)
    subscribe(store, "c@example.org")
    assert store.prepare_issue(ISSUE_ID, version=VERSION_1).version_id == first.version_id  # the same: fine

    edited = IssueVersion(VERSION_1.subject, "b" * 64)
    with pytest.raises(IssueChangedError, match=r"sent to 2 recipient\(s\) in another version: the content .* changed"):
        store.prepare_issue(ISSUE_ID, version=edited)
    retitled = IssueVersion("Top ML Papers 10/23", "b" * 64)
    with pytest.raises(IssueChangedError, match="the subject .*'Top ML Papers 10/16', now 'Top ML Papers 10/23'.* and the content"):
        store.prepare_issue(ISSUE_ID, version=retitled)
    assert states(store)["c@example.org"] == "pending"  # the refusal rolled everything back... or kept it pending

    second = store.prepare_issue(ISSUE_ID, version=edited, allow_changed_version=True)
    assert second.version_id != first.version_id and second.pending == 1
    send_all(store, second.version_id)
    assert store.prepare_issue(ISSUE_ID, version=edited).pending == 0  # the new version is now the one sent
    with pytest.raises(IssueChangedError):
        store.prepare_issue(ISSUE_ID, version=VERSION_1)  # and going back is a change too


def lock_holder(path) -> list[str]:
    return [
        sys.executable, "-c",
        "import sys, time\nfrom newsletter.store import Store\nfrom newsletter.errors import NewsletterError\n"
        f"store = Store.open({str(path)!r})\n"
        "lock = store.send_lock()  # kept: a dropped context manager would release the lock\n"
        "try:\n    lock.__enter__()\nexcept NewsletterError as error:\n    sys.exit(str(error))\n"
        "print('locked', flush=True)\ntime.sleep(60)\n",
    ]


def test_the_send_lock_holds_through_a_symbolic_link_in_another_folder(tmp_path):
    path = tmp_path / "data" / "newsletter.db"
    Store.open(path).close()
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "list.db"
    link.symlink_to(path)
    holder = subprocess.Popen(lock_holder(link), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = subprocess.run(lock_holder(path), capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "another send is running" in refused.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_database_with_a_second_hard_link_is_refused_naming_the_fix(tmp_path):
    path = tmp_path / "newsletter.db"
    Store.open(path).close()
    (tmp_path / "elsewhere").mkdir()
    os.link(path, tmp_path / "elsewhere" / "list.db")
    for name in (path, tmp_path / "elsewhere" / "list.db"):
        with pytest.raises(StoreError, match="has 2 names \\(hard links\\).*delete the other link"):
            Store.open(name)
