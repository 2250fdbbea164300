"""One SQS message body -> one typed event, or `MalformedMessage` saying what is wrong.

The shapes, as AWS documents them (examples in tests/data/events/):
- The SNS envelope: {"Type": "Notification", "MessageId", "TopicArn", "Message": "<JSON string>",
  ...}; with RawMessageDelivery on, the body is the inner message itself.
- SES event publishing (a configuration set's event destination): {"eventType": "Bounce" | ...,
  "mail": {...}, "bounce": {...}}; the older identity notifications say "notificationType".
- SES receiving (a receipt rule's SNS action): {"notificationType": "Received", "receipt",
  "mail": {"commonHeaders": {"from", "subject"}}, "content"}.
- Our own events (`model.Unsubscribe`, `model.SubscribeConfirmed`): {"type": ..., "id": ...}.

A message's identity, for applying it once: the SNS MessageId (SNS keeps it when it retries), our
own event's id, or else the SQS MessageId.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from email.utils import parseaddr
from typing import Any

from .model import Event, Ignored, InboundMail, MailEvent, SubscribeConfirmed, Unsubscribe


class MalformedMessage(ValueError):
    """The message is not one this program can apply (it is left for the dead-letter queue)."""


# SES's event type names (both spellings of Rendering Failure occur in AWS's documents) -> ours,
# and the object that carries each one's details.
_SES_KINDS = {
    "Send": "send", "Delivery": "delivery", "DeliveryDelay": "delay", "Reject": "reject",
    "Rendering Failure": "rendering_failure", "RenderingFailure": "rendering_failure",
    "Bounce": "bounce", "Complaint": "complaint", "Open": "open", "Click": "click",
}
_DETAIL_OBJECT = {
    "send": "send", "delivery": "delivery", "delay": "deliveryDelay", "reject": "reject",
    "rendering_failure": "failure", "bounce": "bounce", "complaint": "complaint", "open": "open", "click": "click",
}
# Well-formed messages that ask for nothing: SES's notice that a topic was subscribed, SES
# contact-list subscription events, SNS's own subscription messages.
_NOTHING_TO_DO = {"AmazonSnsSubscriptionSucceeded", "Subscription"}
_SNS_TYPES = {"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"}
# An unsubscribe token (see `unsubscribe.TokenSigner`) after "unsubscribe-" in a subject (the
# List-Unsubscribe mailto's ?subject=) or "unsubscribe+" in an address.
# Opaque tokens are base64url; older ones, `ADDRESS.MAC`, have a dot.
_TOKEN = re.compile(r"unsubscribe[-+]((?:dev-)?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_message(body: str, sqs_id: str) -> Event:
    data = _json_object(body, "the message")
    if data.get("Type") in _SNS_TYPES and "MessageId" in data:
        event_id = _text(data, "MessageId", "SNS envelope")
        if data["Type"] != "Notification":
            return Ignored(event_id, f"SNS {data['Type']}")
        message = data.get("Message")
        # moto's SES simulator publishes the Message as an object, not as a JSON string.
        if not isinstance(message, dict):
            message = _json_object(message, "SNS Message") if isinstance(message, str) else None
        if message is None:
            raise MalformedMessage("SNS envelope: no Message")
        return parse_payload(message, event_id)
    return parse_payload(data, data["id"] if isinstance(data.get("id"), str) and "type" in data else sqs_id)


def _json_object(text: str, what: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise MalformedMessage(f"{what} is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"{what} is not a JSON object")
    return data


def parse_payload(payload: dict[str, Any], event_id: str) -> Event:
    if "type" in payload:
        return _own_event(payload)
    name = payload.get("eventType") or payload.get("notificationType")
    if name == "Received":
        return _inbound(payload, event_id)
    if name in _NOTHING_TO_DO:
        return Ignored(event_id, f"SES {name}")
    kind = _SES_KINDS.get(name)
    if kind is None:
        # moto's simulator feedback leaves notificationType as "Bounce, Complaint, or Delivery.":
        # the one detail object present says which it is.
        present = [k for k in ("bounce", "complaint", "delivery") if isinstance(payload.get(k), dict)]
        if len(present) != 1:
            raise MalformedMessage(f"unknown SES event type {name!r}")
        kind = present[0]
    return _mail_event(payload, kind, event_id)


def _mail_event(payload: dict[str, Any], kind: str, event_id: str) -> MailEvent:
    mail = _object(payload, "mail", "SES event")
    detail = payload.get(_DETAIL_OBJECT[kind]) or {}
    if not isinstance(detail, dict):
        raise MalformedMessage(f"{_DETAIL_OBJECT[kind]} is not an object")
    bounce_type = None
    if kind == "bounce":
        bounce_type = _text(detail, "bounceType", "bounce")
        recipients = _addresses([r.get("emailAddress") for r in _list(detail, "bouncedRecipients", "bounce")])
        note = "; ".join(str(r.get("diagnosticCode") or r.get("status") or "") for r in detail["bouncedRecipients"])
        note = " ".join(part for part in (bounce_type, detail.get("bounceSubType"), note) if part)
    elif kind == "complaint":
        recipients = _addresses([r.get("emailAddress") for r in _list(detail, "complainedRecipients", "complaint")])
        note = detail.get("complaintFeedbackType") or detail.get("complaintSubType")
    elif kind == "delivery":
        recipients = _addresses(_list(detail, "recipients", "delivery"))
        note = detail.get("smtpResponse")
    elif kind == "delay":
        recipients = _addresses([r.get("emailAddress") for r in _list(detail, "delayedRecipients", "deliveryDelay")])
        note = detail.get("delayType")
    else:
        recipients = _addresses(_list(mail, "destination", "mail"))
        note = {"reject": detail.get("reason"), "rendering_failure": detail.get("errorMessage"),
                "click": detail.get("link")}.get(kind)
    message_id = mail.get("messageId")
    return MailEvent(
        event_id=event_id,
        kind=kind,
        message_id=message_id if isinstance(message_id, str) and message_id else None,
        at=_time(detail.get("timestamp") or mail.get("timestamp")),
        recipients=recipients,
        bounce_type=bounce_type,
        detail=_one_line(note),
    )


def _inbound(payload: dict[str, Any], event_id: str) -> InboundMail:
    receipt = _object(payload, "receipt", "Received notification")
    mail = _object(payload, "mail", "Received notification")
    headers = mail.get("commonHeaders") or {}
    subject = headers.get("subject") if isinstance(headers.get("subject"), str) else ""
    senders = headers.get("from") if isinstance(headers.get("from"), list) else []
    sender = parseaddr(senders[0])[1] if senders and isinstance(senders[0], str) else ""
    places = [subject, *(r for r in receipt.get("recipients") or [] if isinstance(r, str))]
    tokens = tuple(dict.fromkeys(match.group(1) for place in places for match in _TOKEN.finditer(place)))
    verdicts = [receipt.get(name) or {} for name in ("spfVerdict", "dkimVerdict")]
    return InboundMail(
        event_id=event_id,
        at=_time(receipt.get("timestamp") or mail.get("timestamp")),
        sender=sender if "@" in sender and not _CONTROL.search(sender) else None,
        tokens=tokens,
        authenticated=any(isinstance(v, dict) and v.get("status") == "PASS" for v in verdicts),
        subject=_one_line(subject) or "",
    )


def _own_event(payload: dict[str, Any]) -> Unsubscribe | SubscribeConfirmed:
    kind = payload["type"]
    event_id = _text(payload, "id", f"{kind} event")
    address = _addresses([payload.get("address")])[0]
    if kind == "unsubscribe":
        reason = payload.get("reason")
        return Unsubscribe(address, _one_line(reason) if isinstance(reason, str) else "unsubscribe endpoint",
                           _time(payload.get("at")), event_id)
    if kind == "subscribe_confirmed":
        name = payload.get("name")
        if name is not None and not isinstance(name, str):
            raise MalformedMessage("subscribe_confirmed: name is not text")
        return SubscribeConfirmed(address, " ".join(name.split()) or None if name else None,
                                  _time(payload.get("confirmed_at")), event_id)
    raise MalformedMessage(f"unknown event type {kind!r}")


def _required(data: dict, key: str, kind: type, where: str):
    """data[key], a non-empty `kind`, or MalformedMessage saying which is missing where."""
    value = data.get(key)
    if not isinstance(value, kind) or not value:
        raise MalformedMessage(f"{where}: no {key!r} {kind.__name__}")
    return value


def _object(data: dict, key: str, where: str) -> dict:
    return _required(data, key, dict, where)


def _list(data: dict, key: str, where: str) -> list:
    value = _required(data, key, list, where)
    if not all(isinstance(item, (dict, str)) for item in value):
        raise MalformedMessage(f"{where}: {key!r} holds something else")
    return value


def _text(data: dict, key: str, where: str) -> str:
    return _required(data, key, str, where)


def _addresses(values: list) -> tuple[str, ...]:
    """Bare addresses from SES's values ("a@example.com" or "Name <a@example.com>")."""
    found = []
    for value in values:
        if not isinstance(value, str) or _CONTROL.search(value):
            raise MalformedMessage(f"not an address: {value!r}")
        address = parseaddr(value)[1] or value
        if "@" not in address or _CONTROL.search(address) or len(address) > 320:
            raise MalformedMessage(f"not an address: {value!r}")
        found.append(address)
    if not found:
        raise MalformedMessage("no address")
    return tuple(found)


def _time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise MalformedMessage(f"no time stamp (got {value!r})")
    try:
        # moto writes "2018-10-08T14:05:45 +0000"; SES writes "2017-08-05T00:41:02.669Z".
        moment = dt.datetime.fromisoformat(value.replace(" +", "+").replace(" -", "-"))
    except ValueError:
        raise MalformedMessage(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _one_line(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return " ".join(_CONTROL.sub(" ", value).split())[:500] or None
