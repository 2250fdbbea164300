"""Parsing queue messages into typed events: AWS's documented SES payloads (tests/data/events),
the SNS envelope around them, our own events, and what is malformed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from newsletter.events.model import EditionChanged, Ignored, InboundMail, MailEvent, SubscribeConfirmed, Unsubscribe
from newsletter.events.parse import MalformedMessage, parse_message

DATA = Path(__file__).parent / "data" / "events"
EXAMPLE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"


def example(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def in_sns_envelope(payload: dict, message_id: str = "sns-1") -> str:
    """The body SQS holds for a message SNS delivered (RawMessageDelivery off)."""
    return json.dumps({
        "Type": "Notification", "MessageId": message_id, "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "Message": json.dumps(payload), "Timestamp": "2017-08-05T00:41:03.000Z", "SignatureVersion": "1",
        "Signature": "x", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem", "UnsubscribeURL": "x",
    })


@pytest.mark.parametrize(
    "name, kind, recipients, detail",
    [
        ("event-bounce.json", "bounce", ("recipient@example.com",), "Permanent General smtp; 550 5.1.1 user unknown"),
        ("event-complaint.json", "complaint", ("recipient@example.com",), "abuse"),
        ("event-delivery.json", "delivery", ("recipient@example.com",), "250 2.6.0 Message received"),
        ("event-send.json", "send", ("recipient@example.com",), None),
        ("event-reject.json", "reject", ("recipient@example.com",), "Bad content"),
        ("event-open.json", "open", ("recipient@example.com",), None),
        ("event-click.json", "click", ("recipient@example.com",),
         "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"),
        ("event-rendering-failure.json", "rendering_failure", ("recipient@example.com",),
         "Attribute 'attributeName' is not present in the rendering data."),
        ("event-delivery-delay.json", "delay", ("recipient@example.com",), "TransientCommunicationFailure"),
    ],
)
def test_documented_event_publishing_records_parse_through_the_sns_envelope(name, kind, recipients, detail):
    event = parse_message(in_sns_envelope(example(name)), "sqs-1")
    assert isinstance(event, MailEvent)
    assert (event.event_id, event.kind, event.recipients, event.detail) == ("sns-1", kind, recipients, detail)
    assert event.message_id == EXAMPLE_ID
    assert event.at.tzinfo is not None


def test_the_bounce_time_is_the_bounce_s_own_not_the_send_s():
    event = parse_message(in_sns_envelope(example("event-bounce.json")), "sqs-1")
    assert event.at == dt.datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=dt.UTC)
    assert event.hard_bounce


def test_older_notifications_name_only_the_bounced_or_complaining_recipients():
    bounce = parse_message(in_sns_envelope(example("notification-bounce.json")), "q")
    complaint = parse_message(in_sns_envelope(example("notification-complaint.json")), "q")
    delivery = parse_message(in_sns_envelope(example("notification-delivery.json")), "q")
    # The mail went to three people; only jane bounced and only richard complained.
    assert (bounce.kind, bounce.recipients, bounce.hard_bounce) == ("bounce", ("jane@example.com",), True)
    assert (complaint.kind, complaint.recipients) == ("complaint", ("richard@example.com",))
    assert (delivery.kind, delivery.recipients) == ("delivery", ("jane@example.com",))
    assert bounce.message_id == "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"


def test_a_transient_bounce_is_not_a_hard_one():
    payload = example("event-bounce.json")
    payload["bounce"]["bounceType"] = "Transient"
    payload["bounce"]["bounceSubType"] = "MailboxFull"
    event = parse_message(in_sns_envelope(payload), "q")
    assert event.kind == "bounce" and not event.hard_bounce and event.bounce_type == "Transient"


def test_raw_message_delivery_uses_the_sqs_id():
    event = parse_message(json.dumps(example("event-complaint.json")), "sqs-7")
    assert (event.kind, event.event_id) == ("complaint", "sqs-7")


def test_inbound_mail_finds_the_token_in_the_subject_and_the_address():
    payload = example("received-sns-action.json")
    payload["mail"]["commonHeaders"]["subject"] = "Re: unsubscribe-YWJjQGV4YW1wbGUuY29t.c2lnbmF0dXJl"
    payload["receipt"]["recipients"] = ["unsubscribe+dev-eHl6QGV4YW1wbGUub3Jn.bWFj@newsletter.example.com"]
    event = parse_message(in_sns_envelope(payload), "q")
    assert isinstance(event, InboundMail)
    assert event.tokens == ("YWJjQGV4YW1wbGUuY29t.c2lnbmF0dXJl", "dev-eHl6QGV4YW1wbGUub3Jn.bWFj")
    assert (event.sender, event.authenticated) == ("sender@example.com", True)


def test_the_documented_inbound_example_has_no_token_and_is_authenticated():
    event = parse_message(in_sns_envelope(example("received-sns-action.json")), "q")
    assert (event.tokens, event.sender, event.subject) == ((), "sender@example.com", "Example subject")


def test_our_own_events_parse_back_from_their_json():
    at = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
    for event in (Unsubscribe("a@example.com", at=at, id="u1"), SubscribeConfirmed("b@example.com", "비", at, id="s1"),
                  SubscribeConfirmed("c@example.com", None, at, id="s2", requested_at=at, edition="ko"),
                  EditionChanged("d@example.com", "en", at=at.replace(microsecond=123456), id="e1")):
        assert parse_message(json.dumps(event.to_dict()), "sqs-x") == event
    # A confirmation queued before editions has none: the reader keeps (or gets) the bilingual one.
    older = {key: value for key, value in SubscribeConfirmed("e@example.com", None, at, id="s3").to_dict().items()
             if key != "edition"}
    assert parse_message(json.dumps(older), "sqs-x").edition is None


def test_setup_notices_and_sns_confirmations_are_ignored_not_malformed():
    notice = {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have successfully subscribed"}
    assert isinstance(parse_message(in_sns_envelope(notice), "q"), Ignored)
    confirmation = json.dumps({"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "t", "Message": "x"})
    assert parse_message(confirmation, "q") == Ignored("m", "SNS SubscriptionConfirmation")


def test_moto_s_simulator_feedback_is_recognised_by_its_detail_object():
    # moto 5.2.5 publishes the Message as an object with notificationType "Bounce, Complaint, or Delivery."
    payload = example("notification-bounce.json")
    payload["notificationType"] = "Bounce, Complaint, or Delivery."
    body = json.dumps({"Type": "Notification", "MessageId": "m1", "Message": payload})
    assert parse_message(body, "q").kind == "bounce"


@pytest.mark.parametrize(
    "body, reason",
    [
        ("not json at all", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": []},
                     "mail": {"messageId": "m", "timestamp": "2017-08-05T00:40:02.012Z"}}), "bouncedRecipients"),
        (json.dumps({"eventType": "Bounce", "bounce": {"bounceType": "Permanent",
                     "bouncedRecipients": [{"emailAddress": "a@b.c\r\nBcc: x@y.z"}]},
                     "mail": {"messageId": "m", "timestamp": "2017-08-05T00:40:02.012Z"}}), "not an address"),
        (json.dumps({"eventType": "Delivery", "delivery": {"recipients": ["a@b.c"]}}), "no 'mail' dict"),
        (json.dumps({"eventType": "Teleport", "mail": {}}), "unknown SES event type"),
        (json.dumps({"type": "unsubscribe", "id": "x", "address": "no-at-sign", "at": "2026-01-01T00:00:00Z"}),
         "not an address"),
        (json.dumps({"type": "unsubscribe", "id": "x", "address": "a@b.c", "at": "yesterday"}), "ISO 8601"),
        (json.dumps({"type": "resubscribe", "id": "x", "address": "a@b.c"}), "unknown event type"),
        (json.dumps({"type": "edition_changed", "id": "x", "address": "a@b.c", "edition": "fr",
                     "at": "2026-01-01T00:00:00Z"}), "edition 'fr' is not one of bilingual, ko, en"),
        (json.dumps({"type": "edition_changed", "id": "x", "address": "a@b.c", "at": "2026-01-01T00:00:00Z"}),
         "edition None"),
        (json.dumps({"type": "edition_changed", "id": "x", "address": "a@b.c", "edition": ["en"],
                     "at": "2026-01-01T00:00:00Z"}), "edition \\['en'\\]"),
        (json.dumps({"type": "subscribe_confirmed", "id": "x", "address": "a@b.c", "edition": "EN",
                     "confirmed_at": "2026-01-01T00:00:00Z"}), "edition 'EN'"),
        (json.dumps({"Type": "Notification", "MessageId": "m", "Message": "{broken"}), "SNS Message is not JSON"),
    ],
)
def test_malformed_messages_say_what_is_wrong(body, reason):
    with pytest.raises(MalformedMessage, match=reason):
        parse_message(body, "q")


def _paths(node, path=()):
    """Every place in a JSON value: dict keys and list items, depth first."""
    yield path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*path, key))


def _replaced(node, path, value):
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replaced(node[path[0]], path[1:], value)
    return copy


# What a hostile or broken sender might put anywhere: every other JSON type, a year-1 time, a
# control character, a lone surrogate, an empty string.
STRANGE_VALUES = [None, True, 7, 1e308, "", "0001-01-01T00:00:00+09:00", "x\x00\x1b@example.com", "\udcff",
                  ["x@example.com"], [{}], {"a": []}]


def test_any_value_anywhere_in_a_documented_payload_is_an_event_or_malformed_and_applies_or_is_malformed(tmp_path):
    """Every place of every documented example, in and out of the SNS envelope, replaced by each
    strange value: parsing gives an event or MalformedMessage, never another exception, and
    applying the event to a real store raises nothing else either."""
    from newsletter.config import EventSettings
    from newsletter.events.apply import Applier, apply_once
    from newsletter.store import Store

    bodies = []
    for name in sorted(p.name for p in DATA.glob("*.json") if not p.name.startswith("lambda")):
        payload = example(name)
        envelope = json.loads(in_sns_envelope(payload))
        for path in _paths(payload):
            bodies += [json.dumps(_replaced(payload, path, value)) for value in STRANGE_VALUES]
        for path in _paths(envelope):
            bodies += [json.dumps(_replaced(envelope, path, value)) for value in STRANGE_VALUES]
    read = malformed = 0
    with Store.open(tmp_path / "list.db") as store:
        applier = Applier(store, EventSettings())
        for n, body in enumerate(bodies):
            try:
                event = parse_message(body, f"sqs-{n}")
            except MalformedMessage:
                malformed += 1
                continue
            try:
                apply_once(store, applier, event)
                read += 1
            except MalformedMessage:
                malformed += 1
    assert read + malformed == len(bodies) > 5000 and read and malformed
