"""A week's paper list -> `ListedPaper`s or `ListedArxivId`s.

Two shapes: the CSV the editors keep (Title, Description, PaperURL, TweetURL, Abstract; columns
found by header, in any order and case, spaces ignored; UTF-8 with or without a BOM, or CP949 as
Korean Excel saves it), or a text file of arXiv ids and URLs, one a line. Every bad entry is
reported with its line, all at once (`ListError`), so one run shows the editor everything to fix.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ListError
from ..markup import link_problem

# Header (lower-cased, spaces, '_' and '-' dropped) -> field.
COLUMNS = {
    "title": "title",
    "papertitle": "title",
    "description": "summary",
    "summary": "summary",
    "abstract": "abstract",
    "paperurl": "paper_url",
    "paperlink": "paper_url",
    "paper": "paper_url",
    "url": "paper_url",
    "tweeturl": "read_more_url",
    "tweet": "read_more_url",
    "readmore": "read_more_url",
    "readmoreurl": "read_more_url",
}

# Query parameters that only track who clicked: dropped from every link, as docs/issue-format.md asks.
TRACKING_PARAMETERS = re.compile(r"^(utm_.*|fbclid|gclid|mc_cid|mc_eid)$", re.IGNORECASE)
SHARE_HOSTS = {"x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com"}  # their ?s= and ?t= too

ARXIV_ID = re.compile(
    r"^(?:arxiv:)?(?:https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)?"
    r"(?P<id>\d{4}\.\d{4,5}|[a-z][a-z.-]*(?:\.[a-z]{2})?/\d{7})(?P<version>v\d+)?(?:\.pdf)?/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ListedPaper:
    """One paper as the list gives it: the English parts of its block in the draft."""

    line: int  # where its entry starts in the list
    title: str
    summary: str = ""  # the CSV's Description
    abstract: str = ""
    paper_url: str | None = None
    read_more_url: str | None = None


@dataclass(frozen=True)
class ListedArxivId:
    line: int
    arxiv_id: str  # without the version: 2310.10631, hep-th/9901001
    version: str = ""  # "v2" when the list named one

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}{self.version}"


def read_paper_list(path: str | Path) -> list[ListedPaper] | list[ListedArxivId]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ListError(path, [(0, f"cannot read the list ({error.strerror or error})")]) from None
    return parse_paper_list(data, path)


def parse_paper_list(data: bytes, path: str | Path = "<list>") -> list[ListedPaper] | list[ListedArxivId]:
    text = _decode(data, path).replace("\r\n", "\n").replace("\r", "\n")
    first = next((line for line in text.split("\n") if line.strip()), "")
    delimiter = _delimiter(first)
    if delimiter is not None:
        return _read_csv(text, path, delimiter)
    return _read_ids(text, path)


def _decode(data: bytes, path: str | Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = error
    try:
        return data.decode("cp949")  # what Excel on a Korean Windows saves as "CSV"
    except UnicodeDecodeError:
        line = data.count(b"\n", 0, bad.start) + 1
        raise ListError(path, [(line, f"byte 0x{data[bad.start]:02x} is neither UTF-8 nor CP949; save the list as UTF-8")]) from None


def _header_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).lower()


DELIMITERS = (",", "\t", ";")  # Excel's CSV; a sheet pasted as TSV; Excel in locales with a decimal comma


def _delimiter(line: str) -> str | None:
    """The delimiter with which `line` is a header naming a Title column, or None (no CSV)."""
    for delimiter in DELIMITERS:
        try:
            names = next(csv.reader([line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        if "title" in (COLUMNS.get(_header_key(name)) for name in names):
            return delimiter
    return None


LINE_SEPARATORS = re.compile("\r\n|[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # what the parser counts as line ends


def _clean(value: str) -> str:
    """Control characters out (tabs become spaces), line ends as \\n, each line's ends trimmed."""
    value = LINE_SEPARATORS.sub("\n", value)
    value = "".join(" " if char == "\t" else char for char in value if char in "\n\t" or unicodedata.category(char) != "Cc")
    lines = [line.strip() for line in value.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clean_url(url: str) -> str:
    """The link without its tracking parameters (utm_*, and x.com's ?s=20)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    kept = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not TRACKING_PARAMETERS.match(key) and not (host in SHARE_HOSTS and key in ("s", "t"))
    ]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def _read_csv(text: str, path: str | Path, delimiter: str = ",") -> list[ListedPaper]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    problems: list[tuple[int, str]] = []
    header = next(reader)
    fields = [COLUMNS.get(_header_key(name)) for name in header]
    for name in set(fields) - {None}:
        if fields.count(name) > 1:
            columns = ", ".join(repr(header[n]) for n, field in enumerate(fields) if field == name)
            problems.append((1, f"columns {columns} both name the paper's {name}; keep one"))
    papers: list[ListedPaper] = []
    seen_urls: dict[str, int] = {}
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append((line, f"not a CSV row ({error})"))
            break
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            problems.append((line, f"{len(row)} fields but the header names {len(header)}; quote a field that holds a comma"))
            continue
        values: dict[str, str] = {}
        for field, cell in zip(fields, row):
            if field:
                values[field] = _clean(cell)
        title = " ".join(values.get("title", "").split())
        if not title:
            problems.append((line, "no title in the Title column"))
            continue
        urls: dict[str, str | None] = {}
        for key, label in (("paper_url", "paper link"), ("read_more_url", "read-more link")):
            url = values.get(key, "")
            if not url:
                urls[key] = None
                continue
            problem = link_problem(url) or (f"{url!r} has spaces in it" if any(c.isspace() for c in url) else None)
            if problem:
                problems.append((line, f"{title}: the {label}: {problem}"))
            urls[key] = clean_url(url)
        paper_url = urls["paper_url"]
        if paper_url and paper_url in seen_urls:
            problems.append((line, f"{title}: the same paper link as line {seen_urls[paper_url]}"))
        elif paper_url:
            seen_urls[paper_url] = line
        papers.append(ListedPaper(line, title, values.get("summary", ""), values.get("abstract", ""), **urls))
    if not papers and not problems:
        problems.append((1, "the list has a header but no paper"))
    if problems:
        raise ListError(path, problems)
    return papers


def _read_ids(text: str, path: str | Path) -> list[ListedArxivId]:
    problems: list[tuple[int, str]] = []
    found: list[ListedArxivId] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        entry = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("http") else raw.strip()
        if not entry:
            continue
        match = ARXIV_ID.match(entry)
        if not match:
            problems.append((number, f"{entry[:80]!r} is not an arXiv id or URL (expected e.g. 2310.10631 or "
                                     "https://arxiv.org/abs/2310.10631), nor a CSV header with a Title column"))
            continue
        arxiv_id = match.group("id")
        if arxiv_id in seen:
            problems.append((number, f"arXiv {arxiv_id} is already on line {seen[arxiv_id]}"))
            continue
        seen[arxiv_id] = number
        found.append(ListedArxivId(number, arxiv_id, match.group("version") or ""))
    if not found and not problems:
        problems.append((1, "the list is empty; expected a CSV with a Title column or arXiv ids, one a line"))
    if problems:
        raise ListError(path, problems)
    return found
