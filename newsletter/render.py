"""Issue + Config -> RenderedIssue: the email's HTML, its plain-text part and the web page.

The email goes Jinja2 (autoescaped) -> MJML -> mjml2html -> css_inline. Only the rules in the
templates' `inline.css` are inlined; every `<style>` in the compiled HTML (MJML's own, `head.css`,
`fold.css` with the :checked rules that fold the abstracts and English originals, `dark.css`)
stays in `<head>` untouched: inlined, a :checked rule would fold or unfold for good.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import as_file, files
from pathlib import Path
from urllib.parse import urljoin

import css_inline
import jinja2
import mjml
from markupsafe import Markup, escape

from . import editions, labels, markup
from .completeness import check_complete
from .config import Config
from .errors import ParseError, TemplateError
from .model import (
    DEFAULT_EDITION,
    EDITIONS,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Bilingual,
    Issue,
    RenderedIssue,
    Text,
    tag_slug,
)
from .plaintext import render_text

EMAIL_TEMPLATE = "email.mjml.j2"
WEB_TEMPLATE = "web.html.j2"
INLINE_CSS = "inline.css"

# Gmail hides the rest of a message behind "[Message clipped]" once its HTML passes about 102 KB,
# counted on the raw (transfer-encoded) source.
GMAIL_CLIP_BYTES = 102 * 1024
# `build` warns from here: the clipping point is approximate (reported between 100 and 102 KB, with
# or without the part's headers), so an issue this close may already be clipped for some readers.
CLIP_WARNING_BYTES = 100_000

# After the preheader: inbox previews show up to about 140 characters, and without padding they
# run on into the first words of the body. Zero-width non-joiners keep the no-break spaces from
# being collapsed into one.
PREVIEW_CHARACTERS = 150
PREHEADER_PAD = "\u200c\u00a0"


def preheader_padding(preheader: str) -> str:
    return PREHEADER_PAD * max(0, (PREVIEW_CHARACTERS - len(preheader)) // len(PREHEADER_PAD))

_LEFTOVER_MJML_TAG = re.compile(r"</?mj-[a-z-]*", re.IGNORECASE)
_IMAGE_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_SPACE_RUN = re.compile(r"\s+")
# Spaces CSS does not need: around braces, semicolons, commas and ~, after a declaration's colon
# (": " never occurs in a selector here), before !important.
_CSS_STRING = re.compile(r"(\"[^\"]*\"|'[^']*')")
_CSS_SPACE = re.compile(r"\s*([{};,~])\s*|(?<=:)\s+|\s+(?=!important)")
# A rule's selectors: what stands before a "{" and after the previous rule's "}".
_CSS_SELECTORS = re.compile(r"(?:^|\})([^{}]+)\{")


@dataclass(frozen=True)
class RenderSizes:
    html_bytes: int  # the email's HTML as UTF-8
    encoded_html_bytes: int  # the same, base64-encoded as it is sent (what Gmail measures)
    text_content_bytes: int  # the words a reader sees in the HTML (tags and <head> left out)
    text_part_bytes: int  # the plain-text part as UTF-8

    @property
    def markup_ratio(self) -> float:
        """HTML bytes per byte of visible text: how much of the message is markup."""
        return self.html_bytes / self.text_content_bytes if self.text_content_bytes else float("inf")

    @property
    def clipped_by_gmail(self) -> bool:
        return self.encoded_html_bytes > GMAIL_CLIP_BYTES

    @property
    def near_gmail_clip(self) -> bool:
        """At or past CLIP_WARNING_BYTES: over the clip, or close enough that it may be clipped."""
        return self.encoded_html_bytes >= CLIP_WARNING_BYTES


def base64_size(byte_count: int) -> int:
    """Bytes of a base64 MIME body for `byte_count` bytes: 4 per 3, in lines of 76 plus CRLF."""
    encoded = 4 * -(-byte_count // 3)
    return encoded + 2 * -(-encoded // 76)


def measure(rendered: RenderedIssue) -> RenderSizes:
    html_bytes = rendered.html.encode("utf-8")
    body = rendered.html.split("<body", 1)[-1]
    visible = _SPACE_RUN.sub(" ", _TAG.sub(" ", _HTML_COMMENT.sub("", body)))
    return RenderSizes(
        html_bytes=len(html_bytes),
        encoded_html_bytes=base64_size(len(html_bytes)),
        text_content_bytes=len(visible.strip().encode("utf-8")),
        text_part_bytes=len(rendered.text.encode("utf-8")),
    )


def write_outputs(rendered: RenderedIssue, output_dir: str | Path) -> list[Path]:
    """`newsletter build`'s files: <date>.html, .txt, .mjml and .web.html in `output_dir`; for an
    edition other than the bilingual, <date>.EDITION.html, .txt and .mjml (the web page is the
    bilingual's)."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    edition = "" if rendered.edition == DEFAULT_EDITION else f".{rendered.edition}"
    contents = {
        f"{edition}.html": rendered.html,
        f"{edition}.txt": rendered.text,
        f"{edition}.mjml": rendered.mjml,
    }
    if not edition:
        contents[".web.html"] = rendered.web_html
    written = []
    for suffix, content in contents.items():
        path = folder / f"{rendered.issue_id}{suffix}"
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def web_url(issue: Issue, config: Config) -> str:
    """Where the archive page of `issue` is published: the build's <date>.web.html uploaded as it
    is to web_base_url, so no file needs renaming between build and publish."""
    base = config.web_base_url if config.web_base_url.endswith("/") else config.web_base_url + "/"
    return urljoin(base, f"{issue.issue_id}.web.html")


def bundled_templates_dir() -> Path:
    """The templates that ship in the wheel (templates/email/ in a checkout). Wheels install
    unzipped, so this is a real folder that Jinja2 and the preview's file watcher can use."""
    return _bundled_dir("email")


def _bundled_dir(name: str) -> Path:
    with as_file(files("newsletter.bundled_templates") / name) as path:
        return Path(path)


def check_links(issue: Issue) -> None:
    """The parser refuses javascript:, data: and other schemes; an Issue built by hand is held to
    the same rule before its links become href attributes."""
    for paper in issue.papers:
        for link in paper.links + paper.read_more:
            problem = markup.link_problem(link.url)
            if problem:
                raise ParseError(issue.path or "<issue>", paper.line, problem)


def render_editions(issue: Issue, config: Config, templates_dir: str | Path | None = None) -> dict[str, RenderedIssue]:
    """Every edition of the email (EDITIONS, in that order), each rendered once, and the web page
    once (it stays bilingual): what a send gives its readers, each theirs."""
    check_links(issue)
    env = template_environment(Path(templates_dir) if templates_dir else bundled_templates_dir())
    bilingual = _render(issue, config, env, DEFAULT_EDITION)
    return {DEFAULT_EDITION: bilingual, **{
        edition: _render(issue, config, env, edition, web_html=bilingual.web_html)
        for edition in EDITIONS if edition != DEFAULT_EDITION}}


def render_issue(issue: Issue, config: Config, templates_dir: str | Path | None = None) -> RenderedIssue:
    """Render `issue` (the bilingual email and the web page) with the bundled templates or those
    in `templates_dir`. Raises TemplateError for a template that cannot make a valid email,
    ParseError for a link with a bad scheme."""
    check_links(issue)
    env = template_environment(Path(templates_dir) if templates_dir else bundled_templates_dir())
    return _render(issue, config, env, DEFAULT_EDITION)


def _render(issue: Issue, config: Config, env: jinja2.Environment, edition: str, *,
            web_html: str | None = None) -> RenderedIssue:
    """The email in `edition` (its view of the issue: `newsletter.editions`), its text part, and
    the web page, which is always the bilingual issue's: rendered in the bilingual pass
    (`web_html` None), given to the others."""
    shown, words_config = editions.view(issue, edition), editions.config_for(config, edition)
    subject = labels.subject(shown, edition)
    preheader = labels.preheader(shown, edition)
    context = {
        "issue": shown,
        "config": words_config,
        "edition": edition,
        "both": functools.partial(both, edition=edition),
        "english_originals": editions.english_originals(issue) if edition == "ko" else frozenset(),
        "subject": subject,
        "preheader": preheader,
        "preheader_padding": preheader_padding(preheader),
        "headline": labels.headline(shown),
        "dateline": labels.dateline(shown),
        "show_brand": not labels.title_is_the_name(shown, words_config.name),
        "notice": shown.email_notice or shown.notice,
        "web_url": web_url(issue, config),
        "archive_url": config.web_base_url,
        "subscribe_url": config.subscribe_url or config.web_base_url + "#subscribe",
        "unsubscribe_url": UNSUBSCRIBE_URL_PLACEHOLDER,
        "preferences_url": PREFERENCES_URL_PLACEHOLDER,
    }
    timings: dict[str, float] = {}

    started = time.perf_counter()
    mjml_source = _render_template(env, EMAIL_TEMPLATE, context)
    timings["jinja"] = time.perf_counter() - started

    started = time.perf_counter()
    compiled = compile_mjml(mjml_source)
    timings["mjml"] = time.perf_counter() - started

    started = time.perf_counter()
    html = inline_css(compiled, _template_source(env, INLINE_CSS))
    timings["inline"] = time.perf_counter() - started
    check_complete(shown, html, EMAIL_TEMPLATE)

    if web_html is None:
        if edition != DEFAULT_EDITION:
            raise ValueError("the web page is rendered with the bilingual email, whose context it shares")
        started = time.perf_counter()
        web_html = _render_template(env, WEB_TEMPLATE, _web_context(issue, context))
        timings["web"] = time.perf_counter() - started

    started = time.perf_counter()
    text = render_text(shown, words_config, web_url=context["web_url"], edition=edition,
                       english_originals=context["english_originals"])
    timings["text"] = time.perf_counter() - started

    return RenderedIssue(
        issue_id=issue.issue_id,
        subject=subject,
        preheader=preheader,
        html=html,
        text=text,
        web_html=web_html,
        mjml=mjml_source,
        timings=timings,
        edition=edition,
    )


def _web_context(issue: Issue, email_context: dict) -> dict:
    """The web page's: the bilingual email's context (the issue as written, its labels in both
    languages), and what only the page shows."""
    return {
        **email_context,
        "page_title": f"{' · '.join(part for part in email_context['headline'] if part)} · {email_context['dateline']}",
        "web_notice": issue.web_notice,
        # Each tag links to its page (the email keeps tags as text), beside the issue's page.
        "tags_url": urljoin(email_context["web_url"], "tags/"),
    }


@lru_cache(maxsize=8)
def template_environment(templates_dir: Path) -> jinja2.Environment:
    """One environment per folder, kept so templates compile once; auto_reload still picks up an
    edited template (the preview server relies on that)."""
    if not templates_dir.is_dir():
        raise TemplateError(f"templates folder not found: {templates_dir}")
    env = jinja2.Environment(
        # "site/..." names the archive's own partials (templates/site/), which the web page
        # includes: the search form on each issue page belongs to the archive.
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(templates_dir), jinja2.PrefixLoader(
            {"site": jinja2.FileSystemLoader(_bundled_dir("site"))})]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=True,
    )
    env.filters["html"] = _markdown_html
    env.filters["link_label"] = labels.link_label
    env.filters["emoji"] = labels.emojize
    env.filters["short_title"] = labels.short_title
    env.filters["paper_name"] = labels.paper_name
    env.filters["has_hangul"] = labels.has_hangul
    env.filters["say"] = labels.say
    env.filters["compact_css"] = compact_css
    env.filters["tag_slug"] = tag_slug
    env.globals["both"] = both
    env.globals["originals"] = originals
    return env


def originals(passages: tuple[Bilingual, ...]) -> list[Text]:
    """The English originals of the passages that have Korean beside them (what a fold holds)."""
    return [passage.en for passage in passages if passage.ko and passage.en]


@lru_cache(maxsize=256)
def both(korean: str, english: str, edition: str = DEFAULT_EDITION) -> Markup:
    """A label in the two languages, "지난 호 · Archive", the English marked as English; in an
    edition of one language, in that one (the en edition's page is English already)."""
    if edition != DEFAULT_EDITION:
        return Markup(escape(labels.say(korean, english, edition)))
    return Markup(f'{escape(korean)} · <span lang="en">{escape(english)}</span>')


@lru_cache(maxsize=64)
def compact_css(css: str) -> str:
    """CSS without comments or runs of blank space: every byte counts towards Gmail's clip,
    and the templates keep their comments for the editor."""
    parts = _CSS_STRING.split(_SPACE_RUN.sub(" ", _CSS_COMMENT.sub("", css)))
    # Odd parts are quoted strings (content: "…"), kept as written.
    return "".join(part if n % 2 else _CSS_SPACE.sub(r"\1", part).replace(";}", "}")
                   for n, part in enumerate(parts)).strip()


@lru_cache(maxsize=1024)
def _markdown_html(text: Text) -> Markup:
    return Markup(markup.to_html(text))


def _render_template(env: jinja2.Environment, name: str, context: dict) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"{error.filename or error.name}:{error.lineno}: {error.message}") from None
    except jinja2.TemplateNotFound as error:
        raise TemplateError(f"template {error.name!r} not found in {_folder(env)}") from None
    except jinja2.UndefinedError as error:
        raise TemplateError(f"{name}: {error.message}") from None


def _template_source(env: jinja2.Environment, name: str) -> str:
    try:
        source, _, _ = env.loader.get_source(env, name)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name!r} not found in {_folder(env)}") from None
    return source


def _folder(env: jinja2.Environment) -> str:
    return ", ".join(getattr(env.loader, "searchpath", []))


def compile_mjml(source: str) -> str:
    """MJML -> HTML with no web-font link; a template that yields bad MJML is a TemplateError."""
    try:
        html = mjml.mjml2html(source, fonts={})
    except ValueError as error:
        raise TemplateError(f"{EMAIL_TEMPLATE} produced invalid MJML: {error}") from None
    leftover = sorted(set(_LEFTOVER_MJML_TAG.findall(html)))
    if leftover:
        raise TemplateError(
            f"{EMAIL_TEMPLATE} uses MJML tags that mjml does not know: {', '.join(leftover)}"
        )
    missing_alt = _IMAGE_WITHOUT_ALT.search(html)
    if missing_alt:
        raise TemplateError(f"{EMAIL_TEMPLATE}: an image has no alt text: {missing_alt.group(0)[:120]}")
    return html


def inline_css(html: str, css: str) -> str:
    """Inline `css` into style attributes; leave every <style> of the page as it is, in <head>.

    css_inline evaluates each selector against the document as it stands, so a rule that depends
    on a state (`:checked`, `:hover`) would be frozen into a style attribute: `inline.css` may hold
    none (`check_inline_css`), and the <style> blocks are kept, never inlined."""
    return _inliner(css).inline(html).replace("&nbsp;", "\u00a0")


@lru_cache(maxsize=8)
def _inliner(css: str) -> css_inline.CSSInliner:
    check_inline_css(css)
    return css_inline.CSSInliner(
        inline_style_tags=False,
        keep_style_tags=True,
        keep_link_tags=True,
        load_remote_stylesheets=False,
        minify_css=True,  # "a:b;c:d": about 1 KB less than "a: b; c: d;" on the sample
        extra_css=css,
        preallocate_node_capacity=2048,  # the sample has about 1,300 nodes: no regrowing
    )


def check_inline_css(css: str) -> None:
    """Refuse a rule in inline.css whose selector names a pseudo-class or pseudo-element: inlined,
    it would apply (or not) for good, whatever the reader does."""
    for selectors in _CSS_SELECTORS.findall(_CSS_COMMENT.sub("", css)):
        if selectors.strip().startswith("@"):
            raise TemplateError(f"{INLINE_CSS}: {' '.join(selectors.split())!r} cannot be inlined; "
                                "put at-rules in head.css")
        if ":" in selectors:
            raise TemplateError(
                f"{INLINE_CSS}: {' '.join(selectors.split())!r} depends on a state (a pseudo-class); "
                "put it in head.css or fold.css, which stay in <style>"
            )
