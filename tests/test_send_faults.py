"""Faults that must not lose, duplicate or silently skip a reader (issue 9), each against real
parts: moto's SES server over HTTP (refusals it gives for real, others injected on the real
client), a scripted aiosmtpd server, a TCP proxy on 127.0.0.1 that is cut and restored, two real
`newsletter send` processes on one database, and another process holding SQLite's write lock.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest

from conftest import SENDER_DOMAIN
from newsletter.config import load_config
from newsletter.store import db
from sending_fixtures import (
    FAST_RETRIES,
    ISSUE,
    SesFaults,
    TcpProxy,
    cli,
    delivered,
    ledger_states,
    readers,
    scripted_smtp,  # noqa: F401  (fixture)
    secret,  # noqa: F401  (fixture)
    send_in_process,
    sending_config,
    start_send,
    subscribe,
    wait_until,
)


def lines_starting(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


def the_line(output: str, prefix: str) -> str:
    """The one line of `output` that starts with `prefix` (and there is exactly one)."""
    lines = lines_starting(output, prefix)
    assert len(lines) == 1, output
    return lines[0]


def assert_one_line_error(result, words: str) -> None:
    """The CLI failed the way the README promises: one `error:` line and an exit code, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught exception
    assert words in the_line(result.output, "error: "), result.output


def states_of(config_path) -> list[str]:
    return list(ledger_states(config_path).values())


# --- 1. a refusal about the sender, the account or its settings stops the run -------------------


def test_an_unverified_sender_stops_at_once_and_a_rerun_after_verifying_reaches_everyone(tmp_path, moto_ses, secret):
    """moto refuses the unverified From for real ("Did not have authority to send from ...")."""
    config_path = sending_config(tmp_path / "newsletter.toml", workers=2)
    addresses = readers(12)
    subscribe(config_path, addresses)
    moto_ses.client.delete_email_identity(EmailIdentity=SENDER_DOMAIN)

    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 1
    stopped = the_line(result.output, "stopped: ")
    assert "the account cannot send now: MessageRejected: Did not have authority to send from" in stopped
    assert "To fix: verify the From address or its domain in SES in region us-east-1" in stopped
    assert lines_starting(result.output, "failed:") == []
    assert set(states_of(config_path)) == {"pending"} and moto_ses.raw_messages() == []

    moto_ses.client.create_email_identity(EmailIdentity=SENDER_DOMAIN)  # the editor's fix
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


ACCOUNT_REFUSALS = [
    # In the sandbox SES refuses an unverified recipient with these words: the account's condition.
    (400, "MessageRejected", "Email address is not verified. The following identities failed the check in "
     "region US-EAST-1: reader005@example.org"),
    (400, "MailFromDomainNotVerifiedException", "The MAIL FROM domain is not verified."),
    (404, "NotFoundException", "Configuration set <newsletter> does not exist."),
    (400, "ConfigurationSetDoesNotExist", "Configuration set <newsletter> does not exist."),
    (403, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/editor is not authorized to perform: "
     "ses:SendEmail"),
    (403, "UnrecognizedClientException", "The security token included in the request is invalid."),
    (403, "InvalidClientTokenId", "The security token included in the request is invalid."),
    (403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."),
    (403, "ExpiredTokenException", "The security token included in the request is expired"),
    (400, "SendingPausedException", "Sending is paused for this account."),
    (400, "AccountSuspendedException", "Account suspended."),
]


@pytest.mark.parametrize(("status", "code", "text"), ACCOUNT_REFUSALS, ids=[refusal[1] for refusal in ACCOUNT_REFUSALS])
def test_an_account_refusal_stops_after_the_first_and_a_rerun_after_the_fix_reaches_everyone(
    tmp_path, moto_ses, secret, status, code, text
):
    config_path = sending_config(tmp_path / "newsletter.toml", workers=2)
    addresses = readers(10)
    subscribe(config_path, addresses)
    faults = SesFaults(lambda call, _recipient: (status, code, text) if call >= 3 else None)
    summary = send_in_process(config_path, transport_factory=faults.transport_factory)
    assert summary.stopped == f"the account cannot send now: {code}: {text}" and summary.stop_fix
    assert summary.failures == [] and summary.unknown == [] and not summary.complete
    assert faults.injected[code] <= 2  # only calls already in flight (2 workers) met it; none after
    assert sorted(states_of(config_path)) == ["pending"] * 8 + ["sent"] * 2

    assert send_in_process(config_path).complete  # after the fix: a plain rerun
    assert delivered(moto_ses) == {address: 1 for address in addresses}


@pytest.mark.parametrize(
    ("step", "reply"),
    [
        ("mail_reply", "554 5.7.1 Sender address rejected: not owned by user editor"),
        ("rcpt", "530 5.7.0 Authentication required"),
        ("data_reply", "554 Message rejected: Email address is not verified. The following identities failed "
                       "the check in region US-EAST-1: digest@newsletter.example.com"),
    ],
)
def test_an_smtp_refusal_about_the_sender_stops_the_run_with_everyone_pending(
    tmp_path, scripted_smtp, secret, step, reply
):
    smtp = f'host = "127.0.0.1"\nport = {scripted_smtp.port}\nsecurity = "none"'
    config_path = sending_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp, workers=2)
    addresses = readers(6)
    subscribe(config_path, addresses)
    if step == "rcpt":
        scripted_smtp.rcpt_replies.update(dict.fromkeys(addresses, reply))
    else:
        setattr(scripted_smtp, step, reply)

    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 1
    assert f"the account cannot send now: {reply[:3]}" in the_line(result.output, "stopped: ")
    assert "To fix: " in the_line(result.output, "stopped: ") and lines_starting(result.output, "failed:") == []
    assert set(states_of(config_path)) == {"pending"} and scripted_smtp.messages == []

    scripted_smtp.mail_reply = scripted_smtp.data_reply = None
    scripted_smtp.rcpt_replies.clear()
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert sorted(message.rcpt_tos[0] for message in scripted_smtp.messages) == addresses


# --- 2. a network outage -----------------------------------------------------------------------


def most_calls_that_got_nowhere(config_path) -> int:
    """The most calls made for one row that still waits, `pending`, after failing to connect."""
    connection = sqlite3.connect(load_config(config_path).database, timeout=10)
    try:
        return connection.execute(
            "SELECT coalesce(max(attempts), 0) FROM delivery "
            "WHERE state = 'pending' AND error_code = 'EndpointConnectionError'"
        ).fetchone()[0]
    finally:
        connection.close()


def cut_mid_send(config_path, proxy: TcpProxy, *, restore: bool) -> threading.Thread:
    """In the background: once 6 rows are sent, cut the network; once one row has failed to
    connect more times than a call is retried after an answer (the outage outlasts the attempts),
    restore it (if asked)."""

    def cut_then_restore():
        try:
            wait_until(lambda: states_of(config_path).count("sent") >= 6, what="a send under way")
            proxy.cut()
            if restore:
                wait_until(lambda: most_calls_that_got_nowhere(config_path) > FAST_RETRIES.attempts,
                           what="calls failing to connect")
        finally:
            if restore:
                proxy.restore()

    thread = threading.Thread(target=cut_then_restore)
    thread.start()
    return thread


def list_behind_a_proxy(tmp_path, moto_ses, monkeypatch, **config) -> tuple:
    """30 subscribers, 2 workers at 18 calls/s, and SES reached through a TcpProxy to cut."""
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=20, workers=2, **config)
    addresses = readers(30)
    subscribe(config_path, addresses)
    proxy = TcpProxy(moto_ses.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", proxy.url)
    return config_path, addresses, proxy


def test_a_network_outage_mid_send_is_waited_out_and_nobody_is_failed(tmp_path, moto_ses, secret, monkeypatch):
    config_path, addresses, proxy = list_behind_a_proxy(tmp_path, moto_ses, monkeypatch)
    try:
        cutter = cut_mid_send(config_path, proxy, restore=True)
        summary = send_in_process(config_path)
        cutter.join()
    finally:
        proxy.close()

    states = ledger_states(config_path)
    unknown = {address for address, state in states.items() if state == "unknown"}
    assert len(unknown) <= 2  # at most the calls in flight when the network went (2 workers)
    assert all(states[address] == "sent" for address in set(addresses) - unknown)  # no failed, none pending
    assert summary.stopped is None and summary.failures == [] and summary.retries >= 1
    copies = delivered(moto_ses)
    assert max(copies.values()) == 1 and set(addresses) - set(copies) <= unknown


def test_an_outage_longer_than_the_budget_stops_the_run_with_the_rest_pending(tmp_path, moto_ses, secret, monkeypatch):
    config_path, addresses, proxy = list_behind_a_proxy(tmp_path, moto_ses, monkeypatch, outage_budget_seconds=1)
    try:
        cutter = cut_mid_send(config_path, proxy, restore=False)
        result = cli(config_path, "send", "--yes", str(ISSUE))
        cutter.join()
        assert result.exit_code == 1
        stopped = the_line(result.output, "stopped: ")
        assert "cannot reach ses for 1 s (the outage budget, sending.outage_budget_seconds)" in stopped
        assert "EndpointConnectionError" in stopped and "To fix: check the network connection" in stopped
        states = states_of(config_path)
        assert "failed" not in states and states.count("unknown") <= 2 and states.count("pending") >= 10

        proxy.restore()
        result = cli(config_path, "send", "--yes", str(ISSUE))
        assert result.exit_code == 0, result.output
    finally:
        proxy.close()
    unknown = {address for address, state in ledger_states(config_path).items() if state == "unknown"}
    copies = delivered(moto_ses)
    assert max(copies.values()) == 1 and set(addresses) - set(copies) <= unknown


# --- 3 and 9. two sends, two paths, one database -----------------------------------------------


def two_sends(tmp_path, moto_ses, link) -> tuple[subprocess.CompletedProcess, str, int, list[str]]:
    """A slow send from folder a/, and while its calls are in flight a second `newsletter send`
    from folder b/, whose database is `link(a/newsletter.db, b/newsletter.db)`. Returns the
    second one's outcome, the first one's output and exit code, and the addresses."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = sending_config(tmp_path / "a" / "newsletter.toml", max_send_rate=8, workers=2)
    second = sending_config(tmp_path / "b" / "newsletter.toml", max_send_rate=500, workers=4)
    addresses = readers(16)
    subscribe(first, addresses)
    proxy = TcpProxy(moto_ses.endpoint_url, delay=0.3)
    child = start_send(first, endpoint_url=proxy.url)
    try:
        wait_until(lambda: "sending" in states_of(first) and "sent" in states_of(first), what="calls in flight")
        link(tmp_path / "a" / "newsletter.db", tmp_path / "b" / "newsletter.db")
        other = subprocess.run(
            [sys.executable, "-m", "newsletter", "--config", str(second), "send", "--yes", str(ISSUE)],
            capture_output=True, text=True, timeout=60,
        )
        output, _ = child.communicate(timeout=60)
    finally:
        child.kill()
        proxy.close()
    return other, output, child.returncode, addresses


def test_a_second_send_through_a_symbolic_link_is_refused_and_no_one_is_mailed_twice(tmp_path, moto_ses, secret):
    other, output, exit_code, addresses = two_sends(tmp_path, moto_ses, lambda real, link: link.symlink_to(real))
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "another send is running" in the_line(other.stderr, "error: ")
    assert "cut off" not in other.stdout + other.stderr  # its rows in flight are not an earlier crash's
    assert exit_code == 0, output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


def test_a_second_send_through_a_hard_link_is_refused_and_no_one_is_mailed_twice(tmp_path, moto_ses, secret):
    other, output, exit_code, addresses = two_sends(tmp_path, moto_ses, lambda real, link: os.link(real, link))
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "has 2 names (hard links)" in the_line(other.stderr, "error: ")
    assert exit_code == 0, output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


def test_a_refused_second_send_says_so_without_a_false_cut_off_note(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=8, workers=2)
    addresses = readers(12)
    subscribe(config_path, addresses)
    proxy = TcpProxy(moto_ses.endpoint_url, delay=0.3)
    child = start_send(config_path, endpoint_url=proxy.url)
    try:
        wait_until(lambda: "sending" in states_of(config_path), what="calls in flight")
        result = cli(config_path, "send", "--yes", str(ISSUE))
        child.communicate(timeout=60)
    finally:
        child.kill()
        proxy.close()
    assert_one_line_error(result, "another send is running")
    assert "cut off" not in result.output and "unknown" not in result.output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


# --- 4. an issue edited between runs ------------------------------------------------------------


def test_an_issue_edited_after_some_got_it_is_refused_until_the_editor_says_so(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", workers=1)
    addresses = readers(5)
    subscribe(config_path, addresses)
    issue = tmp_path / "2023-10-16.md"
    shutil.copy(ISSUE, issue)
    assert cli(config_path, "send", "--yes", "--limit", "2", str(issue)).exit_code == 1  # 3 still pending

    # A summary edited, the titles (and so the subject, named after them) as they were.
    issue.write_text(issue.read_text(encoding="utf-8").replace("Llemma 모델", "Llemma-2 모델"), encoding="utf-8")
    result = cli(config_path, "send", "--yes", str(issue))
    assert_one_line_error(
        result, "issue 2023-10-16 was already sent to 2 recipient(s) in another version: the content "
                "(the issue file or the email templates) changed since"
    )
    assert "give it its own date" in result.output and "--send-changed-version" in result.output
    assert len(moto_ses.raw_messages()) == 2 and states_of(config_path).count("pending") == 3

    result = cli(config_path, "send", "--yes", "--send-changed-version", str(issue))
    assert result.exit_code == 0, result.output
    assert delivered(moto_ses) == {address: 1 for address in addresses}
    assert sum("Llemma-2" in message.get_body(("plain",)).get_content() for message in moto_ses.messages()) == 3
    result = cli(config_path, "send", "--yes", str(issue))  # the new version is now the one sent
    assert result.exit_code == 0 and "nothing left to send" in result.output


def test_last_weeks_file_reused_with_its_date_is_refused_not_reported_as_sent(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml")
    subscribe(config_path, readers(3))
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    next_week = tmp_path / "2023-10-23.md"  # copied, retitled and rewritten, the date left as it was
    text = ISSUE.read_text(encoding="utf-8").replace("2023/10/16 ~ 10/22", "2023/10/23 ~ 10/29")
    next_week.write_text(text.replace("Llemma", "Mistral"), encoding="utf-8")
    result = cli(config_path, "send", "--yes", str(next_week))
    assert_one_line_error(result, "issue 2023-10-16 was already sent to 3 recipient(s) in another version: the subject (")
    line = the_line(result.output, "error: ")
    assert "Mistral, Self-RAG" in line and "and the content" in line and "give it its own date" in line
    assert "everyone on the list has the earlier version" in line and "nothing left to send" not in result.output
    assert len(moto_ses.raw_messages()) == 3


# --- 8. the database locked by another program, or read-only ------------------------------------


def hold_write_lock(database, seconds: float) -> subprocess.Popen:
    """Another process that holds SQLite's write lock on `database` for `seconds`; returns once it does."""
    locker = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"connection = sqlite3.connect({str(database)!r}, isolation_level=None)\n"
         "connection.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\n"
         f"time.sleep({seconds})\n"],
        stdout=subprocess.PIPE, text=True,
    )
    assert locker.stdout.readline().strip() == "locked"
    return locker


def test_a_database_locked_by_another_program_is_one_line_and_changes_nothing(tmp_path, moto_ses, secret, monkeypatch):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    config_path = sending_config(tmp_path / "newsletter.toml")
    subscribe(config_path, readers(3))
    locker = hold_write_lock(load_config(config_path).database, 30)
    try:
        result = cli(config_path, "send", "--yes", str(ISSUE))
    finally:
        locker.kill()
        locker.wait()
    assert_one_line_error(result, "the database is busy: another program has been writing to it for more than 0.2 s")
    assert ledger_states(config_path) == {} and moto_ses.raw_messages() == []


def test_a_database_locked_mid_send_stops_the_run_and_leaves_no_row_sending(tmp_path, moto_ses, secret, monkeypatch):
    """The lock is taken while the third call is on its way: that call's outcome waits for the
    lock and is recorded; no other row is claimed; a later run finishes the list."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    config_path = sending_config(tmp_path / "newsletter.toml", workers=2)
    addresses = readers(10)
    subscribe(config_path, addresses)
    lockers = []

    def lock_during_the_third_call(call: int, _recipient: str):
        if call == 3:
            lockers.append(hold_write_lock(load_config(config_path).database, 3))
        return None  # the call itself goes through to moto

    faults = SesFaults(lock_during_the_third_call)
    summary = send_in_process(config_path, transport_factory=faults.transport_factory)
    for locker in lockers:
        locker.wait()
    assert summary.stopped and "the database is busy" in summary.stopped
    states = states_of(config_path)
    assert "sending" not in states and "failed" not in states and "unknown" not in states
    assert states.count("sent") >= 3 and states.count("pending") >= 1
    assert send_in_process(config_path).complete
    assert delivered(moto_ses) == {address: 1 for address in addresses}


@pytest.fixture
def make_immutable():
    """chattr +i: not even root may write the file, or create files in the folder (undone after)."""
    changed = []

    def immutable(path):
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available on this file system")
        changed.append(path)

    yield immutable
    for path in changed:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    ("what", "words"),
    [("file", "the database is read-only (a read-only file, folder or disk)"),
     ("folder", "cannot open the database: SQLite could not open the file or create its -wal and -shm files")],
)
def test_a_read_only_database_is_one_line_and_changes_nothing(tmp_path, moto_ses, secret, make_immutable, what, words):
    config_path = sending_config(tmp_path / "newsletter.toml")
    subscribe(config_path, readers(3))
    database = load_config(config_path).database
    make_immutable(database if what == "file" else database.parent)
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert_one_line_error(result, words)
    assert moto_ses.raw_messages() == []
