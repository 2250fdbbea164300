"""The data that flows between the stages: plain frozen dataclasses, no I/O.

parse: issue file -> Issue;  render: Issue -> RenderedIssue;  compose: RenderedIssue -> messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Text:
    """A piece of prose as the editor wrote it: CommonMark restricted to what the parser accepts
    (paragraphs, lists, emphasis, inline code, links with http/https/mailto URLs; raw HTML is
    literal text). `newsletter.markup` turns it into HTML or plain text."""

    markdown: str

    def __bool__(self) -> bool:
        return bool(self.markdown.strip())


@dataclass(frozen=True)
class Bilingual:
    """One passage: the Korean text and the English original it was made from (either may be
    missing: an English-only or Korean-only passage)."""

    ko: Text | None = None
    en: Text | None = None
    line: int = field(default=0, compare=False)  # where the passage starts in the issue file


@dataclass(frozen=True)
class Link:
    url: str
    label: str | None = None  # None: show the URL (or a label the template derives from it)


@dataclass(frozen=True)
class Paper:
    slug: str  # stable anchor id, unique within the issue
    title_ko: str | None
    title_en: str | None
    summary: tuple[Bilingual, ...] = ()
    abstract: tuple[Bilingual, ...] = ()
    links: tuple[Link, ...] = ()  # the paper itself (논문 링크 / Paper)
    read_more: tuple[Link, ...] = ()  # tweets, posts (더 읽어보기 / Read more)
    tags: tuple[str, ...] = ()
    line: int = 0  # where the paper's heading is in the issue file

    @property
    def title(self) -> str:
        """The title to show first: Korean when there is one."""
        return self.title_ko or self.title_en or ""

    @property
    def sections(self) -> tuple[str, ...]:
        """Names of the sections this paper has, in reading order."""
        present = {
            "summary": self.summary,
            "abstract": self.abstract,
            "links": self.links,
            "read_more": self.read_more,
        }
        return tuple(name for name, value in present.items() if value)


@dataclass(frozen=True)
class Issue:
    title: str
    date: dt.date
    papers: tuple[Paper, ...]
    intro: tuple[Bilingual, ...] = ()
    notice: Text | None = None
    subject: str | None = None
    preheader: str | None = None
    source_url: str | None = None
    path: str = ""
    # The notice as the email edition words it (front matter `email_notice:`), where the notice
    # blockquote speaks for the forum ("reply in the comments"); None: the email shows `notice`.
    email_notice: Text | None = None
    # The notice as the web page words it (front matter `web_notice:`): a page cannot take a reply
    # and has no comments, so it never shows the email's or the forum's; None: no notice there.
    web_notice: Text | None = None

    @property
    def issue_id(self) -> str:
        """Identifies the issue in the send ledger and SES tags: its date, e.g. 2023-10-16."""
        return self.date.isoformat()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for `newsletter check --json`)."""
        data = dataclasses.asdict(self)
        data["date"] = self.date.isoformat()
        data["issue_id"] = self.issue_id
        return data


# Which email a reader gets: `bilingual` (Korean with the English originals, the default), `ko`
# (the Korean parts; each paper links its English original on the web page) or `en` (the English
# parts, and the email's own words in English). The web page and the archive stay bilingual.
EDITIONS = ("bilingual", "ko", "en")
DEFAULT_EDITION = "bilingual"


# The rendered HTML and text carry this marker where each recipient's own unsubscribe URL goes;
# compose substitutes it per message, so an issue is rendered once, never per recipient.
UNSUBSCRIBE_URL_PLACEHOLDER = "https://unsubscribe.invalid/__NEWSLETTER_UNSUBSCRIBE_URL__"


# Where each recipient's own preferences link goes (the footer), substituted like the above.
PREFERENCES_URL_PLACEHOLDER = "https://preferences.invalid/__NEWSLETTER_PREFERENCES_URL__"


@dataclass(frozen=True)
class RenderedIssue:
    issue_id: str
    subject: str
    preheader: str
    html: str  # the email's HTML, CSS inlined, with UNSUBSCRIBE_URL_PLACEHOLDER in it
    text: str  # the plain-text part, with UNSUBSCRIBE_URL_PLACEHOLDER in it
    web_html: str  # the standalone archive page (bilingual whatever the email's edition)
    mjml: str  # the intermediate MJML, kept for debugging templates
    timings: dict[str, float] = field(default_factory=dict, compare=False)  # seconds per stage
    edition: str = DEFAULT_EDITION  # which edition of the email `html` and `text` are (one of EDITIONS)


# A subscriber's status; only "subscribed" is ever selected for a send.
SUBSCRIBER_STATUSES = ("subscribed", "unsubscribed", "bounced", "complained")
# Among opt-outs the stronger stays, whoever writes it (an event, an import, an editor's
# unsubscribe): each means "do not mail". Only an editor's explicit resubscribe lifts one.
STATUS_STRENGTH = {"subscribed": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}


def weakens(status: str, held: str) -> bool:
    """Whether giving `status` to a subscriber who holds `held` would weaken an opt-out."""
    return status != "subscribed" and STATUS_STRENGTH[status] < STATUS_STRENGTH[held]


@dataclass(frozen=True)
class Subscriber:
    """One address on the list, as the store keeps it (`newsletter.store`)."""

    address: str  # normalised by email-validator; unique without regard to case
    name: str | None = None
    status: str = "subscribed"  # one of SUBSCRIBER_STATUSES
    source: str = ""  # where they came from: "import:FILE.csv", "cli", ...
    joined_at: dt.datetime | None = None  # UTC
    changed_at: dt.datetime | None = None  # UTC, last edit of any kind (status, name)
    reason: str | None = None  # why the status last changed (why they left)
    # UTC: when the event that set the status happened (its own time, not when it was applied);
    # None for a subscription the editor added. Status changes are ordered by it.
    status_at: dt.datetime | None = None
    resubscribed_at: dt.datetime | None = None  # UTC: the editor's last explicit resubscribe
    edition: str = DEFAULT_EDITION  # one of EDITIONS
    # UTC: when the choice that set the edition was made (the reader's on the preferences page or
    # the subscribe form, or an editor's edit); None while it is the default nobody chose.
    # Edition changes are ordered by it, apart from status changes (newsletter.events.apply).
    edition_at: dt.datetime | None = None


# A send-ledger row's state. A row is `sending` only while its one network call is in flight, so a
# row found `sending` when no run holds the issue was cut off by a crash and may have been
# delivered: it becomes `unknown`, never `pending` again unless the editor asks. `skipped`: the
# address left the list after it was queued for this issue.
DELIVERY_STATES = ("pending", "sending", "sent", "failed", "unknown", "skipped")


@dataclass(frozen=True)
class Delivery:
    """One (issue, recipient) row of the send ledger (`newsletter.store.ledger`)."""

    id: int
    issue_id: str
    address: str
    state: str  # one of DELIVERY_STATES
    attempts: int = 0  # network calls made for it, over every run
    message_id: str | None = None  # the provider's id once sent
    error_kind: str | None = None  # the last error's class: RecipientRejectedError, ...
    error_code: str | None = None  # the provider's code: MessageRejected, 550, ...
    error: str | None = None  # the provider's message
    enqueued_at: dt.datetime | None = None  # UTC
    started_at: dt.datetime | None = None  # UTC: when the rate limiter let its last call go
    finished_at: dt.datetime | None = None  # UTC: when the last call's outcome was recorded
    name: str | None = None  # the subscriber's name (for the To: line), when still on the list
    # The edition the row is sent: the reader's when the row was queued (the send began, or a
    # resume queued them), kept through any resume, whatever they choose meanwhile.
    edition: str = DEFAULT_EDITION


@dataclass(frozen=True)
class PublishedPaper:
    """A paper as the archive keeps it: what its index line, tag pages and search record need,
    so that publishing one week rebuilds them for every week without the other weeks' files."""

    slug: str  # its anchor on the week's page ("" for a week published before papers were kept)
    title_ko: str | None
    title_en: str | None
    tags: tuple[str, ...] = ()
    text: str = ""  # what search finds it by: summary and abstract, both languages, as plain text

    @property
    def title(self) -> str:
        return self.title_ko or self.title_en or ""


@dataclass(frozen=True)
class PublishedIssue:
    """One issue in the archive's index (`newsletter.store.published`): what the index page, the
    tag pages, the search index and the feed show of it, without parsing its file again."""

    issue_id: str  # the issue's date, ISO 8601: its page is <issue_id>.web.html
    title: str
    summary: str  # the feed entry's summary: the preheader
    papers: tuple[PublishedPaper, ...]
    page_sha256: str  # of the page as published: a send checks it against the issue it sends
    first_published_at: dt.datetime  # UTC
    updated_at: dt.datetime  # UTC, when the published page last changed
    published_to: str  # where: the folder, and the s3:// URL if uploaded

    @property
    def page_name(self) -> str:
        return f"{self.issue_id}.web.html"

    @property
    def date(self) -> dt.date:
        return dt.date.fromisoformat(self.issue_id)


def clean_tag(tag: str) -> str:
    """A tag as written, without its "#", invisible characters (control and format characters
    such as a zero-width space) or runs of spaces: what the parser keeps."""
    visible = "".join(c for c in tag if unicodedata.category(c) not in ("Cc", "Cf"))
    return " ".join(visible.split()).strip("#").strip()


def tag_key(tag: str) -> str:
    """What makes two spellings one tag: "#RAG" and "rag" are the same tag, and so are a
    composed and a decomposed Hangul spelling."""
    return unicodedata.normalize("NFKC", clean_tag(tag)).casefold()


_TAG_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")


def tag_slug(tag: str) -> str:
    """The stable file name (without .html) of a tag's page: the tag itself when it is already a
    plain lowercase ASCII slug ("rag", "chain-of-thought"), else its ASCII part and a short digest
    of the tag ("llm-agents-1b2c3d4e", "tag-5d41402a" for a Korean tag). Only [a-z0-9-] ever
    reaches a file name or URL, so no tag can name a path outside the tags folder."""
    key = tag_key(tag)
    ascii_part = _TAG_SLUG_UNSAFE.sub("-", key).strip("-")[:40].rstrip("-")
    if ascii_part == key:
        return key
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    return f"{ascii_part or 'tag'}-{digest}"
