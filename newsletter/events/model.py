"""What `newsletter sync` reads off the queue, as plain frozen dataclasses (no I/O).

Two families: what SES says about mail it sent or received (`MailEvent`, `InboundMail`), and
the events this program puts on the queue itself (`Unsubscribe` from the endpoint,
`SubscribeConfirmed` from the subscribe form, `EditionChanged` from the preferences page), whose
JSON is documented in docs/deploy.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

# What SES reports about a message it sent, by our name for it.
# A complaint report whose feedback type is `not-spam` is a provider's correction, not a complaint.
MAIL_EVENT_KINDS = (
    "send", "delivery", "delay", "reject", "rendering_failure", "bounce", "complaint", "not_spam", "open", "click",
)


def _new_id() -> str:
    return uuid.uuid4().hex


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _precise_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class MailEvent:
    """One SES event about one sent message (event publishing's `eventType` or the older
    notifications' `notificationType`). A single event may name several recipients."""

    event_id: str  # the SNS MessageId (or the SQS one when SNS's envelope is not there)
    kind: str  # one of MAIL_EVENT_KINDS
    message_id: str | None  # SES's MessageId: the send ledger's `message_id`
    at: dt.datetime  # when it happened (the event's own timestamp), UTC
    recipients: tuple[str, ...]  # the addresses it is about
    bounce_type: str | None = None  # Permanent | Transient | Undetermined (bounces only)
    detail: str | None = None  # diagnostic code, reject reason, complaint type, clicked link, ...

    @property
    def hard_bounce(self) -> bool:
        """Never mail again: SES says the address does not exist or cannot ever receive."""
        return self.kind == "bounce" and self.bounce_type == "Permanent"


@dataclass(frozen=True)
class InboundMail:
    """Mail that SES received for the unsubscribe address (a receipt rule's SNS action)."""

    event_id: str
    at: dt.datetime
    sender: str | None  # the From address
    tokens: tuple[str, ...]  # unsubscribe tokens found in the subject and the recipient addresses
    # The From address's domain is proven: SES's DMARC verdict passed, or SPF or DKIM passed for
    # that same domain. A bare SPF or DKIM pass proves only some domain, not the From's.
    authenticated: bool
    subject: str = ""
    verdicts: str = ""  # SES's verdicts as received (for the note when the sender is not proven)


@dataclass(frozen=True)
class Ignored:
    """A message that is well formed but asks for nothing (SNS's subscription confirmation, SES's
    "topic subscribed" notice, a contact-list Subscription event)."""

    event_id: str
    reason: str


class _OwnEvent:
    """Our own events: identified by `id` (a retried put applies once), JSON from their fields."""

    type: ClassVar[str]
    id: str

    @property
    def event_id(self) -> str:
        return self.id

    def to_dict(self) -> dict:
        data: dict = {"type": self.type}
        for name in (f.name for f in dataclasses.fields(self)):
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return data


@dataclass(frozen=True)
class Unsubscribe(_OwnEvent):
    """Someone left through the unsubscribe endpoint, wherever it runs.

    JSON: {"type": "unsubscribe", "id": ..., "address": ..., "reason": ..., "at": ISO 8601}
    """

    address: str
    reason: str = "one-click (List-Unsubscribe-Post)"
    at: dt.datetime = field(default_factory=_utc_now)
    id: str = field(default_factory=_new_id)

    type: ClassVar[str] = "unsubscribe"


@dataclass(frozen=True)
class SubscribeConfirmed(_OwnEvent):
    """Someone confirmed a subscription (double opt-in) on the subscribe form.

    JSON: {"type": "subscribe_confirmed", "id": ..., "address": ..., "name": ... or null,
           "confirmed_at": ISO 8601, "requested_at": ISO 8601 (when the link was issued) or null}

    It is ordered against unsubscribes by `requested_at`: a link issued before the reader left
    cannot bring them back, however late (within its lifetime) it is posted again.
    """

    address: str
    name: str | None = None
    confirmed_at: dt.datetime = field(default_factory=_utc_now)
    id: str = field(default_factory=_new_id)
    requested_at: dt.datetime | None = None  # None (events queued before it was sent): confirmed_at
    # The edition chosen on the form, carried by the confirmation link; None (events queued
    # before editions, or a link mailed before them): a new reader gets the bilingual one and a
    # reader on the list keeps theirs. A choice like `EditionChanged`'s, made when the link was
    # issued (`at`).
    edition: str | None = None

    type: ClassVar[str] = "subscribe_confirmed"

    @property
    def at(self) -> dt.datetime:
        return min(self.requested_at or self.confirmed_at, self.confirmed_at)


@dataclass(frozen=True)
class EditionChanged(_OwnEvent):
    """A reader chose their edition on the preferences page.

    JSON: {"type": "edition_changed", "id": ..., "address": ..., "edition": "bilingual" | "ko" |
           "en", "at": ISO 8601, microseconds kept}

    An edition is not a status: it is ordered against the reader's other edition choices by `at`
    (the latest choice stands, whatever order they arrive in), never against unsubscribes or
    confirmations, which it neither undoes nor is undone by.
    """

    address: str
    edition: str
    # Microseconds kept: two clicks in the same second are still two moments.
    at: dt.datetime = field(default_factory=_precise_now)
    id: str = field(default_factory=_new_id)

    type: ClassVar[str] = "edition_changed"


OwnEvent = Unsubscribe | SubscribeConfirmed | EditionChanged
Event = MailEvent | InboundMail | Ignored | Unsubscribe | SubscribeConfirmed | EditionChanged
