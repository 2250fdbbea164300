"""Issue file (Markdown with YAML front matter) -> `Issue`, or a `ParseError` with a line number.

The format is written down in docs/issue-format.md. The walk goes over markdown-it-py's syntax
tree, not over lines; source lines are only sliced to keep each passage's Markdown as written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from markdown_it.tree import SyntaxTreeNode

from .errors import ParseError
from .markup import link_problem, new_markdown
from .model import Bilingual, Issue, Link, Paper, Text

FRONT_MATTER_KEYS = {  # key -> required
    "title": True,
    "date": True,
    "subject": False,
    "preheader": False,
    "source_url": False,
}

INTRO_HEADINGS = {"소개", "introduction", "intro"}

# Section heading (lower-cased, trailing colon dropped) -> Paper field.
SECTION_HEADINGS = {
    "논문 소개": "summary",
    "summary": "summary",
    "논문 초록": "abstract",
    "abstract": "abstract",
    "논문 링크": "links",
    "paper": "links",
    "paper link": "links",
    "paper links": "links",
    "더 읽어보기": "read_more",
    "read more": "read_more",
}
SECTION_NAMES = {
    "summary": "논문 소개 / Summary",
    "abstract": "논문 초록 / Abstract",
    "links": "논문 링크 / Paper",
    "read_more": "더 읽어보기 / Read more",
}
EXPECTED_SECTIONS = ", ".join(f"'### {name}'" for name in SECTION_NAMES.values())

TAGS_LINE = re.compile(r"^\s*(?:tags|태그)\s*:", re.IGNORECASE)
HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
LIST_MARKER = re.compile(r"^( *)([*+-]|\d{1,9}[.)])( {1,4}|$)")
QUOTE_MARKER = re.compile(r"^ {0,3}> ?")

_markdown = new_markdown(accept_every_link=True)


def parse_issue(path: str | Path) -> Issue:
    """Read and parse one issue file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ParseError(path, 0, f"cannot read the file ({error.strerror or error})") from None
    return parse_issue_bytes(data, path)


def parse_issue_bytes(data: bytes, path: str | Path = "<issue>") -> Issue:
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ParseError(
            path, line, f"byte 0x{data[error.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None
    return parse_issue_text(source, path)


def parse_issue_text(source: str, path: str | Path = "<issue>") -> Issue:
    lines = _normalise(source)
    front, body_start = _split_front_matter(lines, str(path))
    return _IssueBuilder(str(path), lines, body_start, front).build()


def _normalise(source: str) -> list[str]:
    """CRLF/CR line ends, a BOM, leading tabs and trailing spaces are all accepted silently."""
    text = source.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return [_expand_indent(line.rstrip()) for line in text.split("\n")]


def _expand_indent(line: str) -> str:
    stripped = line.lstrip(" \t")
    indent = line[: len(line) - len(stripped)]
    return indent.expandtabs(4) + stripped if "\t" in indent else line


# --- front matter -------------------------------------------------------------------------------


@dataclass
class _FrontMatter:
    values: dict[str, object]
    key_lines: dict[str, int]


def _split_front_matter(lines: list[str], path: str) -> tuple[_FrontMatter, int]:
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first] != "---":
        raise ParseError(
            path,
            (first or 0) + 1,
            "the file must start with YAML front matter: a '---' line, 'title:' and 'date:', "
            "then '---'",
        )
    end = next((n for n in range(first + 1, len(lines)) if lines[n] in ("---", "...")), None)
    if end is None:
        raise ParseError(path, first + 1, "the front matter opened here is never closed by a '---' line")
    text = "\n".join(lines[first + 1 : end])
    offset = first + 2  # the 1-based line number of the front matter's first line
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = offset + (mark.line if mark else 0)
        raise ParseError(path, line, f"front matter is not valid YAML: {error.problem or error}") from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as error:
        raise ParseError(path, offset, f"front matter is not valid YAML: {error}") from None
    if values is None:
        values, node = {}, None
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        raise ParseError(path, offset, "front matter must be 'key: value' lines (title, date, ...)")
    key_lines = {
        str(key.value): offset + key.start_mark.line for key, _ in node.value if isinstance(key, yaml.ScalarNode)
    }
    return _FrontMatter(values, key_lines), end + 1


# --- body ---------------------------------------------------------------------------------------


@dataclass
class _PaperDraft:
    line: int
    title_ko: str | None
    title_en: str | None
    sections: dict[str, object] = field(default_factory=dict)
    section_lines: dict[str, int] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


class _IssueBuilder:
    def __init__(self, path: str, lines: list[str], body_start: int, front: _FrontMatter):
        self.path = path
        self.lines = lines
        self.body_start = body_start  # index into lines of the body's first line
        self.front = front
        self.notice: Text | None = None
        self.intro_nodes: list[SyntaxTreeNode] | None = None  # blocks under '## 소개'
        self.intro_line = 0
        self.papers: list[_PaperDraft] = []
        self.section: str | None = None  # the current paper's current section

    # Every error goes through here, so each one names the file and a line.
    def fail(self, line: int, message: str) -> ParseError:
        return ParseError(self.path, line, message)

    def line_of(self, node: SyntaxTreeNode) -> int:
        """1-based line number in the file of a body node."""
        return self.body_start + (node.map[0] if node.map else 0) + 1

    def build(self) -> Issue:
        header = self.read_front_matter()
        body = "\n".join(self.lines[self.body_start :])
        root = SyntaxTreeNode(_markdown.parse(body))
        for node in root.children:
            self.visit_top_level(node)
        if not self.papers:
            last_line = len(self.lines)
            raise self.fail(
                last_line,
                "the issue has no paper; expected at least one '## 한국어 제목 / English Title' heading",
            )
        return Issue(
            papers=self.finish_papers(),
            intro=self.passages(self.intro_nodes or [], "introduction"),
            notice=self.notice,
            path=self.path,
            **header,
        )

    def read_front_matter(self) -> dict[str, object]:
        values, key_lines = self.front.values, self.front.key_lines
        top = self.body_start  # the closing '---' line, for keys that are missing altogether
        for key in values:
            if key not in FRONT_MATTER_KEYS:
                allowed = ", ".join(FRONT_MATTER_KEYS)
                raise self.fail(key_lines.get(str(key), top), f"unknown front matter key {key!r}; expected {allowed}")
        for key, required in FRONT_MATTER_KEYS.items():
            if required and values.get(key) in (None, ""):
                raise self.fail(top, f"front matter has no '{key}:'; it is required")
        header: dict[str, object] = {}
        for key in ("title", "subject", "preheader", "source_url"):
            value = values.get(key)
            if value is None:
                continue
            if isinstance(value, (dict, list)) or not str(value).strip():
                raise self.fail(key_lines.get(key, top), f"'{key}:' must be one line of text")
            header[key] = " ".join(str(value).split())
        if "source_url" in header:
            problem = link_problem(str(header["source_url"]))
            if problem:
                raise self.fail(key_lines["source_url"], f"'source_url:' {problem}")
        header["date"] = self.read_date(values["date"], key_lines.get("date", top))
        return header

    def read_date(self, value: object, line: int) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise self.fail(line, f"'date: {value}' is not a date; expected YYYY-MM-DD") from None

    # --- top-level blocks ---

    def visit_top_level(self, node: SyntaxTreeNode) -> None:
        line = self.line_of(node)
        if node.type == "heading":
            self.visit_heading(node, line)
        elif self.section is not None:
            self.add_to_section(node)
        elif self.papers:
            if not self.take_tags(node):
                raise self.fail(
                    line,
                    f"text directly under a paper's title; expected a section heading first: {EXPECTED_SECTIONS}",
                )
        elif self.intro_nodes is not None:
            self.intro_nodes.append(node)
        elif node.type == "blockquote" and self.notice is None:
            self.notice = Text(self.source_of([node], strip_quote=True))
        elif node.type != "hr":
            raise self.fail(
                line,
                "text before the first '##' heading; expected only a notice blockquote ('> ...') "
                "before '## 소개' or the first paper",
            )

    def visit_heading(self, node: SyntaxTreeNode, line: int) -> None:
        title = _plain_inline(node).strip()
        level = len(node.markup) if node.markup.startswith("#") else (1 if node.markup == "=" else 2)
        if level == 1:
            raise self.fail(line, "a level-1 heading; the issue's title belongs in the front matter ('title:')")
        if level == 2:
            self.section = None
            if title.rstrip(":").strip().lower() in INTRO_HEADINGS:
                self.start_intro(line)
            else:
                self.start_paper(title, line)
            return
        if level == 3:
            self.start_section(title, line)
            return
        raise self.fail(line, f"a level-{level} heading; expected '##' for a paper or '###' for its sections")

    def start_intro(self, line: int) -> None:
        if self.intro_nodes is not None:
            raise self.fail(line, f"a second introduction (the first is at line {self.intro_line})")
        if self.papers:
            raise self.fail(line, "the introduction comes after a paper; move '## 소개' above the first paper")
        self.intro_line = line
        self.intro_nodes = []

    def start_paper(self, title: str, line: int) -> None:
        if not title.strip(" /"):
            raise self.fail(line, "a paper heading with no title; expected '## 한국어 제목 / English Title'")
        self.papers.append(_PaperDraft(line, *_split_title(title)))

    def start_section(self, title: str, line: int) -> None:
        if not self.papers:
            raise self.fail(
                line,
                f"section heading '### {title}' before any paper; a section belongs under a "
                "'## 한국어 제목 / English Title' paper heading",
            )
        key = SECTION_HEADINGS.get(title.rstrip(":").strip().lower())
        if key is None:
            raise self.fail(line, f"unknown section heading '### {title}'; expected one of {EXPECTED_SECTIONS}")
        paper = self.papers[-1]
        if key in paper.sections:
            raise self.fail(
                line,
                f"a second '{SECTION_NAMES[key]}' section in paper '{paper.title_ko or paper.title_en}' "
                f"(the first is at line {paper.section_lines[key]})",
            )
        paper.sections[key] = []
        paper.section_lines[key] = line
        self.section = key

    def add_to_section(self, node: SyntaxTreeNode) -> None:
        if self.take_tags(node):
            return
        self.papers[-1].sections[self.section].append(node)  # type: ignore[union-attr,index]

    def take_tags(self, node: SyntaxTreeNode) -> bool:
        """A 'Tags: a, b' paragraph becomes the paper's tags instead of text."""
        if node.type != "paragraph" or not self.papers:
            return False
        text = _plain_inline(node)
        if not TAGS_LINE.match(text):
            return False
        words = text.split(":", 1)[1].replace("\n", ",").split(",")
        tags = [word.strip().strip("#").strip() for word in words]
        self.papers[-1].tags.extend(tag for tag in tags if tag and tag not in self.papers[-1].tags)
        return True

    # --- papers and sections ---

    def finish_papers(self) -> tuple[Paper, ...]:
        papers = []
        slugs: set[str] = set()
        for draft in self.papers:
            slug = _unique_slug(_slug(draft.title_en, draft.title_ko), slugs)
            sections = draft.sections
            papers.append(
                Paper(
                    slug=slug,
                    title_ko=draft.title_ko,
                    title_en=draft.title_en,
                    summary=self.passages(sections.get("summary", []), "summary"),
                    abstract=self.passages(sections.get("abstract", []), "abstract"),
                    links=self.links(sections.get("links", []), SECTION_NAMES["links"]),
                    read_more=self.links(sections.get("read_more", []), SECTION_NAMES["read_more"]),
                    tags=tuple(draft.tags),
                    line=draft.line,
                )
            )
        return tuple(papers)

    def passages(self, nodes: list[SyntaxTreeNode], where: str) -> tuple[Bilingual, ...]:
        """Korean blocks, each followed by the blockquote that holds its English original.

        A list whose items each hold a Korean text and an indented '> English' blockquote (the
        forum's style) gives one passage per item; any other list is part of the Korean text."""
        passages: list[Bilingual] = []
        korean: list[SyntaxTreeNode] = []

        def flush(english: SyntaxTreeNode | None) -> None:
            if korean or english is not None:
                passages.append(
                    Bilingual(
                        ko=Text(self.source_of(korean)) if korean else None,
                        en=Text(self.source_of([english], strip_quote=True)) if english is not None else None,
                        line=self.line_of(korean[0] if korean else english),  # type: ignore[arg-type]
                    )
                )
            korean.clear()

        for node in nodes:
            self.check_blocks(node, where)
            if node.type == "blockquote":
                flush(node)
            elif node.type in ("bullet_list", "ordered_list") and _has_quoted_item(node):
                flush(None)
                for item in node.children:
                    passages.extend(self.passages(item.children, where))
            else:
                korean.append(node)
        flush(None)
        return tuple(passages)

    def check_blocks(self, node: SyntaxTreeNode, where: str) -> None:
        """Links anywhere inside must be http, https or mailto; headings cannot hide in lists."""
        for inner in node.walk():
            if inner.type == "link":
                href = str(inner.attrs.get("href", ""))
                problem = link_problem(href)
                if problem:
                    raise self.fail(self.line_of(_nearest_block(inner)), f"in the {where}: {problem}")
            elif inner.type == "heading" and inner is not node:
                raise self.fail(self.line_of(inner), f"a heading inside the {where}'s list or quote")

    def links(self, nodes: list[SyntaxTreeNode], where: str) -> tuple[Link, ...]:
        """Each line is a bare URL or a [text](url) link, as paragraphs or list items."""
        found: list[Link] = []
        for node in nodes:
            self.check_blocks(node, where)
            for block in node.walk():
                if block.type != "inline":
                    continue
                line = self.line_of(_nearest_block(block))
                for child in block.children:
                    if child.type == "link":
                        found.append(Link(str(child.attrs["href"]), _plain_inline(child).strip() or None))
                    elif child.type == "text":
                        for word in child.content.split():
                            problem = link_problem(word)
                            if problem:
                                raise self.fail(
                                    line,
                                    f"in '{where}': expected a link (a bare URL or [text](url)), "
                                    f"found {word[:60]!r}",
                                )
                            found.append(Link(word))
                    elif child.type not in ("softbreak", "hardbreak"):
                        raise self.fail(
                            line, f"in '{where}': expected only links, one per line or as a list"
                        )
            if node.type not in ("paragraph", "bullet_list", "ordered_list"):
                raise self.fail(self.line_of(node), f"in '{where}': expected links, one per line or as a list")
        return tuple(found)

    # --- source slices ---

    def source_of(self, nodes: list[SyntaxTreeNode], strip_quote: bool = False) -> str:
        """The Markdown of sibling blocks as written, without the list or quote markers around them."""
        first, last = nodes[0], nodes[-1]
        start, end = first.map[0], last.map[1]  # type: ignore[index]
        lines = self.lines[self.body_start + start : self.body_start + end]
        item = _enclosing_list_item(first)
        if item is not None:
            item_first = self.lines[self.body_start + item.map[0]]  # type: ignore[index]
            marker = LIST_MARKER.match(item_first)
            width = len(marker.group(0)) if marker else 0
            if marker and not marker.group(3):
                width += 1
            lines = [
                line[width:] if n == 0 and start == item.map[0] else _dedent(line, width)  # type: ignore[index]
                for n, line in enumerate(lines)
            ]
        if strip_quote:
            lines = [QUOTE_MARKER.sub("", line, count=1) for line in lines]
        source = "\n".join(lines).strip("\n")
        if not any(inner.type in ("fence", "code_block") for node in nodes for inner in node.walk()):
            source = re.sub(r"\n{3,}", "\n\n", source)  # extra blank lines mean nothing outside code
        return source


def _dedent(line: str, width: int) -> str:
    stripped = line.lstrip(" ")
    return line[min(width, len(line) - len(stripped)) :]


def _enclosing_list_item(node: SyntaxTreeNode) -> SyntaxTreeNode | None:
    parent = node.parent
    return parent if parent is not None and parent.type == "list_item" else None


def _has_quoted_item(node: SyntaxTreeNode) -> bool:
    return any(child.type == "blockquote" for item in node.children for child in item.children)


def _nearest_block(node: SyntaxTreeNode) -> SyntaxTreeNode:
    while node.map is None and node.parent is not None:
        node = node.parent
    return node


def _plain_inline(node: SyntaxTreeNode) -> str:
    parts = []
    for child in node.walk(include_self=False):
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
    return "".join(parts)


def _split_title(title: str) -> tuple[str | None, str | None]:
    """'한국어 제목 / English Title' -> both; one title alone -> Korean if it has Hangul."""
    title = " ".join(title.split())
    if " / " in title:
        korean, english = (part.strip() for part in title.split(" / ", 1))
        return korean or None, english or None
    return (title, None) if HANGUL.search(title) else (None, title)


def _slug(title_en: str | None, title_ko: str | None) -> str:
    ascii_words = unicodedata.normalize("NFKD", title_en or "").encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_words.lower()).strip("-")[:60].rstrip("-")
    if slug:
        return slug
    # A Korean-only title: a short stable digest keeps the anchor ASCII, which every client links.
    return "paper-" + hashlib.sha1((title_ko or "").encode("utf-8")).hexdigest()[:8]


def _unique_slug(slug: str, taken: set[str]) -> str:
    candidate, number = slug, 2
    while candidate in taken:
        candidate, number = f"{slug}-{number}", number + 1
    taken.add(candidate)
    return candidate
