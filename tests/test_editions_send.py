"""Each reader's edition through a send: the import, the dry run's manifest and samples, the list
send through moto's SES over HTTP (the ledger's edition per row, `status` by edition), a send
killed with kill -9 and resumed after readers changed edition, test copies, the version."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import email
import email.policy
import re
import signal
from pathlib import Path


from newsletter import completeness, markup
from newsletter.config import load_config
from newsletter.parse import parse_issue
from newsletter.events import EditionChanged
from newsletter.events.apply import apply_locally
from newsletter.config import EventSettings
from newsletter.model import EDITIONS
from newsletter.preferences import PreferenceTokens
from newsletter.send.plan import IssueToSend, issue_version
from newsletter.store import Store
from newsletter.unsubscribe import DEVELOPMENT_KEY, SigningKey
from sending_fixtures import (
    ISSUE,
    SECRET,
    TcpProxy,
    cli,
    delivered,
    ledger_states,
    readers,
    secret,  # noqa: F401  (fixture)
    sending_config,
    start_send,
    status_json,
    wait_until,
)

LIST_ID = "top-ml-papers.newsletter.example.com"
THREE = {"both@example.com": "bilingual", "hangul@example.com": "ko", "english@example.com": "en"}


def parsed(raw: bytes | str) -> email.message.EmailMessage:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return email.message_from_bytes(data, policy=email.policy.default)


def edition_of(message: email.message.EmailMessage, key: SigningKey) -> str:
    """The edition the message's own preferences link says it was sent in."""
    text = message.get_body(("plain",)).get_content()
    token = re.search(r"/preferences/([\w-]+)", text).group(1)
    return PreferenceTokens(LIST_ID, key, dt.timedelta(days=90)).check(token, dt.datetime.now(dt.UTC)).edition


def import_editions(config_path: Path, tmp_path: Path, editions: dict[str, str]) -> None:
    """The list, imported from a CSV with an edition column (the bilingual as an empty cell)."""
    path = tmp_path / "list.csv"
    path.write_text("email,edition\n" + "".join(f"{address},{'' if edition == 'bilingual' else edition}\n"
                                               for address, edition in editions.items()), encoding="utf-8")
    result = cli(config_path, "subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    counts = {edition: list(editions.values()).count(edition) for edition in EDITIONS}
    assert result.output.splitlines()[-1] == f"subscribed now: {len(editions)} (" + ", ".join(
        f"{edition} {count}" for edition, count in counts.items() if count) + ")"


def test_a_dry_run_gives_three_readers_three_editions_and_the_manifest_names_each(tmp_path, no_network):
    config_path = sending_config(tmp_path / "newsletter.toml")
    import_editions(config_path, tmp_path, THREE)
    result = cli(config_path, "send", "--dry-run", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "to:        3 (subscribed addresses: bilingual 1, ko 1, en 1)" in result.output
    with (tmp_path / "outbox" / "manifest.csv").open(encoding="utf-8") as manifest:
        rows = list(csv.DictReader(manifest))
    assert list(rows[0]) == ["number", "recipient", "issue_id", "edition", "bytes", "sample"]
    assert {row["recipient"]: row["edition"] for row in rows} == THREE
    samples = {row["recipient"]: parsed((tmp_path / "outbox" / row["sample"]).read_bytes()) for row in rows}
    assert {address: edition_of(message, DEVELOPMENT_KEY) for address, message in samples.items()} == THREE
    parts = {THREE[address]: {kind: message.get_body((kind,)).get_content() for kind in ("plain", "html")}
             for address, message in samples.items()}
    reading = {edition: {"text": " ".join(part["plain"].split()), "html": " ".join(completeness.reading(part["html"]).split())}
               for edition, part in parts.items()}
    issue = parse_issue(ISSUE)
    passages = [passage for paper in issue.papers for passage in paper.summary + paper.abstract]
    originals = [first_words(passage.en) for passage in passages]
    koreans = [first_words(passage.ko) for passage in passages]
    for kind in ("text", "html"):
        # No English original in ko, every one in bilingual, and in en; the Korean in ko and bilingual only.
        assert [text for text in originals if text in reading["ko"][kind]] == [], kind
        assert [text for text in originals if text not in reading["bilingual"][kind]] == [], kind
        assert [text for text in originals if text not in reading["en"][kind]] == [], kind
        assert [text for text in koreans if text not in reading["ko"][kind] or text not in reading["bilingual"][kind]] == []
        assert [text for text in koreans if text in reading["en"][kind]] == [], kind
        assert hangul_share(reading["en"][kind]) < 0.02, kind
    assert hangul_share(reading["ko"]["text"]) > 0.3 and hangul_share(reading["bilingual"]["text"]) > 0.1
    subjects = {THREE[address]: message["Subject"] for address, message in samples.items()}
    assert subjects == {"bilingual": "Llemma, Self-RAG, GenBench 외 7편", "ko": "Llemma, Self-RAG, GenBench 외 7편",
                        "en": "Llemma, Self-RAG, GenBench and 7 more"}


def first_words(text) -> str:
    return " ".join(markup.to_plain(text).split())[:50]


def hangul_share(text: str) -> float:
    """Hangul syllables among the characters that are not spaces."""
    letters = "".join(text.split())
    return len(re.findall("[가-힣]", letters)) / len(letters)


def test_the_dry_run_keeps_a_sample_of_every_edition_beyond_the_first_three(tmp_path, no_network):
    config_path = sending_config(tmp_path / "newsletter.toml")
    editions = {address: "bilingual" for address in readers(5)}
    editions |= {"zz-english@example.com": "en"}  # last in address order
    import_editions(config_path, tmp_path, editions)
    assert cli(config_path, "send", "--dry-run", str(ISSUE)).exit_code == 0
    with (tmp_path / "outbox" / "manifest.csv").open(encoding="utf-8") as manifest:
        sampled = [(row["recipient"], row["edition"]) for row in csv.DictReader(manifest) if row["sample"]]
    assert sampled[:3] == [(address, "bilingual") for address in readers(3)]
    assert sampled[3:] == [("zz-english@example.com", "en")]


def test_a_list_send_gives_each_reader_their_edition_records_it_per_row_and_status_counts_it(
        tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml")
    import_editions(config_path, tmp_path, THREE)
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    key = SigningKey(SECRET.encode(), "test")
    received = {message["To"].addresses[0].addr_spec: edition_of(message, key) for message in moto_ses.messages()}
    assert received == THREE
    with Store.open(load_config(config_path).database) as store:
        assert dict(store.connection.execute("SELECT address, edition FROM delivery")) == THREE
    report = status_json(config_path)
    assert {edition: counts["sent"] for edition, counts in report["by_edition"].items()} == {
        "bilingual": 1, "ko": 1, "en": 1}
    text = cli(config_path, "status", str(ISSUE)).output
    assert "  ko: sent 1" in text and "  en: sent 1" in text and "  bilingual: sent 1" in text


def test_killed_mid_send_then_readers_change_edition_the_resume_sends_the_edition_they_had_when_it_began(
        tmp_path, moto_ses, secret):
    """kill -9 while calls are in flight; then every reader still waiting picks another edition
    (on the preferences page, applied to the list); the resumed send gives them the edition their
    row was queued in, and a reader who joined since gets theirs."""
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=8, workers=4)
    addresses = readers(40)
    before = {address: EDITIONS[n % 3] for n, address in enumerate(addresses)}
    import_editions(config_path, tmp_path, before)
    proxy = TcpProxy(moto_ses.endpoint_url, delay=0.4)
    child = start_send(config_path, endpoint_url=proxy.url)
    try:
        wait_until(lambda: list(ledger_states(config_path).values()).count("sent") >= 5, what="a send mid-way")
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=20)
    finally:
        child.kill()
        proxy.close()
    states = ledger_states(config_path)
    waiting = [address for address, state in states.items() if state in ("pending", "sending")]
    assert waiting
    config = load_config(config_path)
    for address in waiting:  # each picks the next edition round
        apply_locally(config.database, EventSettings(), EditionChanged(address, EDITIONS[(EDITIONS.index(before[address]) + 1) % 3]))
    assert cli(config_path, "subscribers", "add", "newcomer@example.com", "--edition", "en").exit_code == 0

    sending_config(tmp_path / "newsletter.toml", max_send_rate=500, workers=4)
    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    key = SigningKey(SECRET.encode(), "test")
    got = {}
    for message in moto_ses.messages():
        got.setdefault(message["To"].addresses[0].addr_spec, []).append(edition_of(message, key))
    assert max(delivered(moto_ses).values()) == 1
    assert got.pop("newcomer@example.com") == ["en"]
    assert {address: editions[0] for address, editions in got.items()} == {address: before[address] for address in got}
    with Store.open(config.database) as store:  # the list has their new choice for the next issue
        assert all(store.get(address).edition != before[address] for address in waiting)


def test_test_copies_take_edition(tmp_path, smtp_server, secret):
    smtp = f'host = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"'
    config_path = sending_config(tmp_path / "newsletter.toml", transport="smtp", smtp=smtp)
    result = cli(config_path, "send", "--yes", "--to", "me@example.com", "--edition", "ko", "--edition", "en", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert "test copy to me@example.com (ko, en)" in result.output
    key = SigningKey(SECRET.encode(), "test")
    assert [edition_of(message, key) for message in smtp_server.parsed()] == ["ko", "en"]
    refused = cli(config_path, "send", "--dry-run", "--edition", "en", str(ISSUE))
    assert refused.exit_code == 1 and "--edition picks the editions of test copies (--to)" in refused.output
    assert cli(config_path, "send", "--to", "me@example.com", "--edition", "fr", str(ISSUE)).exit_code == 2


def test_the_version_covers_every_edition(tmp_path):
    config = load_config(sending_config(tmp_path / "newsletter.toml"))
    editions = dict(IssueToSend.load(ISSUE, config).editions)
    version = issue_version(editions)
    for edition in EDITIONS:
        for field in ("subject", "html", "text"):
            changed = dict(editions)
            changed[edition] = dataclasses.replace(editions[edition], **{field: getattr(editions[edition], field) + "x"})
            assert issue_version(changed) != version, (edition, field)
    assert version.subject == editions["bilingual"].subject
