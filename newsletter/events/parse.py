"""One SQS message body -> one typed event, or `MalformedMessage` saying what is wrong.

The shapes, as AWS documents them (examples in tests/data/events/):
- The SNS envelope: {"Type": "Notification", "MessageId", "TopicArn", "Message": "<JSON string>",
  ...}; with RawMessageDelivery on, the body is the inner message itself.
- SES event publishing (a configuration set's event destination): {"eventType": "Bounce" | ...,
  "mail": {...}, "bounce": {...}}; the older identity notifications say "notificationType".
- SES receiving (a receipt rule's SNS action): {"notificationType": "Received", "receipt",
  "mail": {"commonHeaders": {"from", "subject"}}, "content"}.
- Our own events (`model.Unsubscribe`, `model.SubscribeConfirmed`, `model.EditionChanged`):
  {"type": ..., "id": ...}.

A message's identity, for applying it once: the SNS MessageId (SNS keeps it when it retries), our
own event's id, or else the SQS MessageId.

Whatever the body holds (a list where text belongs, text where an object belongs, a year-1 time,
nesting thousands deep, lone surrogates), the answer is an event or `MalformedMessage`: one bad
message must never stop a sync, nor the sync every send runs first.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from email.utils import parseaddr
from typing import Any

from ..model import EDITIONS
from ..subscribers import clean_name
from .model import EditionChanged, Event, Ignored, InboundMail, MailEvent, SubscribeConfirmed, Unsubscribe


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
# Control characters (C0, DEL, C1) and lone surrogates, which SQLite cannot store as UTF-8.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What SES nearly always writes: an address alone (email.utils.parseaddr costs 0.1-0.2 ms).
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\],;:\\\"@]+@[^\s<>()\[\],;:\\\"@]+")
# SES began in 2011: an earlier time is a broken clock or a forged message, and year 1 is where
# date arithmetic overflows. (A time in the future is clamped when applied, see apply.py.)
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# A provider's correction of a spam report (SES's complaintFeedbackType values: abuse,
# auth-failure, fraud, not-spam, other, virus).
_NOT_SPAM = "not-spam"


def parse_message(body: str, sqs_id: str) -> Event:
    try:
        return _parse_message(body, sqs_id)
    except MalformedMessage:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as error:
        # A shape no check above foresaw: still one message left for the dead-letter queue.
        raise MalformedMessage(f"cannot be read ({type(error).__name__}: {_one_line(str(error))})") from None


def _parse_message(body: str, sqs_id: str) -> Event:
    data = _json_object(body, "the message")
    if _name(data.get("Type")) in _SNS_TYPES and "MessageId" in data:
        event_id = _identifier(data, "MessageId", "SNS envelope")
        if data["Type"] != "Notification":
            return Ignored(event_id, f"SNS {data['Type']}")
        message = data.get("Message")
        # moto's SES simulator publishes the Message as an object, not as a JSON string.
        if not isinstance(message, dict):
            message = _json_object(message, "SNS Message") if isinstance(message, str) else None
        if message is None:
            raise MalformedMessage("SNS envelope: no Message")
        return parse_payload(message, event_id)
    return parse_payload(data, sqs_id)


def _json_object(text: str, what: str) -> dict:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise MalformedMessage(f"{what} is not JSON ({_one_line(str(error))})") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"{what} is not a JSON object")
    return data


def _name(value: Any) -> str | None:
    """A type name as given, or None when it is not text (a list where a name belongs)."""
    return value if isinstance(value, str) else None


def parse_payload(payload: dict[str, Any], event_id: str) -> Event:
    if "type" in payload:
        return _own_event(payload)
    name = _name(payload.get("eventType")) or _name(payload.get("notificationType"))
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
            raise MalformedMessage(f"unknown SES event type {_one_line(repr(name or payload.get('eventType')))}")
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
        bounced = _objects(detail, "bouncedRecipients", "bounce")
        recipients = _addresses([r.get("emailAddress") for r in bounced])
        codes = "; ".join(_one_line(r.get("diagnosticCode")) or _one_line(r.get("status")) or "" for r in bounced)
        note = " ".join(part for part in (bounce_type, _one_line(detail.get("bounceSubType")), codes) if part)
    elif kind == "complaint":
        recipients = _addresses([r.get("emailAddress") for r in _objects(detail, "complainedRecipients", "complaint")])
        note = _one_line(detail.get("complaintFeedbackType")) or _one_line(detail.get("complaintSubType"))
        if note == _NOT_SPAM:
            kind = "not_spam"
    elif kind == "delivery":
        recipients = _addresses(_list(detail, "recipients", "delivery"))
        note = detail.get("smtpResponse")
    elif kind == "delay":
        recipients = _addresses([r.get("emailAddress") for r in _objects(detail, "delayedRecipients", "deliveryDelay")])
        note = detail.get("delayType")
    else:
        recipients = _addresses(_list(mail, "destination", "mail"))
        note = {"reject": detail.get("reason"), "rendering_failure": detail.get("errorMessage"),
                "click": detail.get("link")}.get(kind)
    message_id = mail.get("messageId")
    return MailEvent(
        event_id=event_id,
        kind=kind,
        message_id=message_id if isinstance(message_id, str) and message_id and message_id.isprintable() else None,
        at=_time(detail.get("timestamp") or mail.get("timestamp")),
        recipients=recipients,
        bounce_type=_one_line(bounce_type),
        detail=_one_line(note),
    )


def _inbound(payload: dict[str, Any], event_id: str) -> InboundMail:
    receipt = _object(payload, "receipt", "Received notification")
    mail = _object(payload, "mail", "Received notification")
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    subject = headers.get("subject") if isinstance(headers.get("subject"), str) else ""
    senders = _strings(headers.get("from"))
    sender = parseaddr(senders[0])[1] if senders else ""
    sender = sender if "@" in sender and not _CONTROL.search(sender) else None
    places = [subject, *_strings(receipt.get("recipients"))]
    tokens = tuple(dict.fromkeys(match.group(1) for place in places for match in _TOKEN.finditer(place)))
    proven, verdicts = _from_domain_proven(receipt, mail, sender)
    return InboundMail(
        event_id=event_id,
        at=_time(receipt.get("timestamp") or mail.get("timestamp")),
        sender=sender,
        tokens=tokens,
        authenticated=proven,
        subject=_one_line(subject) or "",
        verdicts=verdicts,
    )


def _verdict(receipt: dict, name: str) -> str | None:
    verdict = receipt.get(name)
    return _one_line(verdict.get("status")) if isinstance(verdict, dict) else None


def _domain(address: Any) -> str:
    return parseaddr(address)[1].rpartition("@")[2].lower().rstrip(".") if isinstance(address, str) else ""


def _aligned(domain: str, from_domain: str) -> bool:
    """The same domain, or one inside the other (DMARC's relaxed alignment, without the public
    suffix list: a sibling subdomain is not counted, which only ever refuses)."""
    if "." not in domain or "." not in from_domain:
        return False
    return domain == from_domain or domain.endswith("." + from_domain) or from_domain.endswith("." + domain)


def _from_domain_proven(receipt: dict, mail: dict, sender: str | None) -> tuple[bool, str]:
    """Whether SES's verdicts prove the From address's domain (DMARC pass, or SPF pass for the
    envelope sender's domain or DKIM pass with every signature's d= aligned with From), and the
    verdicts as one line. A bare SPF or DKIM pass proves only that some domain sent it."""
    spf, dkim, dmarc = (_verdict(receipt, name) for name in ("spfVerdict", "dkimVerdict", "dmarcVerdict"))
    said = ", ".join(f"{label} {value}" for label, value in (("SPF", spf), ("DKIM", dkim), ("DMARC", dmarc)) if value)
    if sender is None:
        return False, said
    from_domain = _domain(sender)
    if dmarc == "PASS":
        return True, said
    if spf == "PASS" and _aligned(_domain(mail.get("source")), from_domain):
        return True, said
    signers = [match.group(1).lower() for header in _objects_in(mail.get("headers"))
               if isinstance(header.get("name"), str) and header["name"].lower() == "dkim-signature"
               for match in [re.search(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", str(header.get("value")))] if match]
    dkim_aligned = bool(signers) and all(_aligned(signer, from_domain) for signer in signers)
    return dkim == "PASS" and dkim_aligned and mail.get("headersTruncated") is False, said


def _own_event(payload: dict[str, Any]) -> Unsubscribe | SubscribeConfirmed | EditionChanged:
    kind = payload["type"]
    event_id = _identifier(payload, "id", f"{_name(kind)} event")
    address = _addresses([payload.get("address")])[0]
    if kind == "unsubscribe":
        reason = payload.get("reason")
        return Unsubscribe(address, _one_line(reason) if isinstance(reason, str) else "unsubscribe endpoint",
                           _time(payload.get("at")), event_id)
    if kind == "subscribe_confirmed":
        name = payload.get("name")
        if name is not None and not isinstance(name, str):
            raise MalformedMessage("subscribe_confirmed: name is not text")
        requested = payload.get("requested_at")
        edition = payload.get("edition")
        return SubscribeConfirmed(address, clean_name(name[:200])[0] if name else None,
                                  _time(payload.get("confirmed_at")), event_id,
                                  requested_at=_time(requested) if requested is not None else None,
                                  edition=_edition(edition, kind) if edition is not None else None)
    if kind == "edition_changed":
        return EditionChanged(address, _edition(payload.get("edition"), kind), _time(payload.get("at")), event_id)
    raise MalformedMessage(f"unknown event type {_one_line(repr(kind))}")


def _edition(value: Any, kind: str) -> str:
    if value not in EDITIONS:  # a list or a number is not in it either
        raise MalformedMessage(f"{kind}: edition {_one_line(repr(value))} is not one of {', '.join(EDITIONS)}")
    return value


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


def _objects(data: dict, key: str, where: str) -> list[dict]:
    """A non-empty list of objects (SES's recipients lists), or MalformedMessage."""
    value = _required(data, key, list, where)
    if not all(isinstance(item, dict) for item in value):
        raise MalformedMessage(f"{where}: {key!r} holds something other than objects")
    return value


def _objects_in(value: Any) -> list[dict]:
    """The objects of an optional list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    """The strings of an optional list (anything else: none)."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _text(data: dict, key: str, where: str) -> str:
    return _required(data, key, str, where)


def _identifier(data: dict, key: str, where: str) -> str:
    """An id the store can keep: text without control characters or lone surrogates."""
    value = _text(data, key, where)
    if _CONTROL.search(value) or len(value) > 256:
        raise MalformedMessage(f"{where}: {key!r} is not an id: {_one_line(repr(value))}")
    return value


def _addresses(values: list) -> tuple[str, ...]:
    """Bare addresses from SES's values ("a@example.com" or "Name <a@example.com>")."""
    found = []
    for value in values:
        if not isinstance(value, str) or _CONTROL.search(value):
            raise MalformedMessage(f"not an address: {_one_line(repr(value))}")
        address = value if _BARE_ADDRESS.fullmatch(value) else parseaddr(value)[1] or value
        if "@" not in address or _CONTROL.search(address) or len(address) > 320:
            raise MalformedMessage(f"not an address: {_one_line(repr(value))}")
        found.append(address)
    if not found:
        raise MalformedMessage("no address")
    return tuple(found)


def _time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise MalformedMessage(f"no time stamp (got {_one_line(repr(value))})")
    try:
        # moto writes "2018-10-08T14:05:45 +0000"; SES writes "2017-08-05T00:41:02.669Z".
        moment = dt.datetime.fromisoformat(value.replace(" +", "+").replace(" -", "-"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise MalformedMessage(f"not an ISO 8601 time: {_one_line(repr(value))}") from None
    if moment < _EARLIEST:
        raise MalformedMessage(f"time stamp {moment.isoformat()} is before {_EARLIEST.year}: not a real event time")
    return moment


def _one_line(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return " ".join(_CONTROL.sub(" ", value[:2000]).split())[:500] or None
