"""The reliable list send against moto's SES server on 127.0.0.1 over real HTTP (and aiosmtpd):
a send killed or interrupted mid-way and resumed, throttling and 5xx answers injected into the
real client, rejections, an account stop, the daily quota, sending twice, the SMTP contract.
"""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from newsletter.config import load_config
from newsletter.errors import QuotaError
from newsletter.store import Store
from newsletter.transports.smtp import SmtpTransport
from sending_fixtures import (
    FAST_RETRIES,
    ISSUE,
    ISSUE_ID,
    SesFaults,
    TcpProxy,
    cli,
    delivered,
    deliver_then_lose_the_answer,
    ledger_states,
    readers,
    secret,  # noqa: F401  (fixture)
    send_in_process,
    sending_config,
    start_send,
    ses_answer,
    ses_with_hooks,
    status_json,
    subscribe,
    wait_until,
)

# --- crash and interruption ---------------------------------------------------------------------


WORKERS = 4


def slow_list(tmp_path) -> tuple:
    """40 subscribers and a config at MaxSendRate 8/s (7.2 calls/s), 4 workers: a send of seconds."""
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=8, workers=WORKERS)
    addresses = readers(40)
    subscribe(config_path, addresses)
    return config_path, addresses


def signal_mid_send(config_path, moto_ses, number: int) -> tuple[int, str]:
    """Run `newsletter send` in a child process through a proxy that holds moto's answers back
    0.4 s (so calls are in flight nearly all the time), send it signal `number` once 5 rows are
    sent and one is mid-call, and return its exit code and output."""
    proxy = TcpProxy(moto_ses.endpoint_url, delay=0.4)
    child = start_send(config_path, endpoint_url=proxy.url)

    def mid_way() -> bool:
        states = list(ledger_states(config_path).values())
        return states.count("sent") >= 5 and "sending" in states

    try:
        wait_until(mid_way, what="a send mid-way with calls in flight")
        child.send_signal(number)
        output, _ = child.communicate(timeout=20)
    finally:
        child.kill()
        proxy.close()
    return child.returncode, output


def test_a_send_killed_mid_way_resumes_with_no_duplicate_and_no_one_missing(tmp_path, moto_ses, secret):
    """SIGKILL while calls are in flight: those rows become `unknown` (at most one per worker) and
    are not sent again; everyone else gets exactly one copy across the two runs."""
    config_path, addresses = slow_list(tmp_path)
    signal_mid_send(config_path, moto_ses, signal.SIGKILL)
    cut_off = [address for address, state in ledger_states(config_path).items() if state == "sending"]
    assert 1 <= len(cut_off) <= WORKERS

    sending_config(tmp_path / "newsletter.toml", max_send_rate=500, workers=WORKERS)
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert "an earlier run was cut off mid-send" in result.output
    assert result.exit_code == 0, result.output  # nothing failed in this run; unknown rows are old news

    states = ledger_states(config_path)
    unknown = sorted(address for address, state in states.items() if state == "unknown")
    assert unknown == sorted(cut_off)
    assert all(states[address] == "sent" for address in addresses if address not in unknown)
    copies = delivered(moto_ses)
    assert max(copies.values()) == 1  # no duplicate
    assert set(addresses) - set(copies) <= set(unknown)  # no one missing but the unknown
    report = status_json(config_path)
    assert report["counts"]["unknown"] == len(unknown)
    assert {row["address"] for row in report["problems"]} == set(unknown)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_sigint_stops_cleanly_leaving_no_row_sending_and_a_later_run_finishes(tmp_path, moto_ses, secret, number):
    config_path, addresses = slow_list(tmp_path)
    exit_code, output = signal_mid_send(config_path, moto_ses, number)
    assert exit_code != 0
    assert f"interrupted by {number.name}" in output and "still to send" in output

    states = ledger_states(config_path)
    assert "sending" not in states.values()  # calls in flight were finished and recorded
    sent = {address for address, state in states.items() if state == "sent"}
    assert set(states.values()) == {"sent", "pending"}
    assert set(delivered(moto_ses)) == sent

    sending_config(tmp_path / "newsletter.toml", max_send_rate=500)
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


# --- faults from SES ----------------------------------------------------------------------------


def test_throttling_and_5xx_slow_the_send_but_lose_and_duplicate_nothing(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=200, workers=4)
    addresses = readers(30)
    subscribe(config_path, addresses)

    calls_per_recipient = Counter()

    def throttled_then_failing_then_through(_call: int, recipient: str):
        """Recipient n: its first n % 3 calls throttled, then one 503 if n % 4 == 0, then through
        (fewer failures in a row than the attempts, so a lost message would be the engine's)."""
        number = addresses.index(recipient)
        calls_per_recipient[recipient] += 1
        call = calls_per_recipient[recipient]
        if call <= number % 3:
            return 429, "TooManyRequestsException", "Maximum sending rate exceeded."
        if call == number % 3 + 1 and number % 4 == 0:
            return 503, "ServiceUnavailable", "Service Unavailable"
        return None

    faults = SesFaults(throttled_then_failing_then_through)
    summary = send_in_process(config_path, transport_factory=faults.transport_factory)

    assert faults.injected == {"TooManyRequestsException": 30, "ServiceUnavailable": 8}
    assert summary.complete and summary.sent == len(addresses)
    assert summary.retries == sum(faults.injected.values())
    assert summary.slow_downs >= 1
    assert delivered(moto_ses) == {address: 1 for address in addresses}
    with Store.open(load_config(config_path).database) as store:
        rows = list(store.deliveries(ISSUE_ID, ["sent"]))
    assert len(rows) == len(addresses) and sum(row.attempts for row in rows) == faults.calls


def test_a_call_throttled_past_the_last_attempt_stops_the_run_and_leaves_the_row_pending(tmp_path, moto_ses, secret):
    """Throttling that outlasts every attempt is SES's trouble, not the reader's: nobody is
    `failed` for it; the run stops and a later run sends the row."""
    config_path = sending_config(tmp_path / "newsletter.toml")
    addresses = readers(5)
    subscribe(config_path, addresses)
    faults = SesFaults(
        lambda _call, recipient: (429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        if recipient == addresses[2] else None
    )
    summary = send_in_process(config_path, transport_factory=faults.transport_factory)
    assert not summary.complete and summary.failures == []
    assert summary.stopped.startswith("ses refused 6 calls in a row for one message: TooManyRequestsException")
    assert faults.injected["TooManyRequestsException"] == FAST_RETRIES.attempts
    states = ledger_states(config_path)
    assert states[addresses[2]] == "pending" and set(states.values()) <= {"sent", "pending"}
    report = status_json(config_path)
    assert report["counts"]["failed"] == 0

    assert send_in_process(config_path).complete
    assert delivered(moto_ses) == {address: 1 for address in addresses}


def test_rejections_are_recorded_listed_by_status_and_the_send_goes_on(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml")
    addresses = readers(8)
    subscribe(config_path, addresses)
    rejected = {addresses[1], addresses[6]}
    faults = SesFaults(
        lambda _call, recipient: (400, "MessageRejected", "Illegal address") if recipient in rejected else None
    )
    summary = send_in_process(config_path, transport_factory=faults.transport_factory)
    assert {f.address for f in summary.failures} == rejected and summary.sent == 6
    assert set(delivered(moto_ses)) == set(addresses) - rejected

    result = cli(load_config(config_path).path, "status", str(ISSUE))
    assert result.exit_code == 0
    for address in rejected:
        assert f"failed: {address}: RecipientRejectedError MessageRejected: Illegal address" in result.output
    assert "sent     6" in result.output

    # A rejection is not retried by a later run unless asked.
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    assert len(moto_ses.raw_messages()) == 6
    result = cli(config_path, "send", "--yes", "--retry-failed", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


def test_an_account_stop_leaves_the_rest_pending_and_a_later_run_finishes_them(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", workers=2)
    addresses = readers(20)
    subscribe(config_path, addresses)
    faults = SesFaults(
        lambda call, _recipient: (400, "SendingPausedException", "Sending is paused for this account.") if call > 6 else None
    )
    summary = send_in_process(config_path, transport_factory=faults.transport_factory)
    assert summary.stopped == "the account cannot send now: SendingPausedException: Sending is paused for this account."
    assert "resume it" in summary.stop_fix
    assert not summary.complete and summary.failures == [] and summary.unknown == []
    states = ledger_states(config_path)
    assert sorted(states.values()).count("sent") == 6
    assert set(states.values()) == {"sent", "pending"}  # the refused calls went back to pending too

    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "sent: 14 of 14" in result.output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


def test_the_cli_exits_non_zero_with_a_clear_message_when_the_account_stops(tmp_path, smtp_server, secret, monkeypatch):
    """An SMTP server that offers no AUTH to a configured username: the account cannot send."""
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    smtp = f'host = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\nusername = "editor"\npassword_env = "TEST_SMTP_PASSWORD"'
    config_path = sending_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp)
    subscribe(config_path, readers(3))
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 1
    assert "stopped: the account cannot send now: SMTPNotSupported:" in result.output
    assert "pending: 3 recipient(s) still to send" in result.output
    assert set(ledger_states(config_path).values()) == {"pending"} and smtp_server.messages == []


def test_a_lost_answer_is_unknown_and_not_sent_again_unless_asked(tmp_path, moto_ses, secret):
    """The request reaches SES (moto keeps the message) but the answer never comes back."""
    config_path = sending_config(tmp_path / "newsletter.toml")
    addresses = readers(4)
    subscribe(config_path, addresses)
    lost = addresses[3]
    factory = ses_with_hooks({"before-send.sesv2.SendEmail": deliver_then_lose_the_answer(lost)})
    summary = send_in_process(config_path, transport_factory=factory)
    assert [(f.address, f.kind) for f in summary.unknown] == [(lost, "OutcomeUnknownError")]
    assert not summary.complete
    assert delivered(moto_ses) == {address: 1 for address in addresses}

    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    assert delivered(moto_ses)[lost] == 1  # not sent again
    report = status_json(config_path)
    assert [(row["address"], row["state"], row["error_code"]) for row in report["problems"]] == [
        (lost, "unknown", "ReadTimeoutError")
    ]
    assert cli(config_path, "send", "--yes", "--resend-unknown", str(ISSUE)).exit_code == 0
    assert delivered(moto_ses)[lost] == 2  # the editor asked for it
    assert status_json(config_path)["counts"]["unknown"] == 0


# --- the list changes between runs --------------------------------------------------------------


def test_sending_twice_mails_no_one_twice_and_a_new_subscriber_gets_it(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml")
    first = readers(6)
    subscribe(config_path, first)
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    assert delivered(moto_ses) == {address: 1 for address in first}

    newcomer = readers(1, start=100)
    subscribe(config_path, newcomer)
    assert status_json(config_path)["not_yet_queued"] == 1
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "to:        1 (subscribed addresses that do not have this issue yet)" in result.output
    assert "sent: 1 of 1" in result.output
    assert delivered(moto_ses) == {address: 1 for address in first + newcomer}

    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert "note: nothing left to send: 7 recipient(s) already have this issue" in result.output

    result = cli(config_path, "send", "--yes", "--json", str(ISSUE))
    assert result.exit_code == 0 and json.loads(result.output)["sent"] == 0
    assert len(moto_ses.raw_messages()) == 7


def test_an_address_that_left_after_being_queued_is_skipped(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", workers=1)
    addresses = readers(4)
    subscribe(config_path, addresses)
    assert cli(config_path, "send", "--yes", "--limit", "1", str(ISSUE)).exit_code == 1  # the rest wait
    assert list(ledger_states(config_path).values()).count("pending") == 3
    with Store.open(load_config(config_path).database) as store:
        store.set_status(addresses[2], "unsubscribed", "one-click")
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "ledger:    pending 2, sent 1, skipped 1" in result.output and "sent: 2 of 2" in result.output
    assert set(delivered(moto_ses)) == set(addresses) - {addresses[2]}
    assert ledger_states(config_path)[addresses[2]] == "skipped"


def test_an_address_that_leaves_during_the_run_is_not_mailed(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", workers=1)  # one worker: rows in order
    addresses = readers(4)
    subscribe(config_path, addresses)

    def unsubscribe_the_last_during_the_first_call(call: int, _recipient: str):
        if call == 1:
            with Store.open(load_config(config_path).database) as store:
                store.set_status(addresses[3], "unsubscribed", "one-click")
        return None

    faults = SesFaults(unsubscribe_the_last_during_the_first_call)  # injects nothing, only watches
    summary = send_in_process(config_path, transport_factory=faults.transport_factory)
    assert (summary.sent, summary.skipped, summary.complete) == (3, 1, True)
    assert set(delivered(moto_ses)) == set(addresses[:3])
    assert ledger_states(config_path)[addresses[3]] == "skipped"


def test_dry_run_and_test_copies_record_nothing_in_the_ledger(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml")
    subscribe(config_path, readers(3))
    assert cli(config_path, "send", "--dry-run", str(ISSUE)).exit_code == 0
    assert (tmp_path / "outbox" / "manifest.csv").is_file()
    assert cli(config_path, "send", "--yes", "--to", "editor@example.org", str(ISSUE)).exit_code == 0
    assert ledger_states(config_path) == {}
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    assert set(delivered(moto_ses)) == {"editor@example.org", *readers(3)}


# --- rate and quota -----------------------------------------------------------------------------


def test_a_send_past_the_daily_quota_is_refused_saying_how_many_it_could_send(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", max_24h_send=5)
    subscribe(config_path, readers(8))
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 1
    assert "needs 8 messages but the daily quota allows 5 more now" in result.output and "--limit 5" in result.output
    assert moto_ses.raw_messages() == [] and ledger_states(config_path) == {}

    result = cli(config_path, "send", "--yes", "--limit", "5", str(ISSUE))
    assert "sent: 5 of 5" in result.output
    # SES's GetAccount is missing on moto: the ledger's own count of the last 24 hours stands in.
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert "allows 0 more now" in result.output and result.exit_code == 1
    assert len(moto_ses.raw_messages()) == 5


def test_the_quota_and_rate_come_from_ses_get_account_when_it_answers(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=500)
    addresses = readers(4)
    subscribe(config_path, addresses)

    def with_account(sent_last_24h: int):
        quota = {"Max24HourSend": 200, "MaxSendRate": 20, "SentLast24Hours": sent_last_24h}
        body = json.dumps({"SendQuota": quota}).encode()
        return ses_with_hooks({"before-send.sesv2.GetAccount": lambda request, **_: ses_answer(request, 200, body)})

    with pytest.raises(QuotaError, match="allows 3 more now .*from ses GetAccount") as caught:
        send_in_process(config_path, transport_factory=with_account(197))
    assert caught.value.allowance == 3 and moto_ses.raw_messages() == []
    summary = send_in_process(config_path, transport_factory=with_account(0))
    assert summary.complete and summary.rate == pytest.approx(18.0)  # 0.9 of GetAccount's 20/s, not the config's 500
    assert summary.quota["source"] == "ses GetAccount"


def test_a_real_send_prints_the_quota_it_read_and_the_rate_it_keeps(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=20, workers=3)
    subscribe(config_path, readers(2))
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "quota:     20/s, 50000/24h, 0 sent in the last 24h (from config and the ledger)" in result.output
    assert "rate:      18.0 messages/s (0.9 of 20/s), 2 workers" in result.output  # no more than recipients
    summary = json.loads(cli(config_path, "send", "--yes", "--json", str(ISSUE)).output)
    assert summary["quota"]["max_send_rate"] == 20 and summary["rate"] == pytest.approx(18.0)


# --- the same contract over SMTP ----------------------------------------------------------------


def smtp_config(tmp_path, server, **options):
    smtp = f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "none"'
    return sending_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp, **options)


def test_smtp_4xx_is_retried_then_left_pending_and_5xx_fails_that_recipient_only(tmp_path, smtp_server, secret):
    config_path = smtp_config(tmp_path, smtp_server)
    addresses = readers(6)
    subscribe(config_path, addresses)
    smtp_server.rcpt_replies[addresses[1]] = "450 4.2.1 mailbox busy"
    smtp_server.rcpt_replies[addresses[4]] = "550 5.1.1 no such user"
    summary = send_in_process(config_path)
    assert {(f.address, f.kind, f.code) for f in summary.failures} == {(addresses[4], "RecipientRejectedError", "550")}
    assert {(f.address, f.kind, f.code) for f in summary.deferred} == {(addresses[1], "RecipientDeferredError", "450")}
    assert summary.stopped is None and summary.ledger["pending"] == 1  # the others were sent all the same
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(set(addresses) - {addresses[1], addresses[4]})
    assert ledger_states(config_path)[addresses[1]] == "pending"
    assert status_json(config_path)["problems"][0]["attempts"] == 1  # only the 550 is a problem

    del smtp_server.rcpt_replies[addresses[1]]  # the mailbox has room again: a plain rerun sends it
    summary = send_in_process(config_path)
    assert summary.sent == 1 and ledger_states(config_path)[addresses[1]] == "sent"


def test_smtp_login_refused_stops_the_run_with_everyone_pending(tmp_path, smtp_tls_server, secret, monkeypatch):
    import ssl

    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    smtp = (f'host = "127.0.0.1"\nport = {smtp_tls_server.port}\nsecurity = "starttls"\n'
            f'username = "editor"\npassword_env = "TEST_SMTP_PASSWORD"')
    config_path = sending_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp)
    subscribe(config_path, readers(5))
    context = ssl.create_default_context()
    smtp_tls_server.ca.configure_trust(context)

    def trusting_factory(config):
        return lambda: SmtpTransport(config.smtp, config.from_address, ssl_context=context)

    summary = send_in_process(config_path, transport_factory=trusting_factory)
    assert summary.stopped and "535" in summary.stopped
    assert set(ledger_states(config_path).values()) == {"pending"}
    assert smtp_tls_server.messages == []

    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    summary = send_in_process(config_path, transport_factory=trusting_factory)
    assert summary.complete and summary.sent == 5
    assert sorted(m.rcpt_tos[0] for m in smtp_tls_server.messages) == readers(5)


def test_a_second_send_of_the_same_database_is_refused_while_one_runs(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml")
    subscribe(config_path, readers(2))
    with Store.open(load_config(config_path).database) as store, store.send_lock():
        result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 1 and "another send is running" in result.output
    assert moto_ses.raw_messages() == []
