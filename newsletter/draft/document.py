"""`ListedPaper`s -> the Markdown of a draft issue, in the format `parse` reads.

Every English part is the list's text as written; every Korean part is a marker (see `markers`).
Only what would change the document's structure is escaped: a title's Markdown punctuation (a
heading's text is read back as plain text, so `\\*` reads back as `*`) and a line of English that
would otherwise start a heading, list or quote inside the blockquote.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from ..config import DraftSettings
from .markers import TO_TRANSLATE, TO_WRITE
from .paperlist import ListedPaper

TITLE_SPECIALS = re.compile(r"([\\`*_\[\]<>#&!~|])")
BLOCK_START = re.compile(r"^(#{1,6}(?=\s|$)|>|[*+-](?=\s|$)|\d{1,9}(?=[.)](\s|$))|[=-]+\s*$|```|~~~)")
TITLES_IN_PREHEADER = 3


def week_end(date: dt.date) -> dt.date:
    return date + dt.timedelta(days=6)


def draft_markdown(date: dt.date, papers: list[ListedPaper], settings: DraftSettings) -> tuple[str, dict[int, int]]:
    """The draft's text, and for each paper's first line in it the list line it came from (to
    name the list's line when the draft does not parse). No papers: a skeleton with one paper."""
    end = week_end(date)
    titles = ", ".join(paper.title for paper in papers[:TITLES_IN_PREHEADER])
    out = ["---", f"title: {_yaml_string(settings.title.format(date=date, end=end))}", f"date: {date.isoformat()}"]
    if papers and settings.preheader:
        preheader = settings.preheader.format(date=date, end=end, titles=titles, count=len(papers))
        out.append(f"preheader: {_yaml_string(preheader)}")
    out += ["---", ""]
    if settings.notice:
        out += [f"> * {' '.join(line.split())}" for line in settings.notice] + [""]
    out += ["## 소개", "", TO_WRITE, ""]
    origins: dict[int, int] = {}
    for paper in papers:
        origins[len(out) + 1] = paper.line
        out += [f"## {TO_TRANSLATE} / {escape_title(paper.title)}", ""]
        out += _passage_section("논문 소개", paper.summary)
        if paper.abstract:
            out += _passage_section("논문 초록", paper.abstract)
        if paper.paper_url:
            out += ["### 논문 링크", "", f"* {paper.paper_url}", ""]
        if paper.read_more_url:
            out += ["### 더 읽어보기", "", f"* {paper.read_more_url}", ""]
    if not papers:  # no list: one paper to copy, so the skeleton parses and previews
        out += [f"## {TO_WRITE}", "", *_passage_section("논문 소개", ""), *_passage_section("논문 초록", "")]
    return "\n".join(out), origins


def escape_title(title: str) -> str:
    return TITLE_SPECIALS.sub(r"\\\1", " ".join(title.split()))


def _passage_section(heading: str, english: str) -> list[str]:
    """A forum-style passage: the Korean marker as a list item holding the English blockquote.
    With no English there is nothing to translate: the Korean is to be written."""
    if not english:
        return [f"### {heading}", "", TO_WRITE, ""]
    quoted = [f"  > {_unstructured(line)}" if line else "  >" for line in english.split("\n")]
    return [f"### {heading}", "", f"* {TO_TRANSLATE}", "", *quoted, ""]


def _unstructured(line: str) -> str:
    """A line of English that cannot start a block of its own inside the quote."""
    match = BLOCK_START.match(line)
    if not match:
        return line
    if match.group(0)[0].isdigit():
        end = len(match.group(0))
        return line[:end] + "\\" + line[end:]
    return "\\" + line


def _yaml_string(text: str) -> str:
    return json.dumps(" ".join(text.split()), ensure_ascii=False)  # a JSON string is a YAML string
