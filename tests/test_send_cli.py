"""`newsletter send` end to end: the sample issue to a small list through moto's SES server and a
real aiosmtpd server on 127.0.0.1, the dry run with the network forbidden, test copies, refusals."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_config
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.model import PREFERENCES_URL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, Subscriber
from newsletter.parse import parse_issue
from newsletter.render import render_issue
from newsletter.store import Store, utc_now
from newsletter.unsubscribe import DEVELOPMENT_KEY, DEVELOPMENT_SECRET, SigningKey, TokenSigner, UnsubscribeLinks

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "issues" / "2023-10-16.md"
SECRET = "a-test-secret-that-is-long-enough-0123456789"
SUBSCRIBED = {
    "minji.kim@example.com": "김민지",
    "jihoon.park@example.com": "박지훈",
    "alex.morgan@example.com": "Alex Morgan",
    "sam.rivera@example.org": None,
}
LEFT = {"gone@example.org": "unsubscribed", "bouncy@example.org": "bounced", "angry@example.org": "complained"}


def run(config_path: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["--config", str(config_path), *args], input=input)


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def add_list(config_path: Path) -> None:
    """The subscribers through the CLI, then those who left marked so in the store."""
    for address, name in {**SUBSCRIBED, **dict.fromkeys(LEFT)}.items():
        result = run(config_path, "subscribers", "add", address, *(["--name", name] if name else []))
        assert result.exit_code == 0, result.output
    with Store.open(load_config(config_path).database) as store:
        for address, status in LEFT.items():
            store.set_status(address, status, "test")


def token_owner(message: email.message.EmailMessage, key: SigningKey) -> str | None:
    """The address that the message's List-Unsubscribe token was signed for."""
    token = re.search(r"<https://[^>]*/unsubscribe/([^>]+)>", message["List-Unsubscribe"]).group(1)
    return TokenSigner("top-ml-papers.newsletter.example.com", key).address(token)


def check_delivered(messages: list[email.message.EmailMessage], key: SigningKey) -> None:
    """One message per subscribed address, each complete and carrying its own token."""
    by_recipient = {message["To"].addresses[0].addr_spec: message for message in messages}
    assert len(messages) == len(by_recipient) == len(SUBSCRIBED)
    assert set(by_recipient) == set(SUBSCRIBED)
    for address, message in by_recipient.items():
        assert message["To"].addresses[0].display_name == (SUBSCRIBED[address] or "")
        for header in ("From", "Reply-To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe-Post"):
            assert message[header], header
        assert message["Subject"] == "Llemma, Self-RAG, GenBench 외 7편"
        assert token_owner(message, key) == address
        text, html = (message.get_body((kind,)).get_content() for kind in ("plain", "html"))
        https_url = message["List-Unsubscribe"].split(">")[0].lstrip("<")
        assert https_url in text and https_url in html
        assert "Llemma" in text and "Llemma" in html


def test_send_through_ses_reaches_every_subscribed_address_once(tmp_path, moto_ses, secret):
    config_path = write_config(tmp_path / "newsletter.toml", transport="ses")
    add_list(config_path)
    result = run(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "sent: 4 of 4; failed: 0" in result.output
    check_delivered(moto_ses.messages(), SigningKey(SECRET.encode(), "test"))


def test_send_through_smtp_reaches_every_subscribed_address_once(tmp_path, smtp_server, secret):
    smtp = f'host = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"'
    config_path = write_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp)
    add_list(config_path)
    result = run(config_path, "send", "--yes", "--json", str(ISSUE))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["sent"], summary["failures"], summary["complete"]) == (4, [], True)
    assert all(envelope.rcpt_tos[0] in SUBSCRIBED for envelope in smtp_server.messages)
    check_delivered(smtp_server.parsed(), SigningKey(SECRET.encode(), "test"))


def test_a_rejected_recipient_is_reported_and_the_exit_code_says_so(tmp_path, smtp_server, secret):
    smtp_server.rcpt_replies["jihoon.park@example.com"] = "550 5.1.1 no such user"
    smtp = f'host = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"'
    config_path = write_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp)
    add_list(config_path)
    result = run(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 1
    assert "failed: jihoon.park@example.com: RecipientRejectedError 550" in result.output
    assert len(smtp_server.messages) == len(SUBSCRIBED) - 1  # the others still got theirs


def test_dry_run_opens_no_socket_and_its_samples_decode_to_the_rendered_issue(tmp_path, no_network):
    config_path = write_config(tmp_path / "newsletter.toml")
    add_list(config_path)
    result = run(config_path, "send", "--dry-run", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "to:        4 (subscribed addresses: bilingual 4)" in result.output
    assert "(10 papers)" in result.output.splitlines()[0]
    assert "preparing" not in result.output  # no progress bar when stdout is not a terminal
    assert re.search(r"HTML part as sent bilingual \d+\.\d KB, ko \d+\.\d KB, en \d+\.\d KB, under Gmail's clipping point", result.output)
    assert "first recipients: alex.morgan@example.com, jihoon.park@example.com" in result.output

    config = load_config(config_path)
    rendered = render_issue(parse_issue(ISSUE), config)
    links = UnsubscribeLinks(config, DEVELOPMENT_KEY)
    samples = sorted((tmp_path / "outbox").glob("*.eml"))
    assert samples and all(f"sample: {path}" in result.output for path in samples)
    for path in samples:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        address = message["To"].addresses[0].addr_spec
        https_url, _ = links.for_address(address)
        assert "/unsubscribe/dev-" in https_url  # a dry run's links are marked as such
        preferences_url = re.search(r"https://newsletter\.example\.com/preferences/dev-[\w-]+",
                                    message.get_body(("plain",)).get_content()).group(0)
        for kind, part in (("html", rendered.html), ("plain", rendered.text)):
            assert message.get_body((kind,)).get_content() == part.replace(UNSUBSCRIBE_URL_PLACEHOLDER, https_url).replace(
                PREFERENCES_URL_PLACEHOLDER, preferences_url)

    with (tmp_path / "outbox" / "manifest.csv").open(encoding="utf-8") as manifest:
        rows = list(csv.DictReader(manifest))
    assert sorted(row["recipient"] for row in rows) == sorted(SUBSCRIBED)
    assert all(int(row["bytes"]) > 50_000 for row in rows)


def test_test_copy_goes_to_any_address_and_records_nothing(tmp_path, moto_ses, secret):
    config_path = write_config(tmp_path / "newsletter.toml")
    add_list(config_path)
    result = run(config_path, "send", "--yes", "--to", "editor@elsewhere.example", "--to", "gone@example.org", str(ISSUE))
    assert result.exit_code == 0, result.output
    delivered = sorted(m["To"].addresses[0].addr_spec for m in moto_ses.messages())
    assert delivered == ["editor@elsewhere.example", "gone@example.org"]  # even one who left: it is a test
    with Store.open(load_config(config_path).database) as store:
        assert store.get("editor@elsewhere.example") is None
        assert store.get("gone@example.org").status == "unsubscribed"


def test_a_real_send_asks_first_and_sends_nothing_when_told_no(tmp_path, moto_ses, secret):
    config_path = write_config(tmp_path / "newsletter.toml")
    add_list(config_path)
    result = run(config_path, "send", str(ISSUE), input="n\n")
    assert result.exit_code == 1
    assert "from:      Top ML Papers <digest@newsletter.example.com>" in result.output
    assert "transport: ses" in result.output and "Send to 4 recipient(s) now?" in result.output
    assert moto_ses.raw_messages() == []
    assert run(config_path, "send", str(ISSUE), input="y\n").exit_code == 0
    assert len(moto_ses.raw_messages()) == 4


@pytest.mark.parametrize("secret_value", [None, DEVELOPMENT_SECRET.decode()])
def test_a_real_send_refuses_the_development_key(tmp_path, moto_ses, monkeypatch, secret_value):
    if secret_value is None:
        monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    else:
        monkeypatch.setenv("NEWSLETTER_SECRET", secret_value)
    config_path = write_config(tmp_path / "newsletter.toml")
    add_list(config_path)
    result = run(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code != 0
    assert "key" in result.output and "error:" in result.output
    assert moto_ses.raw_messages() == []


def test_header_injection_in_a_test_address_is_refused(tmp_path, moto_ses, secret):
    config_path = write_config(tmp_path / "newsletter.toml")
    result = run(config_path, "send", "--yes", "--to", "editor@example.org\r\nBcc: all@example.org", str(ISSUE))
    assert result.exit_code == 1
    assert "error: --to" in result.output and "line break" in result.output
    assert moto_ses.raw_messages() == []


def test_a_test_copy_takes_a_korean_domain_as_the_list_does_and_names_a_korean_local_part(tmp_path, moto_ses, secret):
    # The list keeps kim@예시.kr as kim@xn--vv4b11d.kr (what SES delivers to); --to does the same.
    config_path = write_config(tmp_path / "newsletter.toml")
    sent = run(config_path, "send", "--yes", "--to", "kim@예시.kr", str(ISSUE))
    assert sent.exit_code == 0, sent.output
    assert [set(m["destinations"]) for m in moto_ses.raw_messages()] == [{"kim@xn--vv4b11d.kr"}]
    refused = run(config_path, "send", "--yes", "--to", "민준@example.kr", str(ISSUE))
    assert refused.exit_code == 1
    assert "error: --to '민준@example.kr': the part before the @ is not ASCII" in refused.output
    assert len(moto_ses.raw_messages()) == 1


def test_header_injection_in_a_stored_name_fails_that_recipient_only(tmp_path, moto_ses, secret):
    """The issue parser already folds whitespace in a subject (compose refuses CR/LF there too, see
    test_compose); a name that reached the store with a line break must not become a header."""
    config_path = write_config(tmp_path / "newsletter.toml")
    add_list(config_path)
    with Store.open(load_config(config_path).database) as store:
        now = utc_now()
        store.insert([Subscriber("mallory@example.org", "Mallory\r\nBcc: all@example.org", "subscribed", "test", now, now)])
    result = run(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 1
    assert "failed: mallory@example.org: MessageError" in result.output and "line break" in result.output
    raws = [item["raw_data"] for item in moto_ses.raw_messages()]
    assert len(raws) == len(SUBSCRIBED) and not any("Bcc" in raw for raw in raws)


def test_the_network_guard_catches_a_send_that_does_use_the_network(tmp_path, moto_ses, secret, no_network):
    """The dry-run test above proves something only if the guard stops real traffic."""
    config_path = write_config(tmp_path / "newsletter.toml")
    result = run(config_path, "send", "--yes", "--to", "editor@example.org", str(ISSUE))
    assert result.exit_code == 1
    assert "sent: 0 of 1" in result.output and "network use attempted" in result.output


def test_a_dry_run_with_an_empty_list_says_how_to_fill_it_and_still_sizes_the_email(tmp_path, no_network):
    config_path = write_config(tmp_path / "newsletter.toml")
    result = run(config_path, "send", "--dry-run", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "to:        0 (subscribed addresses)" in result.output
    assert "newsletter subscribers import FILE.csv" in result.output
    assert re.search(r"HTML part as sent bilingual \d+\.\d KB, ko \d+\.\d KB, en \d+\.\d KB, under Gmail's clipping point", result.output)


def test_a_dry_run_warns_when_gmail_would_clip_the_issue(tmp_path, no_network):
    from test_render import write_issue_with_papers

    config_path = write_config(tmp_path / "newsletter.toml")
    add_list(config_path)
    big = write_issue_with_papers(tmp_path / "big.md", 30)
    result = run(config_path, "send", "--dry-run", str(big))
    assert result.exit_code == 0, result.output
    assert re.search(r"HTML part as sent bilingual \d+\.\d KB, ko \d+\.\d KB, en \d+\.\d KB, over Gmail's clipping point", result.output)
    assert 'warning: Gmail will show this issue (bilingual, ko, en) as "[Message clipped]"' in result.output


# --- no surprises (issue 19) -----------------------------------------------------------------------


def test_a_test_copy_with_transport_outbox_needs_no_credentials_and_leaves_the_machine_nothing(
        tmp_path, monkeypatch, no_network):
    """kind = "outbox": a copy to yourself as an .eml file, with no AWS credentials, no SMTP server
    and no signing key set (nothing leaves the machine, so the development key is fine)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "NEWSLETTER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config_path = write_config(tmp_path / "newsletter.toml", transport="outbox")
    result = run(config_path, "send", "--to", "editor@example.com", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "transport: dry run (outbox, no network)" in result.output
    [sample] = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(sample.read_bytes(), policy=email.policy.default)
    assert message["To"] == "editor@example.com"
    assert message["Subject"] == render_issue(parse_issue(ISSUE), load_config(config_path)).subject


def test_a_send_without_a_terminal_to_ask_on_names_yes(tmp_path, moto_ses, secret):
    config_path = write_config(tmp_path / "newsletter.toml")
    result = run(config_path, "send", "--to", "editor@example.com", str(ISSUE), input="")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        'error: not sent: no answer to "Send to 1 recipient(s) now?" (no terminal to ask on?); '
        "pass --yes to send without asking")
    assert moto_ses.raw_messages() == []


def test_a_test_copy_that_stops_does_not_claim_the_rest_are_pending(tmp_path, smtp_server, secret, monkeypatch):
    """An SMTP server that offers no AUTH to a configured username: the account cannot send."""
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    smtp = (f'host = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\nusername = "editor"\n'
            'password_env = "TEST_SMTP_PASSWORD"')
    config_path = write_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp)
    result = run(config_path, "send", "--yes", "--to", "editor@example.com", str(ISSUE))
    assert result.exit_code == 1
    assert "pending" not in result.output
    assert ("Then run the same `newsletter send` again (test copies and dry runs are recorded nowhere: it starts "
            "over)") in result.output


def test_a_list_send_reads_and_renders_the_issue_once(tmp_path, moto_ses, secret, static_site, monkeypatch):
    """Every check before the send (draft, web page, feedback) and the send itself use the same
    parsed and rendered issue, each edition rendered once: each Issue and RenderedIssue built is
    counted."""
    from newsletter.model import EDITIONS, Issue, RenderedIssue

    config_path = write_config(tmp_path / "newsletter.toml")
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(text.replace("check_before_send = false", "check_before_send = true").replace(
        "https://newsletter.example.com/issues/", static_site.url), encoding="utf-8")
    add_list(config_path)
    assert run(config_path, "publish", "--out", str(static_site.root), str(ISSUE)).exit_code == 0
    built = {Issue: 0, RenderedIssue: 0}
    for kind in built:
        original = kind.__init__

        def counting(self, *args, __original=original, __kind=kind, **kwargs):
            built[__kind] += 1
            __original(self, *args, **kwargs)

        monkeypatch.setattr(kind, "__init__", counting)
    result = run(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    # One Issue parsed, plus the ko and en views of it (the bilingual view is the issue itself).
    assert built == {Issue: 1 + len(EDITIONS) - 1, RenderedIssue: len(EDITIONS)}


def test_status_alone_shows_the_latest_issue_sent(tmp_path, moto_ses, secret):
    config_path = write_config(tmp_path / "newsletter.toml")
    nothing = run(config_path, "status")
    assert nothing.exit_code == 0
    assert nothing.output == (f"no issue has been sent from {tmp_path / 'newsletter.db'} yet; name one: "
                              "`newsletter status ISSUE.md`\n")
    add_list(config_path)
    later = tmp_path / "2023-10-23.md"
    later.write_text(ISSUE.read_text(encoding="utf-8").replace("date: 2023-10-16", "date: 2023-10-23"), encoding="utf-8")
    assert run(config_path, "send", "--yes", str(later)).exit_code == 0
    assert run(config_path, "send", "--yes", str(ISSUE)).exit_code == 0  # an older week, sent last
    result = run(config_path, "status")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "issue 2023-10-23: 4 recipient(s) in the ledger"
    assert json.loads(run(config_path, "status", "--json").output)["issue_id"] == "2023-10-23"
