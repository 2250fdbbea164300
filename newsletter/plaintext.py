"""The plain-text part, built from the parsed issue (not scraped from the HTML).

The edition's language(s) (it gets the edition's view of the issue, `newsletter.editions`), every
link written out as its URL, lines wrapped at 76 display columns without ever
breaking a URL (a URL longer than a line gets a line of its own).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from functools import lru_cache

from . import labels, markup
from .config import Config
from .model import (
    DEFAULT_EDITION,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Bilingual,
    Issue,
    Link,
    Paper,
    Text,
)
from .textwidth import SECOND_COLUMN, widened

WIDTH = 76
RULE = "=" * WIDTH
THIN_RULE = "-" * WIDTH
_LIST_ITEM = re.compile(r"\s*(?:• |\d+\. )")


def wrap(paragraph: str, indent: str = "", hanging: str | None = None) -> str:
    """One paragraph wrapped at WIDTH display columns; lines already broken by the text (list
    items, hard breaks) are kept and each wrapped on its own. textwrap counts characters, which
    lets a Korean line run to twice the width, so the greedy fill is done here by columns. Words
    are never broken, so a URL longer than a line stands alone on its line."""
    hanging = indent if hanging is None else hanging
    lines = (_fill(widened(" ".join(line.split())), indent, hanging) if line.strip() else ""
             for line in paragraph.split("\n"))
    return "\n".join(lines).replace(SECOND_COLUMN, "")


def _fill(line: str, indent: str, hanging: str) -> str:
    """Greedy fill of one line of words (single spaces, widened: a character is a column), a slice
    per output line rather than a step per word. `indent` and `hanging` are spaces."""
    lines: list[str] = []
    prefix, start, end = indent, 0, len(line)
    while True:
        room = WIDTH - len(prefix)
        if end - start <= room:
            lines.append(prefix + line[start:])
            return "\n".join(lines)
        cut = line.rfind(" ", start, start + room + 1)
        if cut < 0:  # the first word is longer than the line: it stands alone
            cut = line.find(" ", start)
            if cut < 0:
                lines.append(prefix + line[start:])
                return "\n".join(lines)
        lines.append(prefix + line[start:cut])
        prefix, start = hanging, cut + 1


def _wrap_block(block: str, indent: str = "") -> str:
    """A block from markup.to_plain: each list item wraps under its own text, not its bullet."""
    lines = []
    for line in block.split("\n"):
        item = _LIST_ITEM.match(line)
        hanging = " " * len(item.group(0)) if item else ""
        lines.append(wrap(line, indent, indent + hanging))
    return "\n".join(lines)


@lru_cache(maxsize=1024)
def _text(text: Text, indent: str = "") -> str:
    """A passage wrapped, kept like its HTML (`markup.rendered`): a render after an edit wraps
    only the passages that changed."""
    plain = labels.emojize(markup.to_plain(text))
    return "\n\n".join(_wrap_block(block, indent) for block in plain.split("\n\n"))


def _passages(items: Iterable[Bilingual]) -> list[str]:
    out = []
    for passage in items:
        if passage.ko:
            out.append(_text(passage.ko))
        if passage.en and passage.ko:
            # Marked and indented, so a reader skimming the Korean can skip the original.
            out.append("[English]\n" + _text(passage.en, indent="  "))
        elif passage.en:
            out.append(_text(passage.en))
    return out


def _links(links: Iterable[Link], edition: str, *, paper: bool = False) -> str:
    return "\n".join(f"- {labels.link_label(link, paper=paper, edition=edition)}:\n  {link.url}" for link in links)


@lru_cache(maxsize=256)
def _paper(number: int, paper: Paper, edition: str, original: str | None) -> str:
    """A paper as a pager shows it: the summary, then its links while they are in view, then
    the abstract, which a reader skimming the week pages past. `original`: where the ko edition
    sends a reader for the English it leaves out."""
    say = functools.partial(labels.say, edition=edition)
    parts = [wrap(f"{number}. {labels.emojize(paper.title)}", hanging="   ")]
    if paper.title_ko and paper.title_en and edition == DEFAULT_EDITION:
        parts[0] += "\n" + wrap(labels.emojize(paper.title_en), indent="   ")
    if paper.summary:
        parts += [f"[{say('논문 소개', 'Summary')}]", *_passages(paper.summary)]
    if paper.links:
        parts += [f"[{say('논문 링크', 'Paper')}]\n" + _links(paper.links, edition, paper=True)]
    if paper.read_more:
        parts += [f"[{say('더 읽어보기', 'Read more')}]\n" + _links(paper.read_more, edition)]
    if original:
        parts += ["[영어 원문]\n" + original]
    if paper.abstract:
        parts += [f"[{say('논문 초록', 'Abstract')}]", *_passages(paper.abstract)]
    if paper.tags:
        parts.append(wrap(say("태그", "Tags") + ": " + " ".join(f"#{tag}" for tag in paper.tags)))
    return "\n\n".join(parts)


def render_text(issue: Issue, config: Config, *, web_url: str, edition: str = DEFAULT_EDITION,
                english_originals: frozenset[str] = frozenset()) -> str:
    """The text part. It opens with the issue's name and week, not the preheader: the inbox
    has just shown that. It keeps every abstract and English original in place, where the HTML
    folds them or links to the web page: a reader in a terminal pager (neomutt, mutt) pages with
    Space and searches with /, while following a link means leaving the pager for a URL picker
    and a browser. The order is the email's: contents, notice, papers, then the introduction."""
    say = functools.partial(labels.say, edition=edition)
    headline = labels.headline(issue)
    heading = [wrap(part) for part in headline if part]
    if not labels.title_is_the_name(issue, config.name):
        heading.insert(0, wrap(config.name))
    sections = [
        "\n".join([*heading, labels.dateline(issue)]),
        say("웹에서 보기", "View on the web") + ":\n" + web_url,
    ]
    contents = "\n".join(wrap(f"{number}. {labels.contents_title(paper)}", hanging="   ")
                         for number, paper in enumerate(issue.papers, start=1))
    sections.append(say("이번 주의 논문", "In this issue") + "\n\n" + contents)
    notice = issue.email_notice or issue.notice
    if notice:
        sections.append(_text(notice))
    for number, paper in enumerate(issue.papers, start=1):
        original = f"{web_url}#{paper.slug}" if paper.slug in english_originals else None
        sections.append(RULE + "\n\n" + _paper(number, paper, edition, original))
    if issue.intro:
        sections.append("\n\n".join([RULE, say("소개", "Introduction"), *_passages(issue.intro)]))
    sections.append(
        THIN_RULE
        + "\n\n"
        + "\n\n".join([
            wrap(say("이 메일은 뉴스레터를 구독하신 분께 보내 드립니다.",
                     "You are receiving this because you subscribed to this newsletter.").replace(" · ", " ")),
            say("받아 볼 메일 설정", "Preferences") + ":\n" + PREFERENCES_URL_PLACEHOLDER,
            say("수신 거부", "Unsubscribe") + ":\n" + UNSUBSCRIBE_URL_PLACEHOLDER,
            say("구독하기", "Subscribe") + ":\n" + (config.subscribe_url or config.web_base_url + "#subscribe"),
            say("지난 호", "Archive") + ":\n" + config.web_base_url,
            wrap(config.name) + "\n" + wrap(config.postal_address),
        ])
    )
    return "\n\n".join(sections) + "\n"
