"""What each event does to the list and the send ledger, through the store. The caller (`sync`)
wraps each message in one transaction, with the record that it was applied.

- Permanent bounce -> the address is `bounced`; transient -> counted, and `bounced` once
  `transient_bounce_limit` of them fall within `transient_bounce_window_days`.
- Complaint -> `complained`. Unsubscribe (endpoint, or mail carrying a genuine token) ->
  `unsubscribed`. A confirmed subscription -> `subscribed`.
- Every SES report about a sent message is recorded on its ledger row (found by SES MessageId).

A status only ever moves toward "never mail again" (subscribed < unsubscribed < bounced <
complained), except for a confirmed subscription; and an event older than a subscriber's last
change (they re-joined after it) does not undo that change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..config import EventSettings
from ..errors import StoreError
from ..model import Subscriber
from ..store import Store, address_key, utc_now
from ..store import events as event_table
from ..subscribers import checked_address
from ..unsubscribe import TokenSigner
from .model import Event, Ignored, InboundMail, MailEvent, SubscribeConfirmed, Unsubscribe
from .parse import MalformedMessage

_STRENGTH = {"subscribed": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}


@dataclass(frozen=True)
class Change:
    address: str
    before: str | None  # None: the address was not on the list
    after: str


@dataclass(frozen=True)
class Outcome:
    kind: str  # what the summary counts it as: bounce, soft_bounce, delivery, unsubscribe_mail, ...
    changes: tuple[Change, ...] = ()
    matched: bool = True  # an SES report whose message is in the ledger (False: sent elsewhere)
    note: str | None = None  # why nothing was done (an ignored message)


class Applier:
    def __init__(self, store: Store, settings: EventSettings, signer: TokenSigner | None = None):
        self.store = store
        self.settings = settings
        self.signer = signer  # None: inbound mail is matched by its authenticated sender only

    def apply(self, event: Event) -> Outcome:
        if isinstance(event, MailEvent):
            return self._mail_event(event)
        if isinstance(event, Unsubscribe):
            change = self._move(event.address, "unsubscribed", event.reason, event.at, record_unknown=True)
            return Outcome("unsubscribe", _changes(change))
        if isinstance(event, InboundMail):
            return self._inbound(event)
        if isinstance(event, SubscribeConfirmed):
            return Outcome("subscribe_confirmed", _changes(self._confirm(event)))
        if isinstance(event, Ignored):
            return Outcome("ignored", note=event.reason)
        raise TypeError(f"not an event: {event!r}")

    def _mail_event(self, event: MailEvent) -> Outcome:
        kind = "soft_bounce" if event.kind == "bounce" and not event.hard_bounce else event.kind
        connection = self.store.connection
        row = event_table.ledger_row(connection, event.message_id) if event.message_id else None
        if row is not None:
            event_table.record_report(connection, row, kind, event.detail, event.at)
        changes: list[Change | None] = []
        for address in event.recipients:
            if kind == "bounce":
                changes.append(self._move(address, "bounced", f"bounce: {event.detail or 'permanent'}", event.at,
                                          record_unknown=True))
            elif kind == "complaint":
                changes.append(self._move(address, "complained", f"complaint: {event.detail or 'reported as spam'}",
                                          event.at, record_unknown=True))
            elif kind == "soft_bounce":
                changes.append(self._count_transient(address, event))
        return Outcome(kind, _changes(*changes), matched=row is not None)

    def _count_transient(self, address: str, event: MailEvent) -> Change | None:
        window = dt.timedelta(days=self.settings.transient_bounce_window_days)
        count = event_table.count_transient_bounce(self.store.connection, address_key(address), event.at, window)
        if count < self.settings.transient_bounce_limit:
            return None
        reason = f"{count} transient bounces within {self.settings.transient_bounce_window_days} days"
        return self._move(address, "bounced", reason, event.at, record_unknown=False)

    def _inbound(self, event: InboundMail) -> Outcome:
        verified = [a for a in (self.signer.address(t) for t in event.tokens) if a] if self.signer else []
        if verified:
            changes = [self._move(a, "unsubscribed", "unsubscribe mail (token)", event.at, record_unknown=True)
                       for a in dict.fromkeys(verified)]
            return Outcome("unsubscribe_mail", _changes(*changes))
        if event.sender and event.authenticated and self.store.get(event.sender) is not None:
            change = self._move(event.sender, "unsubscribed", "unsubscribe mail (from the address)", event.at,
                                record_unknown=False)
            return Outcome("unsubscribe_mail", _changes(change))
        why = "no genuine token" if event.tokens else "no token"
        return Outcome("ignored", note=f"unsubscribe mail from {event.sender or 'an unknown sender'}: {why}, and "
                                       "the sender is not an authenticated subscriber")

    def _move(self, address: str, status: str, reason: str, at: dt.datetime, *, record_unknown: bool) -> Change | None:
        """Give `address` the stronger `status`, unless the event is older than their re-joining."""
        current = self.store.get(address)
        if current is None:
            if not record_unknown:
                return None
            # Recorded so that no later import subscribes an address that bounced or left.
            self.store.set_status(address, status, reason, record_unknown=True)
            return Change(address, None, status)
        if _STRENGTH[status] <= _STRENGTH[current.status]:
            return None
        if current.status == "subscribed" and current.changed_at and current.changed_at > at:
            return None
        self.store.set_status(address, status, reason)
        return Change(current.address, current.status, status)

    def _confirm(self, event: SubscribeConfirmed) -> Change | None:
        try:
            address, _ = checked_address(event.address)
        except StoreError as error:
            raise MalformedMessage(str(error)) from None
        current = self.store.get(address)
        now = utc_now()
        if current is None:
            # Source "web", joined when they confirmed (the consent on record), not when sync ran.
            self.store.insert([Subscriber(address, event.name, "subscribed", "web", event.confirmed_at, now,
                                          "confirmed on the subscribe form")])
            return Change(address, None, "subscribed")
        # A form never re-adds an address that bounced or complained; an unsubscribed one comes
        # back only through a confirmation made after it left.
        if current.status in ("subscribed", "bounced", "complained") or (
            current.changed_at and current.changed_at >= event.confirmed_at
        ):
            return None
        self.store.update([Subscriber(current.address, event.name or current.name, "subscribed", current.source,
                                      current.joined_at, now, "confirmed on the subscribe form")])
        return Change(current.address, current.status, "subscribed")


def _changes(*changes: Change | None) -> tuple[Change, ...]:
    return tuple(change for change in changes if change is not None)


def apply_once(store: Store, applier: Applier, event: Event) -> Outcome | None:
    """Apply `event` in one transaction and record its id; None if that id was applied before
    (a queued copy of an event the web app already applied, or SNS delivering twice)."""
    with store.transaction():
        if event_table.is_applied(store.connection, event.event_id):
            return None
        outcome = applier.apply(event)
        event_table.mark_applied(store.connection, event.event_id, outcome.kind, dt.datetime.now(dt.UTC))
    return outcome
