"""Subscribing from the web with double opt-in, on a server that needs no database.

    form POST (address)  -> one confirmation email with a signed link, the same answer for every
                            address (on the list or not, limited or not)
    GET  confirm link    -> a page with a button; changes nothing (mail scanners prefetch links)
    POST confirm link    -> a `SubscribeConfirmed` event on the queue (`newsletter sync` adds the
                            reader with source "web"), and applied at once where the app has the
                            database (`newsletter serve`)

The link's token is the time it was issued and the address, sealed like an unsubscribe token
(`unsubscribe.TokenCipher`: AES-SIV, base64url) with a key of its own derived from the signing
key: the link does not show the address, a confirmation token can never pass as an unsubscribe
token or the other way round, and no second secret has to be deployed. A token older than
`subscribe.confirm_hours` is refused. Links mailed before the tokens were opaque,
`ADDRESS.ISSUED.MAC` (HMAC-SHA256 with a key derived from the signing key), work until they
expire in the same way; that reading can go once `confirm_hours` have passed since the upgrade.

Abuse (subscription bombing: bots submitting a victim's address over and over):

- a honeypot field people never see; a post that fills it gets the usual answer and no email;
- at most one confirmation email per address per day. With the database (`newsletter serve`) the
  day's record is a row keyed by HMAC(key, day + address), so it holds across processes and
  restarts and stores no address in the clear. Without it (AWS Lambda) the record is in the
  process's memory: it holds per container, so give the function a reserved concurrency of 1-2
  (docs/deploy.md) and the worst case is that many emails per address per day;
- a per-client limit (`subscribe.client_requests_per_hour`, a token bucket per client address, in
  memory, at most CLIENTS_TRACKED clients);
- a bounded request (MAX_FORM_BYTES) and a bounded address (254 characters);
- with the database, no confirmation email to an address that bounced or complained (a form must
  not re-add it, and mailing it hurts the sender's reputation) or that is already subscribed.
"""

from __future__ import annotations

import binascii
import collections
import datetime as dt
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from enum import Enum
from pathlib import Path

import email_validator

from .config import Config, EventSettings
from .errors import NewsletterError
from .events import EventQueue, SubscribeConfirmed
from .events.apply import record_own_event
from .store import Store, address_key
from .transports.base import OutgoingMessage, Transport
from .model import DEFAULT_EDITION, EDITIONS
from .unsubscribe import MAX_TOKEN_LENGTH, DatedToken, DatedTokens, SigningKey, TokenState, unb64

log = logging.getLogger("newsletter.subscribe")

ADDRESS_FIELD = "email"
EDITION_FIELD = "edition"
HONEYPOT_FIELD = "website"
CONFIRM_FIELD = "confirm"
MAX_FORM_BYTES = 2048  # an address (254) and a honeypot, urlencoded, with room to spare
MAX_ADDRESS_LENGTH = 254
CLIENTS_TRACKED = 10_000  # the per-client limit forgets the least recently seen beyond this
CONFIRMATION_TAG = "subscribe-confirmation"  # the SES tag (`issue`) of confirmation emails
_KEY_LABEL = b"newsletter subscribe confirmation v1"
_MAC_BYTES = 16


def derived_key(key: SigningKey) -> bytes:
    """The key for the daily records and the older confirmation tokens' MACs: never the
    unsubscribe key itself."""
    return hmac.new(key.secret, _KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class CheckedToken:
    state: TokenState
    address: str | None = None  # set only for a valid token
    issued_at: dt.datetime | None = None
    edition: str = DEFAULT_EDITION  # chosen on the form (a link mailed before editions: the bilingual)


class ConfirmationTokens:
    def __init__(self, list_id: str, key: SigningKey, lifetime: dt.timedelta):
        self._dated = DatedTokens(key, b"subscribe confirmation", list_id, lifetime)
        self._mac_for_list = hmac.new(derived_key(key), b"token\0" + list_id.encode() + b"\0", hashlib.sha256)

    def token(self, address: str, now: dt.datetime, edition: str = DEFAULT_EDITION) -> str:
        # Another edition than the default after a NUL, which no address holds; none, as in the
        # links mailed before editions, is the bilingual one.
        chosen = b"" if edition == DEFAULT_EDITION else b"\0" + edition.encode()
        return self._dated.seal(address.encode() + chosen, now)

    def check(self, token: str, now: dt.datetime) -> CheckedToken:
        if "." in token:
            opened = self._open_mac_token(token) if len(token) <= MAX_TOKEN_LENGTH else None
            dated = self._dated.judge(opened[0].encode(), opened[1], now) if opened else DatedToken(TokenState.INVALID)
        else:
            dated = self._dated.open(token, now)
        if dated.state is not TokenState.VALID:
            return CheckedToken(dated.state, issued_at=dated.issued_at)
        address, _, edition = dated.payload.partition(b"\0")
        try:
            address_text, edition_text = address.decode(), edition.decode() or DEFAULT_EDITION
        except UnicodeDecodeError:
            return CheckedToken(TokenState.INVALID)
        if edition_text not in EDITIONS:
            return CheckedToken(TokenState.INVALID)
        return CheckedToken(TokenState.VALID, address_text, dated.issued_at, edition_text)

    def _open_mac_token(self, token: str) -> tuple[str, int] | None:
        """An `ADDRESS.ISSUED.MAC` token, as links mailed before the tokens were opaque carry them."""
        if token.count(".") != 2:
            return None
        encoded_address, encoded_issued, encoded_mac = token.split(".")
        try:
            address = unb64(encoded_address).decode()
            issued = int.from_bytes(unb64(encoded_issued), "big")
            mac = unb64(encoded_mac)
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            return None
        if not hmac.compare_digest(mac, self._mac(address, issued)):
            return None
        return address, issued

    def _mac(self, address: str, issued: int) -> bytes:
        mac = self._mac_for_list.copy()
        mac.update(address.encode() + b"\0" + str(issued).encode())
        return mac.digest()[:_MAC_BYTES]


def mailable_address(value: str) -> str:
    """The address as the list stores it (ASCII, IDN domains in their ASCII form), or
    email_validator.EmailNotValidError saying what is wrong. No DNS lookup: the answer must not
    depend on (or take the time of) a lookup."""
    if len(value) > MAX_ADDRESS_LENGTH:
        raise email_validator.EmailSyntaxError(f"the address is longer than {MAX_ADDRESS_LENGTH} characters")
    # SES does not take SMTPUTF8, so the part before @ must be ASCII.
    return email_validator.validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email


# --- the limits ---------------------------------------------------------------------------------


class ClientLimit:
    """A token bucket per client: `per_hour` requests, refilled evenly; in memory, bounded."""

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_hour)
        self.refill_per_second = per_hour / 3600
        self.clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill_per_second)
            allowed = tokens >= 1
            self._buckets[client] = (tokens - 1 if allowed else tokens, now)
            while len(self._buckets) > CLIENTS_TRACKED:
                self._buckets.popitem(last=False)
        return allowed


class DailyRecord:
    """At most one confirmation email per address per day: `first_today` records the address
    and says whether it was the first today; `forget` takes a record back (the email failed)."""

    def __init__(self, key: SigningKey, database: Path | None):
        self._key = derived_key(key)
        self.database = database
        self._memory: dict[str, str] = {}  # record key -> day, when there is no database
        self._lock = threading.Lock()

    def _record_key(self, address: str, day: dt.date) -> str:
        message = b"day\0" + day.isoformat().encode() + b"\0" + address_key(address).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def first_today(self, address: str, today: dt.date) -> bool:
        record = self._record_key(address, today)
        if self.database is not None:
            with Store.open(self.database) as store:
                return store.record_confirmation_request(record, today)
        with self._lock:
            if any(day != today.isoformat() for day in self._memory.values()):
                self._memory = {k: day for k, day in self._memory.items() if day == today.isoformat()}
            if record in self._memory:
                return False
            self._memory[record] = today.isoformat()
            return True

    def forget(self, address: str, today: dt.date) -> None:
        record = self._record_key(address, today)
        if self.database is not None:
            with Store.open(self.database) as store:
                store.forget_confirmation_request(record)
        else:
            with self._lock:
                self._memory.pop(record, None)


# --- the two actions ----------------------------------------------------------------------------


class FormOutcome(Enum):
    ACCEPTED = "accepted"  # the one answer for every well-formed address
    INVALID_ADDRESS = "invalid_address"
    TOO_MANY = "too_many"  # this client's limit
    UNAVAILABLE = "unavailable"  # the email could not be sent now; try again


class ConfirmOutcome(Enum):
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"  # neither the queue nor the database took it


@dataclass(frozen=True)
class FormAnswer:
    outcome: FormOutcome
    address: str = ""  # as typed (the page shows it back, escaped)
    problem: str = ""  # why an address is not valid
    edition: str = DEFAULT_EDITION  # as chosen (the page shows it back)


class Subscriptions:
    """The subscribe form's and the confirmation link's logic, for the web app (no WSGI here).

    `database`: the list, where the app has it (`newsletter serve`); None on Lambda.
    `queue`: where confirmed subscriptions go for `newsletter sync` (None: no [events] table,
    then the database must be there). `new_transport`: how confirmation emails go out."""

    def __init__(
        self,
        config: Config,
        key: SigningKey,
        *,
        database: Path | None,
        queue: EventQueue | None,
        new_transport: Callable[[], Transport],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        if config.subscribe is None:
            raise NewsletterError("no [subscribe] table: the subscribe form is not set up")
        if database is None and queue is None:
            raise NewsletterError("the subscribe form needs the database or the event queue ([events])")
        self.config = config
        self.settings = config.subscribe
        self.tokens = ConfirmationTokens(config.list_id, key, dt.timedelta(hours=self.settings.confirm_hours))
        self.database = database
        self.queue = queue
        self.new_transport = new_transport
        self.clock = clock
        self.clients = ClientLimit(self.settings.client_requests_per_hour)
        self.daily = DailyRecord(key, database)

    def confirm_url(self, token: str) -> str:
        return f"{self.settings.url}confirm/{token}"

    def request(self, fields: dict[str, str], client: str) -> FormAnswer:
        typed = fields.get(ADDRESS_FIELD, "")[:MAX_ADDRESS_LENGTH + 1]
        if not self.clients.allow(client):
            return FormAnswer(FormOutcome.TOO_MANY, typed)
        if fields.get(HONEYPOT_FIELD):
            log.info("subscribe form: honeypot filled by %s; nothing sent", client)
            return FormAnswer(FormOutcome.ACCEPTED, typed)
        try:
            address = mailable_address(typed)
        except email_validator.EmailNotValidError as error:
            return FormAnswer(FormOutcome.INVALID_ADDRESS, typed, str(error))
        edition = fields.get(EDITION_FIELD) or DEFAULT_EDITION
        if edition not in EDITIONS:  # the form offers only these: a hand-made post
            return FormAnswer(FormOutcome.INVALID_ADDRESS, typed, f"no such edition: {edition[:20]!r}")
        now = self.clock()
        if self._needs_no_email(address) or not self.daily.first_today(address, now.date()):
            return FormAnswer(FormOutcome.ACCEPTED, typed, edition=edition)
        try:
            self._send_confirmation(address, now, edition)
        except NewsletterError as error:
            self.daily.forget(address, now.date())
            log.error("confirmation email to a subscriber not sent: %s", error)
            return FormAnswer(FormOutcome.UNAVAILABLE, typed, edition=edition)
        return FormAnswer(FormOutcome.ACCEPTED, typed, edition=edition)

    def _needs_no_email(self, address: str) -> bool:
        """Already subscribed, or never to be mailed again from a form (bounced, complained)."""
        if self.database is None:
            return False
        with Store.open(self.database) as store:
            current = store.get(address)
        return current is not None and current.status in ("subscribed", "bounced", "complained")

    def _send_confirmation(self, address: str, now: dt.datetime, edition: str) -> None:
        from .site.pages import render_site_template

        link = self.confirm_url(self.tokens.token(address, now, edition))
        context = {"config": self.config, "link": link, "hours": self.settings.confirm_hours}
        message = EmailMessage(policy=SMTP)
        message["From"] = self.config.from_address
        if self.config.reply_to:
            message["Reply-To"] = self.config.reply_to
        message["To"] = address
        message["Subject"] = f"구독 확인 · Please confirm your subscription: {self.config.name}"
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain=self.config.from_address.rpartition("@")[2].strip(">"))
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        message.set_content(render_site_template("confirmation_email.txt.j2", context), cte="base64")
        message.add_alternative(render_site_template("confirmation_email.html.j2", context), subtype="html",
                                cte="base64")
        transport = self.new_transport()
        try:
            transport.send(OutgoingMessage(CONFIRMATION_TAG, address, message.as_bytes()))
        finally:
            transport.close()

    def check(self, token: str) -> CheckedToken:
        return self.tokens.check(token, self.clock())

    def confirm(self, token: str) -> ConfirmOutcome:
        checked = self.check(token)
        if checked.state is not TokenState.VALID:
            return ConfirmOutcome.EXPIRED if checked.state is TokenState.EXPIRED else ConfirmOutcome.INVALID
        # Dated by its link too: a link issued before the reader unsubscribed cannot bring them back;
        # the edition chosen on the form is a choice made then.
        event = SubscribeConfirmed(checked.address, None, confirmed_at=self.clock().replace(microsecond=0),
                                   requested_at=checked.issued_at, edition=checked.edition)
        reached = record_own_event(event, queue=self.queue, database=self.database,
                                   settings=self.config.events or EventSettings())
        return ConfirmOutcome.CONFIRMED if reached else ConfirmOutcome.UNAVAILABLE


def subscriptions_for(
    config: Config, key: SigningKey, *, database: Path | None, queue: EventQueue | None
) -> Subscriptions | None:
    """The web app's subscribe form as the config sets it up (None without a [subscribe] table);
    confirmation emails go through the configured transport."""
    if config.subscribe is None:
        return None
    from .transports import make_transport

    return Subscriptions(config, key, database=database, queue=queue, new_transport=lambda: make_transport(config))
