"""What each event does to the list and the send ledger, through the store. The caller (`sync`)
wraps each message in one transaction, with the record that it was applied.

- Permanent bounce -> the address is `bounced`; transient -> counted, and `bounced` once
  `transient_bounce_limit` of them fall within `transient_bounce_window_days`.
- Complaint -> `complained` (a `not-spam` report is a provider's correction: recorded, no change).
  Unsubscribe (endpoint, or mail carrying a genuine token, or mail from a subscriber whose From
  domain is proven) -> `unsubscribed`. A confirmed subscription -> `subscribed`.
- Every SES report about a sent message is recorded on its ledger row (found by SES MessageId).

The order of events (docs/deploy.md says the same for editors). The list ends the same whatever
order the events arrive and are applied in, as if each had been applied at its own time, so that
concurrent receivers, a later sync or a redelivery cannot change the outcome:

- A status change is ordered by the event's own time, kept as the subscriber's `status_at`
  (never by when sync ran, and never by other edits such as a new name).
- Among opt-outs (unsubscribed < bounced < complained) the stronger stays, whatever their times:
  each one means "do not mail".
- A re-join shields only from events older than it. A confirmed subscription, dated by when its
  link was issued, ends an unsubscribe older than it, and an unsubscribe newer than it ends the
  subscription; it never lifts a bounce or a complaint. An editor's explicit resubscribe
  (`--resubscribe`) is a floor: every event older than it is ignored.
- Equal times: the opt-out wins.
- A time in the future (a wrong clock) counts as the moment it is applied: it cannot shield a
  reader from, or outlast, what really comes after it.
- Transient bounces are counted by their own times over the window, whatever the apply order.

Editions are not statuses, and are ordered on their own (`edition_wins`): each reader's latest
choice stands, by when it was made (the preferences page's `EditionChanged`, the form's choice
carried by a confirmation, dated by its link, or an editor's edit), kept as `edition_at`; an
earlier choice that arrives later changes nothing. Equal times (two choices in the same
microsecond) go to the edition that shows more: bilingual, then ko, then en. A future time counts
as now. An unsubscribe or a confirmation never changes the edition (beyond the confirmation's own
choice), and a choice never changes the status, so the two kinds commute: any order of both ends
as time order gives.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import addresses
from ..config import EventSettings
from ..errors import AwsError, StoreError
from ..model import EDITIONS, STATUS_STRENGTH, Subscriber
from ..store import Store, address_key
from ..store import events as event_table
from ..subscribers import checked_address, clean_name
from ..unsubscribe import TokenSigner
from .model import EditionChanged, Event, Ignored, InboundMail, MailEvent, OwnEvent, SubscribeConfirmed, Unsubscribe
from .parse import MalformedMessage

if TYPE_CHECKING:
    from .queue import EventQueue

log = logging.getLogger("newsletter.events")

# Lifted only by an editor's explicit resubscribe; a confirmation shields from unsubscribes only.
_ONLY_THE_EDITOR_LIFTS = ("bounced", "complained")


def status_after(current: Subscriber, status: str, at: dt.datetime) -> str | None:
    """The status `current` takes from an event asking for `status` ("subscribed": a
    confirmation) that happened at `at`, or None when the event changes nothing. The same status
    back means only its time moves on (a later event of the same kind). See the module's rule."""
    if current.resubscribed_at is not None and at < current.resubscribed_at:
        return None
    held, since = current.status, current.status_at
    if status == "subscribed":
        if held in _ONLY_THE_EDITOR_LIFTS or (since is not None and at <= since):
            return None
        return status
    if held == "subscribed":
        return status if status in _ONLY_THE_EDITOR_LIFTS or since is None or at >= since else None
    if STATUS_STRENGTH[status] > STATUS_STRENGTH[held] or (status == held and (since is None or at > since)):
        return status
    return None


def edition_wins(current: Subscriber, edition: str, at: dt.datetime) -> bool:
    """Whether a choice of `edition` made at `at` is newer than the one that gave `current` its
    edition (then it is theirs, or, the same edition, its time moves on). See the module's rule."""
    if current.edition_at is None or at != current.edition_at:
        return current.edition_at is None or at > current.edition_at
    return EDITIONS.index(edition) < EDITIONS.index(current.edition)


def last_full_window(times: list[dt.datetime], at: dt.datetime, window: dt.timedelta, limit: int
                     ) -> tuple[dt.datetime, int] | None:
    """The latest time in sorted `times` that ends a window (`window` long, the end included)
    holding `limit` or more of `times`, among the windows that hold `at`; with how many it holds.
    Checking every window a new time falls in, not only the one it ends, is what makes the count
    the same in any apply order; taking the latest such window, as a later hard bounce moves a
    bounced reader's time on, makes the status time the same too (the window that ends last is
    checked with all its bounces known when the last of them is applied, whatever the order)."""
    reached = None
    for end in times[bisect.bisect_left(times, at):]:
        if end >= at + window:
            break
        held = bisect.bisect_right(times, end) - bisect.bisect_right(times, end - window)
        if held >= limit:
            reached = end, held
    return reached


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
    edition: str | None = None  # the edition a reader now gets, when an event changed it


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Applier:
    def __init__(self, store: Store, settings: EventSettings, signer: TokenSigner | None = None, *,
                 clock: Callable[[], dt.datetime] = _utc_now):
        self.store = store
        self.settings = settings
        self.signer = signer  # None: inbound mail is matched by its authenticated sender only
        self.clock = clock

    def apply(self, event: Event) -> Outcome:
        if isinstance(event, MailEvent):
            return self._mail_event(event)
        if isinstance(event, Unsubscribe):
            change = self._move(event.address, "unsubscribed", event.reason, event.at, record_unknown=True)
            return Outcome("unsubscribe", _changes(change))
        if isinstance(event, InboundMail):
            return self._inbound(event)
        if isinstance(event, SubscribeConfirmed):
            change = self._confirm(event)
            edition = self._choose(event.address, event.edition, event.at) if event.edition else None
            return Outcome("subscribe_confirmed", _changes(change), edition=edition)
        if isinstance(event, EditionChanged):
            edition = self._choose(event.address, event.edition, event.at)
            note = None if self.store.get(_list_form(event.address)) else (
                f"edition change for {event.address}: not on the list; nothing changed")
            return Outcome("edition_changed", edition=edition, note=note)
        if isinstance(event, Ignored):
            return Outcome("ignored", note=event.reason)
        raise TypeError(f"not an event: {event!r}")

    def _when(self, at: dt.datetime) -> dt.datetime:
        """The event's time, or now if it claims to be later (the rule for future times)."""
        return min(at, self.clock())

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
        at, key = self._when(event.at), address_key(address)
        event_table.record_transient_bounce(self.store.connection, key, at)
        current = self.store.get(address)
        # Bounces before an editor's resubscribe no longer count.
        floor = current.resubscribed_at if current is not None and current.resubscribed_at else at - window
        times = event_table.transient_bounce_times(self.store.connection, key, max(at - window, floor), at + window)
        reached = last_full_window(times, at, window, self.settings.transient_bounce_limit)
        if reached is None:
            return None
        end, count = reached
        reason = f"{count} transient bounces within {self.settings.transient_bounce_window_days} days"
        # Recorded for an address not on the list too, as a hard bounce is: the count must not
        # depend on whether the bounces came before or after the address joined.
        return self._move(address, "bounced", reason, end, record_unknown=True)

    def _inbound(self, event: InboundMail) -> Outcome:
        verified = [a for a in (self.signer.address(t) for t in event.tokens) if a] if self.signer else []
        if verified:
            changes = [self._move(a, "unsubscribed", "unsubscribe mail (token)", event.at, record_unknown=True)
                       for a in dict.fromkeys(verified)]
            return Outcome("unsubscribe_mail", _changes(*changes))
        subscriber = self.store.get(_list_form(event.sender)) if event.sender else None
        if subscriber is not None and event.authenticated:
            change = self._move(event.sender, "unsubscribed", "unsubscribe mail (from the address)", event.at,
                                record_unknown=False)
            return Outcome("unsubscribe_mail", _changes(change))
        why = "no genuine token" if event.tokens else "no token"
        if subscriber is not None:
            # Anyone can write a subscriber's address in From: only a proven From domain counts.
            return Outcome("unsubscribe_mail_unproven", note=(
                f"unsubscribe mail from {event.sender}: {why}, and its From domain is not proven "
                f"(needs DMARC pass, or SPF or DKIM passing for that domain; SES said {event.verdicts or 'nothing'}); "
                "nothing changed"))
        return Outcome("ignored", note=f"unsubscribe mail from {event.sender or 'an unknown sender'}: {why}, and "
                                       "the sender is not a subscriber")

    def _move(self, address: str, status: str, reason: str, at: dt.datetime, *, record_unknown: bool,
              name: str | None = None, source: str = "manual", joined: dt.datetime | None = None) -> Change | None:
        """Give `address` the `status` an event at `at` asks for, as the order rule decides."""
        at, address = self._when(at), _list_form(address)
        current = self.store.get(address)
        if current is None:
            if not record_unknown:
                return None
            # An opt-out is recorded so that no later import subscribes an address that bounced or
            # left.
            now = self.clock()
            self.store.insert([Subscriber(address, name, status, source, joined or now, now, reason, status_at=at)])
            return Change(address, None, status)
        after = status_after(current, status, at)
        if after is None:
            return None
        self.store.record_status(current.address, after, reason, at, name=name)
        return Change(current.address, current.status, after) if after != current.status else None

    def _choose(self, address: str, edition: str, at: dt.datetime) -> str | None:
        """Give `address` the `edition` chosen at `at` if it is their latest choice (an address not
        on the list has no edition to keep); the edition when it changed."""
        at, current = self._when(at), self.store.get(_list_form(address))
        if current is None or not edition_wins(current, edition, at):
            return None
        self.store.record_edition(current.address, edition, at)
        return edition if edition != current.edition else None

    def _confirm(self, event: SubscribeConfirmed) -> Change | None:
        try:
            address, _ = checked_address(event.address)
        except StoreError as error:
            raise MalformedMessage(str(error)) from None
        name = clean_name(event.name)[0] if event.name else None
        # Source "web", joined when they confirmed (the consent on record); ordered by when its
        # link was issued (`SubscribeConfirmed.at`).
        return self._move(address, "subscribed", "confirmed on the subscribe form", event.at, record_unknown=True,
                          name=name, source="web", joined=self._when(event.confirmed_at))


def _list_form(address: str) -> str:
    """The address as the list keeps it (an IDN domain as xn--, the domain in lower case), so an
    event naming `kim@예시.한국` finds `kim@xn--...`; as given when the list could not hold it."""
    try:
        return addresses.normalise(address)
    except addresses.AddressError:
        return address


def _changes(*changes: Change | None) -> tuple[Change, ...]:
    return tuple(change for change in changes if change is not None)


def apply_once(store: Store, applier: Applier, event: Event) -> Outcome | None:
    """Apply `event` and record its id, all or nothing (in its own transaction, or as one part of
    the caller's); None if that id was applied before (a queued copy of an event the web app
    already applied, or SNS delivering twice)."""
    with store.part():
        if event_table.is_applied(store.connection, event.event_id):
            return None
        outcome = applier.apply(event)
        event_table.mark_applied(store.connection, event.event_id, outcome.kind, dt.datetime.now(dt.UTC))
    return outcome


def record_own_event(event: OwnEvent, *, queue: EventQueue | None, database: Path | None,
                     settings: EventSettings) -> bool:
    """Put one of our own events (from the web app) on the queue, if there is one, and apply it to
    the local list, if there is one: the same event both ways (same id and time), so the queued
    copy of what was applied here is only deleted at sync. True when it reached the place the
    sender's list is updated from; False: ask the reader to try again."""
    queued = True
    if queue is not None:
        try:
            queue.put(event)
        except AwsError as error:
            log.error("%s event not queued (the reader is asked to try again): %s", event.type, error)
            queued = False
    if database is not None:
        try:
            apply_locally(database, settings, event)
        except (StoreError, sqlite3.Error) as error:
            # Safe on the queue, it reaches the list at the next sync; with no queue the reader
            # must try again (a 503, rather than a 500 that reads like a broken link).
            log.error("%s event not applied to %s: %s", event.type, database, error)
            return queue is not None and queued
    return queued


def apply_locally(database: Path, settings: EventSettings, event: OwnEvent) -> Outcome | None:
    """Apply our own event to a local list now (the web app's unsubscribe and confirmation, where
    it has the database), recorded as applied: the queued copy, the same event with the same id
    and time, is then only deleted by `sync`."""
    with Store.open(database) as store:
        return apply_once(store, Applier(store, settings), event)
