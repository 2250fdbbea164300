"""The archive's files, built from data: each issue's page, the index page and the Atom feed.

Nothing here reads or writes files or the database; `publishing.py` does. Every file is built the
same way from the same data, byte for byte (no build time in it), so a target can skip what did
not change.

The site's root is `newsletter.web_base_url`: an issue's page is `<date>.web.html` there, exactly
where the email's "View on the web" link points (`render.web_url`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from urllib.parse import urljoin

import jinja2

from ..config import Config, PublishSettings
from ..errors import TemplateError
from ..model import Issue, PublishedIssue, RenderedIssue
from ..labels import archive_title, preheader
from ..render import template_environment

INDEX_PAGE = "index.html"
FEED = "feed.xml"
# Files that change with every issue: a short cache, so readers see a new issue soon.
LISTINGS = (INDEX_PAGE, FEED)
INDEX_TEMPLATE = "index.html.j2"
PAPERS_SHOWN = 5  # paper titles listed per issue on the index page

ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# Characters XML 1.0 cannot hold at all (ElementTree writes them as they are, and every feed
# reader then refuses the whole feed).
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TEXT_TYPES = {"application/atom+xml", "application/xml", "application/json", "image/svg+xml"}


@dataclass(frozen=True)
class SiteFile:
    path: str  # relative to the site's root, "/"-separated
    body: bytes

    @property
    def is_listing(self) -> bool:
        return self.path in LISTINGS


def content_type(path: str) -> str:
    """The Content-Type a file is served with; text types say their charset (every file here is
    UTF-8), or a browser may guess another one for Korean text."""
    if path == FEED:
        kind = "application/atom+xml"
    else:
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind in _TEXT_TYPES else kind


def cache_control(path: str, settings: PublishSettings) -> str:
    seconds = settings.listing_cache_seconds if path in LISTINGS else settings.page_cache_seconds
    return f"public, max-age={seconds}"


def site_url(config: Config, path: str = "") -> str:
    """The public URL of a file of the site (its root is newsletter.web_base_url)."""
    base = config.web_base_url if config.web_base_url.endswith("/") else config.web_base_url + "/"
    return urljoin(base, path)


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def issue_page(rendered: RenderedIssue) -> SiteFile:
    return SiteFile(f"{rendered.issue_id}.web.html", rendered.web_html.encode("utf-8"))


def index_entry(
    issue: Issue, page: SiteFile, *, name: str, now: dt.datetime, published_to: str, before: PublishedIssue | None
) -> PublishedIssue:
    """The index's row for `issue`; its first-published time is kept, and its updated time moves
    only when the page itself changed (so a run that changes nothing changes no byte of the feed)."""
    digest = sha256(page.body)
    if before is None:
        first_published_at = updated_at = now
    else:
        first_published_at = before.first_published_at
        # Strictly later when the page changed, even within the clock's resolution: feed readers
        # look for a new `updated` to show an entry again.
        changed_at = max(now, before.updated_at + dt.timedelta(microseconds=1))
        updated_at = before.updated_at if before.page_sha256 == digest else changed_at
    return PublishedIssue(
        issue_id=issue.issue_id,
        title=archive_title(issue, name),
        summary=preheader(issue),
        paper_titles=tuple(paper.title for paper in issue.papers),
        page_sha256=digest,
        first_published_at=first_published_at,
        updated_at=updated_at,
        published_to=published_to,
    )


def bundled_site_templates_dir() -> Path:
    with as_file(files("newsletter.bundled_templates") / "site") as path:
        return Path(path)


def render_site_template(name: str, context: dict, templates_dir: Path | None = None) -> str:
    try:
        # The email's environment (autoescaped, cached per folder) over the site's folder.
        env = template_environment(templates_dir or bundled_site_templates_dir())
        return env.get_template(name).render(context)
    except jinja2.TemplateError as error:
        where = getattr(error, "filename", None) or name
        raise TemplateError(f"site template {where}: {error}") from None


def index_page(entries: list[PublishedIssue], config: Config) -> SiteFile:
    """The archive's front page: every issue, newest first, and the subscribe form."""
    ordered = sorted(entries, key=lambda entry: entry.issue_id, reverse=True)
    html = render_site_template(INDEX_TEMPLATE, {
        "config": config,
        "entries": ordered,
        "papers_shown": PAPERS_SHOWN,
        "feed": FEED,
        "subscribe_url": config.subscribe.url if config.subscribe else None,
    })
    return SiteFile(INDEX_PAGE, html.encode("utf-8"))


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def atom_feed(entries: list[PublishedIssue], config: Config) -> SiteFile:
    """Atom 1.0 (RFC 4287): one entry per issue, newest first, its summary the preheader."""
    ordered = sorted(entries, key=lambda entry: entry.issue_id, reverse=True)
    ET.register_namespace("", ATOM_NS)

    def add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attributes)
        element.text = _XML_UNSAFE.sub("", text) if text else text
        return element

    feed = ET.Element(f"{{{ATOM_NS}}}feed", {XML_LANG: "ko"})
    add(feed, "id", site_url(config))
    add(feed, "title", config.name)
    add(feed, "updated", _time(max((e.updated_at for e in ordered), default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))))
    add(feed, "link", rel="self", type="application/atom+xml", href=site_url(config, FEED))
    add(feed, "link", rel="alternate", type="text/html", href=site_url(config))
    author = add(feed, "author")
    add(author, "name", config.name)
    add(feed, "generator", "newsletter")
    for entry in ordered:
        item = add(feed, "entry")
        add(item, "id", site_url(config, entry.page_name))
        add(item, "title", entry.title)
        add(item, "link", rel="alternate", type="text/html", href=site_url(config, entry.page_name))
        add(item, "published", _time(entry.first_published_at))
        add(item, "updated", _time(entry.updated_at))
        add(item, "summary", entry.summary, type="text")
    ET.indent(feed)
    return SiteFile(FEED, ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n")
