"""The archive's files, built from data: each issue's page, the index page, the tag pages and the
Atom feed (the search index is built from the same data in `search.py`).

Nothing here reads or writes files or the database; `publishing.py` does. Every file is built the
same way from the same data, byte for byte (no build time in it), so a target can skip what did
not change.

The site's root is `newsletter.web_base_url`: an issue's page is `<date>.web.html` there, exactly
where the email's "View on the web" link points (`render.web_url`). `is_site_file` is the one
list of what the site generates: a target uploads those and nothing else it finds in the folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jinja2

from .. import markup
from ..config import Config, PublishSettings
from ..errors import TemplateError
from ..model import Issue, Paper, PublishedIssue, PublishedPaper, RenderedIssue, tag_key, tag_slug
from ..labels import archive_title, preheader
from ..render import template_environment

INDEX_PAGE = "index.html"
FEED = "feed.xml"
TAGS_FOLDER = "tags"
TAG_INDEX = f"{TAGS_FOLDER}/index.html"
SEARCH_FOLDER = "pagefind"
INDEX_TEMPLATE = "index.html.j2"
TAG_TEMPLATE = "tag.html.j2"
TAG_INDEX_TEMPLATE = "tags.html.j2"
FEED_CONTENT_TEMPLATE = "feed_entry.html.j2"

# What the site generates, and nothing else: an issue's page, the index, the feed, the tag pages
# and Pagefind's bundle. A target uploads only these from the folder (an outbox's .eml files or a
# manifest.csv kept beside them stay private).
_ISSUE_PAGE = re.compile(r"\d{4}-\d{2}-\d{2}\.web\.html")
_TAG_PAGE = re.compile(re.escape(TAGS_FOLDER) + r"/[a-z0-9-]+\.html")
_SEARCH_FILE = re.compile(re.escape(SEARCH_FOLDER) + r"/(?:\w[\w.-]*/)?\w[\w.-]*")  # no dot files (a temp file)
# Pagefind names these by their content, so a name never changes meaning: a long cache is right.
_SEARCH_CONTENT_NAMED = re.compile(re.escape(SEARCH_FOLDER) + r"/(?:fragment/.*|index/.*|[^/]*\.pf_meta)")

ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# Characters XML 1.0 cannot hold at all (ElementTree writes them as they are, and every feed
# reader then refuses the whole feed).
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TEXT_TYPES = {"application/atom+xml", "application/xml", "application/json", "image/svg+xml"}


def is_site_file(path: str) -> bool:
    """Whether `path` (relative, "/"-separated) is a file the site generates."""
    return (path in (INDEX_PAGE, FEED) or bool(_ISSUE_PAGE.fullmatch(path) or _TAG_PAGE.fullmatch(path)
                                               or _SEARCH_FILE.fullmatch(path)))


def is_listing(path: str) -> bool:
    """Files that change with every issue under the same name (the index, the feed, tag pages,
    Pagefind's entry file and scripts): a short cache, so readers see a new issue soon."""
    return path in (INDEX_PAGE, FEED) or path.startswith(f"{TAGS_FOLDER}/") or (
        path.startswith(f"{SEARCH_FOLDER}/") and not _SEARCH_CONTENT_NAMED.fullmatch(path))


def upload_rank(path: str) -> int:
    """Files go up in this order, so nothing ever links to a file not there yet: Pagefind's
    fragments before the index chunks that name them, those before the meta file, the pages, the
    search entry file and scripts, the tag pages, and the index and the feed last."""
    if path.startswith(f"{SEARCH_FOLDER}/fragment/"):
        return 0
    if path.startswith(f"{SEARCH_FOLDER}/index/"):
        return 1
    if _SEARCH_CONTENT_NAMED.fullmatch(path):
        return 2
    if path.startswith(f"{SEARCH_FOLDER}/"):
        return 4
    if path.startswith(f"{TAGS_FOLDER}/"):
        return 5
    if path in (INDEX_PAGE, FEED):
        return 6
    return 3


@dataclass(frozen=True)
class SiteFile:
    path: str  # relative to the site's root, "/"-separated
    body: bytes


def content_type(path: str) -> str:
    """The Content-Type a file is served with; text types say their charset (every file here is
    UTF-8), or a browser may guess another one for Korean text."""
    if path == FEED:
        kind = "application/atom+xml"
    else:
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind in _TEXT_TYPES else kind


def cache_control(path: str, settings: PublishSettings) -> str:
    seconds = settings.listing_cache_seconds if is_listing(path) else settings.page_cache_seconds
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
        papers=tuple(published_paper(paper) for paper in issue.papers),
        page_sha256=digest,
        first_published_at=first_published_at,
        updated_at=updated_at,
        published_to=published_to,
    )


_URL = re.compile(r"\bhttps?://\S+")


def published_paper(paper: Paper) -> PublishedPaper:
    """What the archive keeps of a paper; its text is what a reader may search for (summary and
    abstract in both languages, links left out: their words are not the paper's)."""
    passages = [text for passage in paper.summary + paper.abstract for text in (passage.ko, passage.en) if text]
    text = " ".join(" ".join(_URL.sub(" ", markup.to_plain(passage)).split()) for passage in passages)
    return PublishedPaper(paper.slug, paper.title_ko, paper.title_en, paper.tags, text)


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


class AppPages:
    """One family of the web app's pages (subscribe, preferences), rendered from `template` with
    what every page of it shows. `respond` and `read_form` are the web app's, so headers, body
    limits and form parsing live in one place (`newsletter.web`)."""

    template = ""

    def __init__(self, config: Config, respond: Callable, read_form: Callable, **shared: Any):
        self.respond = respond  # (start_response, status, page bytes, extra headers, method) -> body
        self.read_form = read_form  # (environ, max bytes) -> fields, or None for a bad body
        self.context = {"config": config, "archive_url": site_url(config, INDEX_PAGE).removesuffix(INDEX_PAGE),
                        **shared}

    def render(self, **values: Any) -> bytes:
        return render_site_template(self.template, {**self.context, **values}).encode("utf-8")


_NAMES_ITS_WEEK = re.compile(r"\d{4}[/.-]\d")


def week_label(entry: PublishedIssue) -> str:
    """How a search result or tag page names a paper's issue: its title when that already says
    the week (the index names an issue by its week when its title only repeats the newsletter's
    name), else the issue's date and title."""
    return entry.title if _NAMES_ITS_WEEK.match(entry.title) else f"{entry.issue_id} · {entry.title}"


def newest_first(entries: Iterable[PublishedIssue]) -> list[PublishedIssue]:
    return sorted(entries, key=lambda entry: entry.issue_id, reverse=True)


def index_page(entries: list[PublishedIssue], config: Config) -> SiteFile:
    """The archive's front page: the search box, every issue newest first with each paper's title
    linked to its anchor, and the subscribe form."""
    html = render_site_template(INDEX_TEMPLATE, {
        "config": config,
        "entries": newest_first(entries),
        "feed": FEED,
        "tag_index": TAG_INDEX,
        "search_script": f"{SEARCH_FOLDER}/pagefind.js",
        "subscribe_url": config.subscribe.url if config.subscribe else None,
    })
    return SiteFile(INDEX_PAGE, html.encode("utf-8"))


@dataclass(frozen=True)
class TaggedPaper:
    entry: PublishedIssue
    paper: PublishedPaper


@dataclass(frozen=True)
class Tag:
    name: str  # as the newest paper with it spells it
    slug: str  # its page is tags/<slug>.html
    papers: tuple[TaggedPaper, ...]  # newest week first, in page order within a week

    @property
    def path(self) -> str:
        return f"{TAGS_FOLDER}/{self.slug}.html"


def tags_of(entries: Iterable[PublishedIssue]) -> list[Tag]:
    """Every tag on a published paper, by name; spellings that differ only in case or Unicode
    form are one tag."""
    grouped: dict[str, list[TaggedPaper]] = {}
    spelling: dict[str, str] = {}
    for entry in newest_first(entries):
        for paper in entry.papers:
            for tag in paper.tags:
                key = tag_key(tag)
                if not key:
                    continue
                spelling.setdefault(key, tag)
                papers = grouped.setdefault(key, [])
                if not papers or papers[-1].paper is not paper:
                    papers.append(TaggedPaper(entry, paper))
    tags = [Tag(spelling[key], tag_slug(key), tuple(papers)) for key, papers in grouped.items()]
    return sorted(tags, key=lambda tag: tag_key(tag.name))


def tag_pages(entries: list[PublishedIssue], config: Config) -> list[SiteFile]:
    """A page per tag listing its papers, newest first, each linked to its anchor; and
    tags/index.html listing every tag."""
    tags = tags_of(entries)
    files = [SiteFile(TAG_INDEX, render_site_template(TAG_INDEX_TEMPLATE, {"config": config, "tags": tags})
                      .encode("utf-8"))]
    for tag in tags:
        html = render_site_template(TAG_TEMPLATE, {"config": config, "tag": tag, "feed": FEED, "week_label": week_label})
        files.append(SiteFile(tag.path, html.encode("utf-8")))
    return files


def _updated(entry: PublishedIssue) -> dt.datetime:
    # Never before `published`: a week published ahead of its date was not changed before it.
    return max(entry.updated_at, issue_time(entry))


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def issue_time(entry: PublishedIssue) -> dt.datetime:
    """When an issue counts as published in the feed: the start (UTC) of the day it is dated,
    not the moment `publish` ran (a week published late, or the archive rebuilt, keeps its date)."""
    return dt.datetime.combine(entry.date, dt.time(), tzinfo=dt.UTC)


def atom_feed(entries: list[PublishedIssue], config: Config) -> SiteFile:
    """Atom 1.0 (RFC 4287): one entry per issue, newest first: published is the issue's date,
    updated its page's last change; the summary is the preheader, the content lists its papers
    linked to their anchors, and each tag is a category.

    Weeks, not papers, are the entries: a reader follows a weekly digest to hear of each issue
    once, as the email does; ten entries a week, all of the same date and linking into one page,
    would bury that (and the content's links reach each paper in one tap)."""
    ordered = newest_first(entries)
    ET.register_namespace("", ATOM_NS)

    def add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attributes)
        element.text = _XML_UNSAFE.sub("", text) if text else text
        return element

    feed = ET.Element(f"{{{ATOM_NS}}}feed", {XML_LANG: "ko"})
    add(feed, "id", site_url(config))
    add(feed, "title", config.name)
    add(feed, "updated", _time(max((_updated(e) for e in ordered), default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))))
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
        add(item, "published", _time(issue_time(entry)))
        add(item, "updated", _time(_updated(entry)))
        add(item, "summary", entry.summary, type="text")
        if any(paper.slug for paper in entry.papers):
            add(item, "content", render_site_template(FEED_CONTENT_TEMPLATE, {
                "entry": entry, "page_url": site_url(config, entry.page_name)}).strip(), type="html")
        for key, tag in {tag_key(t): t for paper in entry.papers for t in paper.tags if tag_key(t)}.items():
            add(item, "category", term=_XML_UNSAFE.sub("", tag), scheme=site_url(config, f"{TAGS_FOLDER}/"),
                label=_XML_UNSAFE.sub("", tag))
    ET.indent(feed)
    return SiteFile(FEED, ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n")
