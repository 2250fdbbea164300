"""What the feedback loop does with messages it must not simply believe: forged unsubscribe mail,
a provider's not-spam correction, malformed bodies of every shape, names with control characters,
non-ASCII addresses. End to end through moto's SNS and SQS over HTTP, then a send."""

from __future__ import annotations

import copy
import json

import pytest

from events_fixtures import (
    cli,
    cli_json,
    events_config,
    example,
    inbound_unsubscribe,
    message_ids,
    publish,
    query,
    queue_url,
    ses_event,
    sns_envelope,
    statuses,
)
from newsletter.config import load_config
from newsletter.events import SubscribeConfirmed, Unsubscribe, put_event
from newsletter.events.parse import MalformedMessage, parse_message
from sending_fixtures import ISSUE
from test_feedback_loop import recipients, secret, subscribe  # noqa: F401 - the fixture is used by name


def inbound_from(sender: str, envelope_sender: str, signed_by: str | None = None, **verdicts: str) -> dict:
    """Mail to the unsubscribe address with no token: From `sender`, MAIL FROM `envelope_sender`,
    a DKIM signature by `signed_by`, and SES's verdicts."""
    payload = inbound_unsubscribe(sender, "unsubscribe", **verdicts)
    payload["mail"]["source"] = envelope_sender
    if signed_by:
        payload["mail"]["headers"].append({"name": "DKIM-Signature", "value": f"v=1; a=rsa-sha256; d={signed_by}; s=x"})
    return payload


def test_unsubscribe_mail_counts_only_from_a_proven_from_domain(tmp_path, moto_events):
    config_path = events_config(tmp_path, inbound_address="unsubscribe@newsletter.example.com")
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, ["victim@example.com", "dmarc@example.org", "aligned@example.net", "김민지@example.kr"
                            .replace("김민지", "kim")])
    publish(
        moto_events,
        # A forger's own domain passes SPF and DKIM; DMARC fails: the From is not theirs to use.
        inbound_from("Victim <victim@example.com>", "bounce@evil.example", "evil.example",
                     spfVerdict="PASS", dkimVerdict="PASS", dmarcVerdict="FAIL"),
        inbound_from("dmarc@example.org", "x@mailer.example", None, spfVerdict="PASS", dkimVerdict="PASS",
                     dmarcVerdict="PASS"),
        # No DMARC record (GRAY): SPF passing for the From's own domain proves it.
        inbound_from("aligned@example.net", "bounces@mail.example.net", None, spfVerdict="PASS", dmarcVerdict="GRAY"),
        # A Korean display name: the address is what counts.
        inbound_from("김민지 <KIM@example.kr>", "b@evil.example", "example.kr.evil.example",
                     spfVerdict="PASS", dkimVerdict="PASS", dmarcVerdict="FAIL"),
    )
    summary = cli_json(config_path, "sync")
    assert summary["applied"] == {"unsubscribe_mail": 2, "unsubscribe_mail_unproven": 2}
    unproven = [note for note in summary["notes"] if "not proven" in note]
    assert len(unproven) == 2 and "SPF PASS, DKIM PASS, DMARC FAIL" in unproven[0]
    assert statuses(config_path) == {"victim@example.com": "subscribed", "dmarc@example.org": "unsubscribed",
                                     "aligned@example.net": "unsubscribed", "kim@example.kr": "subscribed"}


def test_a_not_spam_report_is_recorded_and_is_no_complaint(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, ["reader@example.com"])
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    correction = ses_event("event-complaint.json", "reader@example.com", message_ids(config_path, "2023-10-16")[
        "reader@example.com"])
    correction["complaint"]["complaintFeedbackType"] = "not-spam"
    publish(moto_events, correction)
    assert cli_json(config_path, "sync")["applied"] == {"not_spam": 1}
    assert statuses(config_path) == {"reader@example.com": "subscribed"}
    assert query(config_path, "SELECT kind, detail FROM delivery_event") == [("not_spam", "not-spam")]
    assert cli_json(config_path, "status", str(ISSUE))["feedback"]["recipients"]["complained"] == 0


def _bounce(**changes) -> dict:
    payload = ses_event("event-bounce.json", "x@example.com", "m-x")
    payload["bounce"].update(changes)
    return payload


def _with(payload: dict, path: tuple, value) -> dict:
    payload = copy.deepcopy(payload)
    place = payload
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return payload


RECEIVED = example("received-sns-action.json")
# Bodies SQS could hand out: what the issue found, and more of the same kinds. Each is malformed
# (left for the dead-letter queue), or read as far as it makes sense where only an optional part
# is odd; none may stop the sync.
MALFORMED = {
    "a list where a string is expected": sns_envelope(_bounce(bounceType=["Permanent"])),
    "a string inside bouncedRecipients": sns_envelope(_bounce(bouncedRecipients=["x@example.com"])),
    "a year-1 timestamp": sns_envelope(_with(_bounce(timestamp="0001-01-01T00:00:00Z"),
                                             ("mail", "timestamp"), "0001-01-01T00:00:00Z")),
    "a year-1 timestamp east of UTC": sns_envelope(_bounce(timestamp="0001-01-01T00:00:00+09:00")),
    "a year-9999 timestamp west of UTC": sns_envelope(_bounce(timestamp="9999-12-31T23:59:59-09:00")),
    "the SNS Type as a list": json.dumps({"Type": ["Notification"], "MessageId": "x", "Message": "{}"}),
    "the SNS MessageId as an object": json.dumps({"Type": "Notification", "MessageId": {}, "Message": "{}"}),
    "the SNS Message as a number": json.dumps({"Type": "Notification", "MessageId": "x", "Message": 7}),
    "a lone surrogate in an address": sns_envelope(_bounce(bouncedRecipients=[{"emailAddress": "\ud800@example.com"}])),
    "a NUL in an address": sns_envelope(_bounce(bouncedRecipients=[{"emailAddress": "a\x00b@example.com"}])),
    "nesting 100,000 deep": "[" * 100_000,
    "our own event's type as a list": json.dumps({"type": ["unsubscribe"], "id": "x", "address": "a@example.com"}),
    "a name that is an object": json.dumps({"type": "subscribe_confirmed", "id": "y", "address": "a@example.com",
                                            "name": {"first": "x"}, "confirmed_at": "2026-01-01T00:00:00Z"}),
    "a lone surrogate where an object belongs": json.dumps({"eventType": "Bounce", "mail": "\udcff"}),
    "an edition that is an object": json.dumps({"type": "edition_changed", "id": "z", "address": "a@example.com",
                                                "edition": {"en": True}, "at": "2026-01-01T00:00:00Z"}),
    "an edition change without a time": json.dumps({"type": "edition_changed", "id": "z2", "address": "a@example.com",
                                                     "edition": "en"}),
}
ODD_BUT_READABLE = {
    "bounceSubType as an object": sns_envelope(_bounce(bounceSubType={"a": 1})),
    "eventType as a list, the bounce object present": sns_envelope({**_bounce(), "eventType": ["Bounce"]}),
    "commonHeaders as a list": sns_envelope(_with(RECEIVED, ("mail", "commonHeaders"), ["from"])),
    "receipt recipients as a number": sns_envelope(_with(RECEIVED, ("receipt", "recipients"), 5)),
}


def test_malformed_bodies_of_every_shape_never_stop_a_sync_or_the_send(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, ["angry@example.com", "leaver@example.com", "stays@example.com"])
    sqs, url = moto_events.client("sqs"), queue_url(moto_events)
    for body in [*MALFORMED.values(), *ODD_BUT_READABLE.values()]:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    publish(moto_events, ses_event("event-complaint.json", "angry@example.com", "elsewhere"))
    put_event(load_config(config_path), Unsubscribe("leaver@example.com"))

    sent = cli(config_path, "send", "--yes", str(ISSUE))
    assert sent.exit_code == 0, sent.output + sent.stderr
    assert "Traceback" not in sent.stderr
    assert sent.stderr.count("left for the dead-letter queue") == len(MALFORMED)
    assert recipients(moto_events.ses.messages()) == ["stays@example.com"]
    assert statuses(config_path) == {"angry@example.com": "complained", "leaver@example.com": "unsubscribed",
                                     "stays@example.com": "subscribed", "x@example.com": "bounced"}


def test_every_malformed_shape_is_malformed_with_a_one_line_reason():
    for shape, body in MALFORMED.items():
        with pytest.raises(MalformedMessage) as raised:
            parse_message(body, "sqs-1")
        reason = str(raised.value)
        assert reason and "\n" not in reason and len(reason) < 700, shape
    for shape, body in ODD_BUT_READABLE.items():
        assert parse_message(body, "sqs-1").event_id, shape


def test_a_confirmed_name_with_nul_or_esc_is_stored_clean_and_the_reader_is_mailed(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    put_event(load_config(config_path), SubscribeConfirmed("reader@example.com", "Kim\x00 Min\x1b[31mji 김민지\x07"))
    assert cli_json(config_path, "sync")["applied"] == {"subscribe_confirmed": 1}
    assert query(config_path, "SELECT name FROM subscriber") == [("Kim Min[31mji 김민지",)]
    sent = cli(config_path, "send", "--yes", str(ISSUE))
    assert sent.exit_code == 0, sent.output + sent.stderr
    assert recipients(moto_events.ses.messages()) == ["reader@example.com"]
    assert moto_events.ses.messages()[0]["To"].addresses[0].display_name == "Kim Min[31mji 김민지"
