"""RenderedIssue -> one personal MIME message per recipient, built from a per-issue template.

The issue's message is assembled once per edition by the stdlib `email` package (headers folded
and RFC 2047 encoded, boundaries, part headers). Per recipient only three header lines (To,
Message-ID, List-Unsubscribe) and the unsubscribe and preferences URLs inside the two bodies
change. Both bodies are base64
(quoted-printable makes Korean about 50% larger and pushes the HTML toward Gmail's clipping
point); the base64 of everything before the first unsubscribe placeholder is computed once and
only the tail after it is encoded per recipient, which keeps a message at tens of microseconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

from .config import Config
from .errors import MessageError, TemplateError
from .model import PREFERENCES_URL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, RenderedIssue
from .render import GMAIL_CLIP_BYTES  # noqa: F401  (re-exported: the send summary compares to it)
from .transports.base import OutgoingMessage

MAX_LINE_BYTES = 998  # RFC 5322 section 2.1.1
_FOLD_WIDTH = 78  # RFC 5322's recommended line length, what the email package folds to
_BASE64_LINE_INPUT = 57  # bytes of input per 76-character base64 line

_PLACEHOLDER = UNSUBSCRIBE_URL_PLACEHOLDER.encode("ascii")
_PREFERENCES_PLACEHOLDER = PREFERENCES_URL_PLACEHOLDER.encode("ascii")
_TEXT_MARKER = "@@NEWSLETTER-TEXT-BODY@@"
_HTML_MARKER = "@@NEWSLETTER-HTML-BODY@@"
# A deliberately plain address shape: the store and the CLI validate addresses properly with
# email-validator; this only keeps anything that could break a header line out of one.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_header_value(field: str, value: str) -> str:
    """Refuse a header value that could end its line early and smuggle in headers of its own."""
    if "\r" in value or "\n" in value:
        raise MessageError(f"{field} must be one line: {value!r} contains a line break (CR or LF)")
    if _CONTROL.search(value):
        raise MessageError(f"{field} contains a control character: {value!r}")
    return value


def check_address(field: str, address: str) -> str:
    check_header_value(field, address)
    if not _ADDRESS.fullmatch(address):
        raise MessageError(f"{field}: not a plain ASCII email address: {address!r}")
    return address


def _check_url(field: str, url: str, scheme: str) -> str:
    check_header_value(field, url)
    if not url.isascii() or not url.startswith(scheme) or any(c in url for c in " <>\"") or len(url) > 900:
        raise MessageError(f"{field}: expected a {scheme} URL without spaces or <>: {url!r}")
    return url


def _base64_lines(data: bytes) -> bytes:
    """MIME base64: 76-character lines, each ending in CRLF."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class _Body:
    """One part's payload: base64 of the fixed prefix, and the tail encoded per recipient."""

    encoded_prefix: bytes
    tail: bytes  # UTF-8, still holding the placeholder

    @classmethod
    def split(cls, content: str, what: str) -> _Body:
        data = content.encode("utf-8")
        if data.find(_PLACEHOLDER) < 0:
            raise TemplateError(
                f"the rendered {what} has no unsubscribe link (UNSUBSCRIBE_URL_PLACEHOLDER); "
                "every message must show one"
            )
        first = min(at for at in (data.find(_PLACEHOLDER), data.find(_PREFERENCES_PLACEHOLDER)) if at >= 0)
        cut = first - first % _BASE64_LINE_INPUT  # whole base64 lines only, so the tail aligns
        return cls(_base64_lines(data[:cut]), data[cut:])

    def encode(self, url: bytes, preferences_url: bytes) -> bytes:
        tail = self.tail.replace(_PLACEHOLDER, url).replace(_PREFERENCES_PLACEHOLDER, preferences_url)
        return self.encoded_prefix + _base64_lines(tail)


class MessageTemplate:
    """The issue's message, built once; `message_for` makes each recipient's copy.

    Nothing in it changes after construction, so the sending engine's workers may share one.
    """

    def __init__(self, rendered: RenderedIssue, config: Config, *, date: dt.datetime | None = None):
        self.issue_id = rendered.issue_id
        self.edition = rendered.edition
        self.subject = rendered.subject
        sender = check_header_value("sender.from", config.from_address)
        self.sender_address = parseaddr(sender)[1]
        check_address("sender.from", self.sender_address)
        self._msgid_domain = self.sender_address.rpartition("@")[2]
        self._text = _Body.split(rendered.text, "text part")
        self._html = _Body.split(rendered.html, "HTML")

        message = EmailMessage(policy=SMTP)
        message["From"] = sender
        if config.reply_to:
            message["Reply-To"] = check_header_value("sender.reply_to", config.reply_to)
        message["Subject"] = check_header_value("subject", rendered.subject)
        message["Date"] = format_datetime(date or dt.datetime.now(dt.timezone.utc))
        list_name = check_header_value("newsletter.name", config.name)
        message["List-Id"] = f"{list_name} <{check_header_value('newsletter.list_id', config.list_id)}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["MIME-Version"] = "1.0"
        message["Content-Type"] = "multipart/alternative"
        for subtype, marker in (("plain", _TEXT_MARKER), ("html", _HTML_MARKER)):
            part = EmailMessage(policy=SMTP)
            part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
            part["Content-Transfer-Encoding"] = "base64"
            part.set_payload(marker)
            message.attach(part)
        head, _, body = message.as_bytes().partition(b"\r\n\r\n")
        self._head = head + b"\r\n\r\n"
        before_text, _, rest = body.partition(_TEXT_MARKER.encode())
        between, _, after_html = rest.partition(_HTML_MARKER.encode())
        # The generator ends each payload with CRLF before the boundary; base64 brings its own.
        self._skeleton = (before_text, between.removeprefix(b"\r\n"), after_html.removeprefix(b"\r\n"))

    def encoded_html_size(self) -> int:
        """Bytes of the base64 HTML part as sent (the figure Gmail's clipping goes by)."""
        return len(self._html.encode(_PLACEHOLDER, _PREFERENCES_PLACEHOLDER))

    def message_for(
        self, address: str, *, name: str | None = None, unsubscribe_url: str, unsubscribe_mailto: str,
        preferences_url: str,
    ) -> OutgoingMessage:
        """The copy for one recipient, with their own unsubscribe URL in the headers and bodies,
        and their own preferences link in the bodies."""
        check_address("recipient address", address)
        url = _check_url("unsubscribe URL", unsubscribe_url, "http")
        mailto = _check_url("unsubscribe mailto", unsubscribe_mailto, "mailto:")
        preferences = _check_url("preferences URL", preferences_url, "http")
        url_bytes, preferences_bytes = url.encode("ascii"), preferences.encode("ascii")
        html_url = html.escape(url, quote=True).encode("ascii")
        html_preferences = html.escape(preferences, quote=True).encode("ascii")
        before_text, between, after_html = self._skeleton
        raw = b"".join(
            (
                self._to_line(address, name),
                b"Message-ID: ",
                make_msgid(domain=self._msgid_domain).encode("ascii"),
                b"\r\nList-Unsubscribe: <",
                url_bytes,
                b">,\r\n <",
                mailto.encode("ascii"),
                b">\r\n",
                self._head,
                before_text,
                self._text.encode(url_bytes, preferences_bytes),
                between,
                self._html.encode(html_url, html_preferences),
                after_html,
            )
        )
        return OutgoingMessage(issue_id=self.issue_id, recipient=address, raw=raw, edition=self.edition)

    @staticmethod
    def _to_line(address: str, name: str | None) -> bytes:
        if name:
            check_header_value("recipient name", name)
            # Runs of whitespace in a display name are folding whitespace to a parser: say it once.
            name = " ".join(name.split())
        if not name:
            return b"To: " + address.encode("ascii") + b"\r\n"
        # formataddr quotes and RFC 2047-encodes in microseconds, as one encoded word: fine for a
        # short name. A long non-ASCII name needs several encoded words; `Header` splits them
        # correctly, where the email package's modern folder inserts spaces into the name.
        line = f"To: {formataddr((name, address))}"
        if len(line) > _FOLD_WIDTH and not name.isascii():
            encoded_words = Header(name, "utf-8", header_name="To").encode(linesep="\r\n")
            line = f"To: {encoded_words} <{address}>"
        if len(line) > MAX_LINE_BYTES:
            raise MessageError(f"recipient name is too long for a header line: {name[:40]!r}...")
        return line.encode("ascii") + b"\r\n"
