"""Issue file (Markdown with YAML front matter) -> `Issue`, or a `ParseError` with a line number.

The format is written down in docs/issue-format.md. The walk goes over markdown-it-py's syntax
tree, not over lines; source lines are only sliced to keep each passage's Markdown as written.

The parse goes on after most errors, so that `check` can list every one of them: the ParseError
raised at the end is the first, and carries them all (`.errors`). The input stage makes sure that
what passes the parser can be rendered: line breaks from Word and Unicode (VT, FF, NEL, LS, PS)
become line breaks, and any other invisible control character is an error on its line.
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

from .errors import ParseError, unknown_name_hint
from .markup import link_problem, new_markdown
from .model import Bilingual, Issue, Link, Paper, Text, clean_tag

FRONT_MATTER_KEYS = {  # key -> required
    "title": True,
    "date": True,
    "subject": False,
    "preheader": False,
    "source_url": False,
    "email_notice": False,
    "web_notice": False,
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
    problems = _Problems(str(path))
    text = _read_lines(source, problems)
    front, body_start = _split_front_matter(text, problems)
    return _IssueBuilder(problems, text, body_start, front).build()


class _Problems:
    """Every error found in one file, so that one `check` lists them all."""

    def __init__(self, path: str):
        self.path = path
        self.errors: list[ParseError] = []

    def add(self, line: int, message: str) -> None:
        self.errors.append(ParseError(self.path, line, message))

    def fatal(self, line: int, message: str) -> ParseError:
        """The error after which nothing more can be read, with every error found before it."""
        self.add(line, message)
        return self.collected()

    def collected(self) -> ParseError:
        return ParseError.collect(sorted(self.errors, key=lambda error: error.line))


@dataclass
class _Lines:
    """The file's lines after the input stage, and where each one is in the file (1-based): a
    line break from Word (VT) splits a line in two that the editor sees as one."""

    lines: list[str]
    numbers: list[int]

    def number(self, index: int) -> int:
        if not self.numbers:
            return 1
        return self.numbers[min(max(index, 0), len(self.numbers) - 1)]


# Word's manual line break (VT) and page break (FF), and Unicode's NEL, LINE and PARAGRAPH
# SEPARATOR: line breaks to the editor, line breaks here.
_LINE_BREAKS = re.compile("[\v\f\x85\u2028\u2029]")
# Invisible characters that no email should carry and MJML refuses: C0 and C1 controls (tabs
# and line ends aside), lone surrogates, Unicode non-characters.
_NONCHARACTERS = "".join(chr(plane + end) for plane in range(0, 0x110000, 0x10000) for end in (0xFFFE, 0xFFFF))
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS + "]"
)
_CONTROL_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x1B: "ESC", 0x7F: "DEL"}


def _read_lines(source: str, problems: _Problems) -> _Lines:
    """CRLF/CR line ends, a BOM, leading tabs and trailing spaces are all accepted silently."""
    text = source.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    numbers: list[int] = []
    for number, physical in enumerate(text.split("\n"), start=1):
        bad = _FORBIDDEN.search(physical)
        if bad:
            problems.add(number, f"{_describe(bad.group())} at column {bad.start() + 1}; delete it")
            physical = _FORBIDDEN.sub("\ufffd", physical)
        for piece in _LINE_BREAKS.split(physical):
            lines.append(_expand_indent(piece.rstrip()))
            numbers.append(number)
    return _Lines(lines, numbers)


def _describe(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate U+{code:04X}"
    if unicodedata.category(char) == "Cc":
        name = _CONTROL_NAMES.get(code)
        return f"an invisible control character U+{code:04X}" + (f" ({name})" if name else "")
    return f"the Unicode non-character U+{code:04X}"


def _expand_indent(line: str) -> str:
    stripped = line.lstrip(" \t")
    indent = line[: len(line) - len(stripped)]
    return indent.expandtabs(4) + stripped if "\t" in indent else line


# --- front matter -------------------------------------------------------------------------------


@dataclass
class _FrontMatter:
    values: dict[str, object]
    key_lines: dict[str, int]


def _split_front_matter(source: _Lines, problems: _Problems) -> tuple[_FrontMatter, int]:
    lines = source.lines
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first] != "---":
        raise problems.fatal(
            source.number(first or 0),
            "the file must start with YAML front matter: a '---' line, 'title:' and 'date:', "
            "then '---'",
        )
    end = next((n for n in range(first + 1, len(lines)) if lines[n] in ("---", "...")), None)
    if end is None:
        raise problems.fatal(source.number(first), "the front matter opened here is never closed by a '---' line")
    text = "\n".join(lines[first + 1 : end])
    top = first + 1  # index in lines of the front matter's first line
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = source.number(top + (mark.line if mark else 0))
        raise problems.fatal(line, f"front matter is not valid YAML: {error.problem or error}") from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as error:
        raise problems.fatal(source.number(top), f"front matter is not valid YAML: {error}") from None
    if values is None:
        values, node = {}, None
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        raise problems.fatal(source.number(top), "front matter must be 'key: value' lines (title, date, ...)")
    key_lines: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        line = source.number(top + key.start_mark.line)
        if str(key.value) in key_lines:
            # YAML keeps the last one silently: two dates would make two issues of one.
            problems.add(line, f"'{key.value}:' is given twice (first at line {key_lines[str(key.value)]}); keep one")
        else:
            key_lines[str(key.value)] = line
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


# Lists and quotes nested deeper than this are an error: markdown-it stops reading at 20 levels of
# its own (a list is two: the list and its item), and would drop the text below without a word.
MAX_NESTING = 8
_NESTERS = ("bullet_list", "ordered_list", "blockquote")
# The section of a misplaced or unknown heading: its blocks are skipped, as its error says.
_SKIPPED = "skipped"


class _IssueBuilder:
    """Walks the body's syntax tree once, top-level block by block, keeping the current paper and
    section, then reads each section's blocks as passages or links. Errors are collected in
    `problems`; a misplaced block is reported once and what hangs under it is skipped."""

    def __init__(self, problems: _Problems, source: _Lines, body_start: int, front: _FrontMatter):
        self.problems = problems
        self.path = problems.path
        self.source = source
        self.lines = source.lines
        self.body_start = body_start  # index into lines of the body's first line
        self.front = front
        self.notice: Text | None = None
        self.intro_nodes: list[SyntaxTreeNode] | None = None  # blocks under '## 소개'
        self.intro_line = 0
        self.papers: list[_PaperDraft] = []
        self.section: str | None = None  # the current paper's current section

    # Every error goes through here, so each one names the file and a line.
    def fail(self, line: int, message: str) -> None:
        self.problems.add(line, message)

    def line_of(self, node: SyntaxTreeNode) -> int:
        """1-based line number in the file of a body node."""
        return self.source.number(self.body_start + (node.map[0] if node.map else 0))

    def build(self) -> Issue:
        header = self.read_front_matter()
        body = "\n".join(self.lines[self.body_start :])
        root = SyntaxTreeNode(_markdown.parse(body))
        for node in root.children:
            self.check_nesting(node)
            self.visit_top_level(node)
        if not self.papers:
            self.fail(
                self.source.number(len(self.lines) - 1),
                "the issue has no paper; expected at least one '## 한국어 제목 / English Title' heading",
            )
        papers = self.finish_papers()
        intro = self.passages(self.intro_nodes or [], "introduction")
        if self.problems.errors:
            raise self.problems.collected()
        return Issue(papers=papers, intro=intro, notice=self.notice, path=self.path, **header)

    def read_front_matter(self) -> dict[str, object]:
        key_lines = self.front.key_lines
        # The closing '---' line, for keys that are missing altogether.
        top = self.source.number(self.body_start - 1)
        values = self.decoded_values(self.front.values, top)
        for key in values:
            if key not in FRONT_MATTER_KEYS:
                hint = unknown_name_hint(str(key), FRONT_MATTER_KEYS)
                self.fail(key_lines.get(str(key), top), f"unknown front matter key {key!r}; {hint}")
        for key, required in FRONT_MATTER_KEYS.items():
            if required and self.front.values.get(key) in (None, ""):
                self.fail(top, f"front matter has no '{key}:'; it is required")
        header: dict[str, object] = {}
        for key in ("title", "subject", "preheader", "source_url"):
            value = values.get(key)
            if value is None:
                continue
            if isinstance(value, (dict, list)) or not str(value).strip():
                self.fail(key_lines.get(key, top), f"'{key}:' must be one line of text")
                continue
            header[key] = " ".join(str(value).split())
        if "source_url" in header:
            problem = link_problem(str(header["source_url"]))
            if problem:
                self.fail(key_lines["source_url"], f"'source_url:' {problem}")
        for key in ("email_notice", "web_notice"):
            if values.get(key) is not None:
                notice = self.read_notice(key, values[key], key_lines.get(key, top))
                if notice is not None:
                    header[key] = notice
        if values.get("date") not in (None, ""):
            header["date"] = self.read_date(values["date"], key_lines.get("date", top))
        return header

    def decoded_values(self, values: dict[str, object], top: int) -> dict[str, object]:
        """The front matter's text held to the input stage's rule once YAML has decoded its escapes
        ("\\u0008", "\\e", "\\f"): line breaks (VT, FF, NEL, LS, PS) become line breaks, and a
        value with any other control character is left out, as an error on its key's line."""
        kept = {}
        for key, value in values.items():
            bad = _FORBIDDEN.search(value) if isinstance(value, str) else None
            if bad:
                self.fail(self.front.key_lines.get(str(key), top),
                          f"'{key}:' holds {_describe(bad.group())}, written as a YAML escape; delete it")
            else:
                kept[key] = _LINE_BREAKS.sub("\n", value) if isinstance(value, str) else value
        return kept

    def read_notice(self, key: str, value: object, line: int) -> Text | None:
        """The notice as the email (`email_notice`) or the web page (`web_notice`) words it
        (Markdown, several lines with `|`)."""
        if isinstance(value, (dict, list)) or not str(value).strip():
            self.fail(line, f"'{key}:' must be text (Markdown; use '|' for several lines)")
            return None
        text = str(value).strip()
        for node in SyntaxTreeNode(_markdown.parse(text)).walk():
            if node.type == "link":
                problem = link_problem(str(node.attrs.get("href", "")))
                if problem:
                    self.fail(line, f"in '{key}:': {problem}")
                    return None
        return Text(text)

    def read_date(self, value: object, line: int) -> dt.date | None:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(line, f"'date: {value}' is not a date; expected YYYY-MM-DD")
            return None

    def check_nesting(self, block: SyntaxTreeNode) -> None:
        """One error per top-level block whose lists or quotes nest deeper than MAX_NESTING."""
        def deepest(node: SyntaxTreeNode, depth: int) -> SyntaxTreeNode | None:
            depth += node.type in _NESTERS
            if depth > MAX_NESTING:
                return node
            return next((found for child in node.children if (found := deepest(child, depth))), None)

        too_deep = deepest(block, 0)
        if too_deep is not None:
            self.fail(
                self.line_of(_nearest_block(too_deep)),
                f"lists or quotes nested more than {MAX_NESTING} levels deep; text this deep would be "
                "lost, so nest less",
            )

    # --- top-level blocks ---

    def visit_top_level(self, node: SyntaxTreeNode) -> None:
        line = self.line_of(node)
        if node.type == "heading":
            self.visit_heading(node, line)
        elif self.section is not None:
            self.add_to_section(node)
        elif self.papers:
            if not self.take_tags(node):
                self.fail(
                    line,
                    f"text directly under a paper's title; expected a section heading first: {EXPECTED_SECTIONS}",
                )
                self.section = _SKIPPED
        elif self.intro_nodes is not None:
            self.intro_nodes.append(node)
        elif node.type == "blockquote" and self.notice is None:
            self.check_blocks(node, "notice")
            self.notice = Text(self.source_of([node], strip_quote=True))
        elif node.type != "hr":
            self.fail(
                line,
                "text before the first '##' heading; expected only a notice blockquote ('> ...') "
                "before '## 소개' or the first paper",
            )
            self.section = _SKIPPED

    def visit_heading(self, node: SyntaxTreeNode, line: int) -> None:
        title = _plain_inline(node).strip()
        level = len(node.markup) if node.markup.startswith("#") else (1 if node.markup == "=" else 2)
        if level == 1:
            self.fail(line, "a level-1 heading; the issue's title belongs in the front matter ('title:')")
            return
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
        self.fail(line, f"a level-{level} heading; expected '##' for a paper or '###' for its sections")

    def start_intro(self, line: int) -> None:
        if self.intro_nodes is not None:
            self.fail(line, f"a second introduction (the first is at line {self.intro_line})")
            self.section = _SKIPPED
            return
        if self.papers:
            self.fail(line, "the introduction comes after a paper; move '## 소개' above the first paper")
            self.section = _SKIPPED
            return
        self.intro_line = line
        self.intro_nodes = []

    def start_paper(self, title: str, line: int) -> None:
        if not title.strip(" /"):
            self.fail(line, "a paper heading with no title; expected '## 한국어 제목 / English Title'")
        self.papers.append(_PaperDraft(line, *_split_title(title)))

    def start_section(self, title: str, line: int) -> None:
        self.section = _SKIPPED  # until the heading proves to be a section of the current paper
        if not self.papers:
            self.fail(
                line,
                f"section heading '### {title}' before any paper; a section belongs under a "
                "'## 한국어 제목 / English Title' paper heading",
            )
            return
        key = SECTION_HEADINGS.get(title.rstrip(":").strip().lower())
        if key is None:
            self.fail(line, f"unknown section heading '### {title}'; expected one of {EXPECTED_SECTIONS}")
            return
        paper = self.papers[-1]
        if key in paper.sections:
            self.fail(
                line,
                f"a second '{SECTION_NAMES[key]}' section in paper '{paper.title_ko or paper.title_en}' "
                f"(the first is at line {paper.section_lines[key]})",
            )
            return
        paper.sections[key] = []
        paper.section_lines[key] = line
        self.section = key

    def add_to_section(self, node: SyntaxTreeNode) -> None:
        if self.take_tags(node) or self.section == _SKIPPED:
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
        tags = [clean_tag(word) for word in words]
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
                    self.fail(self.line_of(_nearest_block(inner)), f"in the {where}: {problem}")
            elif inner.type == "heading" and inner is not node:
                self.fail(self.line_of(inner), f"a heading inside the {where}'s list or quote")

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
                                self.fail(
                                    line,
                                    f"in '{where}': expected a link (a bare URL or [text](url)), "
                                    f"found {word[:60]!r}",
                                )
                                break
                            found.append(Link(word))
                    elif child.type not in ("softbreak", "hardbreak"):
                        self.fail(line, f"in '{where}': expected only links, one per line or as a list")
                        break
            if node.type not in ("paragraph", "bullet_list", "ordered_list"):
                self.fail(self.line_of(node), f"in '{where}': expected links, one per line or as a list")
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
