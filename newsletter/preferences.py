"""Each reader's preferences page: which edition they get, and a way out.

    GET  .../preferences/TOKEN                -> the page: the reader's edition and a form to change
                                                 it, and an unsubscribe button; changes nothing
                                                 (mail scanners open links)
    POST .../preferences/TOKEN  edition=ko    -> an `EditionChanged` event
    POST .../preferences/TOKEN  unsubscribe=yes -> an `Unsubscribe` event, as the unsubscribe
                                                 endpoint's
    a forged, altered or expired token        -> 400

Every email's footer links the page, with a token of the reader's own: the issue time, the
edition the email was sent in and the address, sealed like an unsubscribe token
(`unsubscribe.DatedTokens`, AES-SIV, base64url) under a key of its own purpose derived from the
signing key, so that it never passes as an unsubscribe or a confirmation token, nor one of those
as it. Unlike an unsubscribe link it expires (`preferences.link_days`): it changes what a reader
receives, and forwarded emails carry it.

A change goes on the queue as our own event (`newsletter sync` applies it) and, where the app has
the database (`newsletter serve`), applies at once: the same event both ways, ordered against the
reader's other choices by when it was made (`newsletter.events.apply`). Without the database (AWS
Lambda) the page shows the edition the email was sent in, which the token carries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Config, EventSettings
from .errors import NewsletterError
from .events import EditionChanged, EventQueue, Unsubscribe
from .events.apply import record_own_event
from .model import EDITIONS
from .store import Store, address_key
from .unsubscribe import DEVELOPMENT_TOKEN_PREFIX, DatedTokens, SigningKey, TokenState, address_key_of

EDITION_FIELD = "edition"
UNSUBSCRIBE_FIELD = "unsubscribe"
UNSUBSCRIBE_REASON = "preferences page"
MAX_FORM_BYTES = 1024  # one short field, urlencoded or multipart, with room to spare


@dataclass(frozen=True)
class Reader:
    """Whose page a genuine token opens, and what the page shows them."""

    address: str  # the address key the token was made for
    edition: str  # the list's, where the app has it; else the one the email was sent in
    status: str | None  # the list's status; None: not known here (no database) or not on the list


@dataclass(frozen=True)
class CheckedLink:
    state: TokenState
    address: str | None = None  # for a valid token
    edition: str | None = None  # the edition the email carrying the link was sent in


class PreferenceTokens:
    """Makes and checks preferences tokens for one list with one key."""

    def __init__(self, list_id: str, key: SigningKey, lifetime: dt.timedelta):
        self.prefix = DEVELOPMENT_TOKEN_PREFIX if key.is_development else ""
        self._dated = DatedTokens(key, b"preferences", list_id, lifetime)

    def token(self, address: str, edition: str, issued: dt.datetime) -> str:
        return self.prefix + self._dated.seal(bytes([EDITIONS.index(edition)]) + address_key(address).encode(), issued)

    def check(self, token: str, now: dt.datetime) -> CheckedLink:
        if not token.startswith(self.prefix):
            return CheckedLink(TokenState.INVALID)
        opened = self._dated.open(token.removeprefix(self.prefix), now)
        if opened.state is not TokenState.VALID:
            return CheckedLink(opened.state)
        edition, key = opened.payload[0], address_key_of(opened.payload[1:])
        if edition >= len(EDITIONS) or key is None:
            return CheckedLink(TokenState.INVALID)
        return CheckedLink(TokenState.VALID, key, EDITIONS[edition])


class PreferenceLinks:
    """Each recipient's preferences link, for the footer of the email in their edition; `issued`
    (when the send was prepared) starts the links' lifetime."""

    def __init__(self, config: Config, key: SigningKey, issued: dt.datetime):
        self.tokens = PreferenceTokens(config.list_id, key, dt.timedelta(days=config.preferences.link_days))
        self.url = config.preferences.url
        self.issued = issued

    def for_address(self, address: str, edition: str) -> str:
        return self.url + self.tokens.token(address, edition, self.issued)


class Preferences:
    """The page's logic, for the web app (no WSGI here). `database`: the list, where the app has
    it (`newsletter serve`); `queue`: where changes go for `newsletter sync` (None: no [events]
    table, then the database must be there)."""

    def __init__(self, config: Config, key: SigningKey, *, database: Path | None, queue: EventQueue | None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)):
        if database is None and queue is None:
            raise NewsletterError("the preferences page needs the database or the event queue ([events])")
        self.config = config
        self.tokens = PreferenceTokens(config.list_id, key, dt.timedelta(days=config.preferences.link_days))
        self.database = database
        self.queue = queue
        self.clock = clock

    @property
    def link_days(self) -> int:
        return self.config.preferences.link_days

    def check(self, token: str) -> CheckedLink:
        return self.tokens.check(token, self.clock())

    def reader(self, link: CheckedLink) -> Reader:
        """What the page shows for a valid link: the list's edition and status where the app has
        the list, else the edition the email was sent in."""
        if self.database is None:
            return Reader(link.address, link.edition, None)
        with Store.open(self.database) as store:
            stored = store.get(link.address)
        if stored is None:
            return Reader(link.address, link.edition, None)
        return Reader(link.address, stored.edition, stored.status)

    def choose(self, link: CheckedLink, edition: str) -> bool:
        """The reader chose `edition` now; True once it reached the list or the queue."""
        return self._record(EditionChanged(link.address, edition, at=self.clock()))

    def unsubscribe(self, link: CheckedLink) -> bool:
        return self._record(Unsubscribe(link.address, UNSUBSCRIBE_REASON, at=self.clock().replace(microsecond=0)))

    def _record(self, event: EditionChanged | Unsubscribe) -> bool:
        return record_own_event(event, queue=self.queue, database=self.database,
                                settings=self.config.events or EventSettings())
