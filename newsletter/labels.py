"""Words the renderer derives from the issue without rewriting it: a link's label from its URL,
the headline without the forum's "[2023/10/16 ~ 10/22]" prefix, emoji for `:shortcodes:`.

The email, its text part and the web page all take their wording from here, so the three say the
same thing.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

import emoji

from .model import DEFAULT_EDITION, Issue, Link, Paper
from .placeholders import still_to_write
from .textwidth import display_width

# The longest URL shown as a link's own text; a longer one gets a label derived from it.
MAX_SHOWN_URL = 30

# Site -> the name readers know it by (anything else shows its host name).
SITE_NAMES = {
    "arxiv.org": "arXiv",
    "github.com": "GitHub",
    "huggingface.co": "Hugging Face",
    "nature.com": "Nature",
    "openreview.net": "OpenReview",
    "aclanthology.org": "ACL Anthology",
    "proceedings.neurips.cc": "NeurIPS",
    "proceedings.mlr.press": "PMLR",
    "science.org": "Science",
    "youtube.com": "YouTube",
    "medium.com": "Medium",
    "substack.com": "Substack",
}
_X_HOSTS = {"x.com", "twitter.com", "mobile.twitter.com", "mobile.x.com"}
_X_POST = re.compile(r"^/(?!i/)(?P<user>[A-Za-z0-9_]{1,15})/status(?:es)?/\d+")  # /i/…: no handle
_X_PROFILE = re.compile(r"^/(?P<user>[A-Za-z0-9_]{1,15})/?$")
# The forum's week in front of the title: "[2023/10/16 ~ 10/22] 이번 주의 ..." (a bracket with a
# number in it: "[특집] …" is part of the title, not a date).
_TITLE_PREFIX = re.compile(r"^\s*\[(?P<prefix>[^\]\d]{0,20}\d[^\]]{0,30})\]\s*(?P<rest>.+)$")
_TRAILING_ENGLISH = re.compile(r"^(?P<main>.*\S)\s*\((?P<sub>[^()]+)\)$")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# A paper's name is a word or two ("Self-RAG", "Mistral 7B"), not a descriptive title.
_NAME_WORDS = 2
_NAME_CHARACTERS = 24
# Columns (a Hangul syllable takes two) a phone's inbox shows of a subject on one line, and of the
# preview line under it (two lines on iOS Mail and the Gmail app, one on desktop beside the subject).
SUBJECT_COLUMNS = 40
PREHEADER_COLUMNS = 100
_WORD = re.compile(r"\w+")


@lru_cache(maxsize=8192)
def emojize(text: str) -> str:
    """Kept: the templates ask for the same titles and labels at every render. `:smile:` -> 😄 for the shortcodes the forum (Discourse, GitHub, Slack) uses; any other
    `:word:` (a time, a ratio, an unknown name) stays as written."""
    return emoji.emojize(text, language="alias")


def say(korean: str, english: str, edition: str = DEFAULT_EDITION) -> str:
    """A label as an edition words it: both ("지난 호 · Archive"), or the one language it shows."""
    if edition == "ko":
        return korean
    if edition == "en":
        return english
    return f"{korean} · {english}"


def _site(host: str) -> str:
    host = host.removeprefix("www.")
    for domain, name in SITE_NAMES.items():
        if host == domain or host.endswith("." + domain):
            return name
    return host


@lru_cache(maxsize=4096)
def link_label(link: Link | str, *, paper: bool = False, edition: str = DEFAULT_EDITION) -> str:
    """A link's visible text: the editor's label, else words derived from the URL, e.g.
    "논문 · Paper (arXiv)", "X 스레드 · Thread by @user", "코드 · Code (GitHub)" (in one language
    for the ko and en editions: "논문 (arXiv)", "Paper (arXiv)"). `paper` says the link is in the
    paper's own links (논문 링크), where an unknown site is still "the paper"."""

    if isinstance(link, Link):
        if link.label:
            return emojize(link.label)
        url = link.url
    else:
        url = link
    parts = urlsplit(url)
    if parts.scheme == "mailto":
        return parts.path
    host = (parts.hostname or "").removeprefix("www.")
    path = parts.path
    if host in _X_HOSTS:
        post = _X_POST.match(path)
        if post:
            return say("X 스레드", f"Thread by @{post['user']}", edition) + (
                f" · @{post['user']}" if edition == "ko" else "")
        profile = _X_PROFILE.match(path)
        # Any other X address (/i/status/…, /i/web/status/…, a share link) is nearly always a
        # post; a bare "X" would not say what opens.
        return f"X · @{profile['user']}" if profile else say("X 스레드", "Thread on X", edition)
    site = _site(host)
    if path.lower().endswith(".pdf") or (site == "arXiv" and path.startswith("/pdf/")):
        return f"PDF ({site})"
    if site == "GitHub" and path.strip("/"):
        return say("코드", "Code", edition) + " (GitHub)"
    if paper or (site == "arXiv" and path.startswith(("/abs/", "/html/"))) or (
        site == "Hugging Face" and path.startswith("/papers/")
    ):
        return say("논문", "Paper", edition) + f" ({site})"
    if site == "YouTube" or host == "youtu.be":
        return say("영상", "Video", edition) + " (YouTube)"
    return say("더 읽기", "Read more", edition) + f" ({site})"


def shown_url(url: str) -> str:
    """The text of a link written as a bare URL: the URL when it is short, else a label."""
    return url if len(url) <= MAX_SHOWN_URL else link_label(url)


def split_title(title: str) -> tuple[str | None, str]:
    """The forum's bracketed prefix (its week, e.g. "2023/10/16 ~ 10/22") and the rest."""
    match = _TITLE_PREFIX.match(title)
    if match and match["rest"].strip():
        return match["prefix"].strip(), match["rest"].strip()
    return None, title.strip()


def contents_title(paper: Paper) -> str:
    """A paper's entry in the contents: its title, but the English one while the Korean title is
    still a draft marker, so a draft's contents tell the papers apart (the heading keeps the marker)."""
    return emojize(_readable_title(paper))


def has_hangul(text: str) -> bool:
    return bool(_HANGUL.search(text))


def _readable_title(paper: Paper) -> str:
    return paper.title_en if still_to_write(paper.title_ko) and paper.title_en else paper.title


def paper_name(paper: Paper) -> str | None:
    """The name a paper goes by, if it has one: the part of its English title before a colon when
    that is a word or two ("Llemma", "Self-RAG", "OpenAgents"), or a title of a word or two
    ("GenBench"). A Korean-only title is read the same way."""
    title = emojize(paper.title_en or _readable_title(paper))  # ":rocket: Rocket: …" has no name
    head, colon, _ = title.partition(":")
    name = (head if colon else title).strip()
    if 0 < len(name.split()) <= _NAME_WORDS and len(name) <= _NAME_CHARACTERS:
        return name
    return None


@lru_cache(maxsize=1024)
def short_title(paper: Paper) -> str:
    """A paper as the contents, subject and preheader name it: its name, else its title up to
    the colon or question mark that ends the first clause (Korean first)."""
    name = paper_name(paper)
    if name:
        return name
    title = emojize(_readable_title(paper))
    head = title.partition(": ")[0].strip() or title
    question = head.find("?")
    return (head[:question + 1] if 0 < question < len(head) - 1 else head).strip()


def headline(issue: Issue) -> tuple[str, str | None]:
    """The issue's title as a heading and an optional subtitle, without the forum's prefix:
    "이번 주의 주요 ML 논문 (Top ML Papers of the Week)" -> ("이번 주의 주요 ML 논문",
    "Top ML Papers of the Week"). A title of one language stays whole."""
    _, rest = split_title(emojize(issue.title))
    return split_languages(rest)


def split_languages(text: str) -> tuple[str, str | None]:
    """A name given twice, "한국어 / English", "한국어 · English" or "한국어 (English)", as its two
    parts; (text, None) when it is not."""
    for separator in (" / ", " · "):
        if separator in text:
            main, sub = text.split(separator, 1)
            return main.strip(), sub.strip()
    match = _TRAILING_ENGLISH.match(text)
    if match and _HANGUL.search(match["main"]) and not _HANGUL.search(match["sub"]):
        return match["main"], match["sub"]
    return text, None


def dateline(issue: Issue) -> str:
    """Which week the issue covers: the title's bracketed prefix, else the issue's date."""
    prefix, _ = split_title(issue.title)
    return prefix or issue.date.isoformat()


def title_is_the_name(issue: Issue, name: str) -> bool:
    """Whether the title (prefix aside) only repeats the newsletter's name, in which case the
    header shows it once instead of a brand line above the same words."""
    _, rest = split_title(issue.title)
    return _WORD.findall(rest.lower()) == _WORD.findall(name.lower())


def archive_title(issue: Issue, name: str) -> str:
    """An issue's title in the archive index and feed, which already say the newsletter's name:
    the headline without the forum's prefix, or the week when the title only repeats the name."""
    if title_is_the_name(issue, name):
        return dateline(issue)
    main, sub = headline(issue)
    return f"{main} · {sub}" if sub else main


def subject(issue: Issue, edition: str = DEFAULT_EDITION) -> str:
    """The front matter's subject, else the week's lead papers by name, "Llemma, Self-RAG,
    OpenAgents 외 7편" ("… and 7 more" in the en edition): only the papers tell one week from
    the last, and a phone shows about SUBJECT_COLUMNS of a subject (the sender's name already says
    which newsletter it is)."""
    if issue.subject:
        return emojize(issue.subject)
    if not issue.papers:
        prefix, rest = split_title(emojize(issue.title))
        return f"{rest} · {prefix}" if prefix else rest
    chosen = _subject_names(issue, edition)
    if not chosen:  # no paper has a short name: the first one's title, cut to fit
        room = SUBJECT_COLUMNS - display_width(_more(len(issue.papers) - 1, edition))
        chosen = [_cut(short_title(issue.papers[0]), room)]
    return ", ".join(chosen) + _more(len(issue.papers) - len(chosen), edition)


def preheader(issue: Issue, edition: str = DEFAULT_EDITION) -> str:
    """The inbox preview line: the front matter's, else the papers the subject leaves out (named
    ones first), as many as a preview shows (PREHEADER_COLUMNS)."""
    if issue.preheader:
        return emojize(issue.preheader)
    named_in_subject = set(_subject_names(issue, edition))
    rest = [paper for paper in issue.papers if paper_name(paper) not in named_in_subject]
    if not rest:
        return _cut(f"{' · '.join(part for part in headline(issue) if part)} · {dateline(issue)}", PREHEADER_COLUMNS)
    ordered = sorted(rest, key=lambda paper: paper_name(paper) is None)  # stable: names first
    titles = [title for title in map(short_title, ordered) if _in_edition(title, edition)]
    chosen = _fit(titles, len(rest), PREHEADER_COLUMNS, " · ", edition)
    return " · ".join(chosen) + _more(len(rest) - len(chosen), edition)


def _subject_names(issue: Issue, edition: str) -> list[str]:
    if issue.subject:
        return []
    return _fit(_names(issue, edition), len(issue.papers), SUBJECT_COLUMNS, ", ", edition)


def _names(issue: Issue, edition: str) -> list[str]:
    """The papers' names the subject may use: in the en edition, none written in Hangul (a paper
    with only a Korean title counts among the "N more")."""
    return [name for name in map(paper_name, issue.papers) if name and _in_edition(name, edition)]


def _in_edition(words: str, edition: str) -> bool:
    return edition != "en" or not has_hangul(words)


def _more(count: int, edition: str = DEFAULT_EDITION) -> str:
    """"외 N편" (" and N more" in the en edition), or nothing."""
    if count <= 0:
        return ""
    return f" and {count} more" if edition == "en" else f" 외 {count}편"


def _fit(titles: list[str], total: int, columns: int, separator: str, edition: str = DEFAULT_EDITION) -> list[str]:
    """The titles, in order, that fit in `columns` with the "외 N편" the rest of `total` need;
    one too long for the room left is skipped for a shorter one after it."""
    chosen: list[str] = []
    for title in titles:
        candidate = chosen + [title]
        if display_width(separator.join(candidate) + _more(total - len(candidate), edition)) <= columns:
            chosen = candidate
    return chosen


def _cut(text: str, columns: int) -> str:
    """`text` within `columns`, cut at a space with "…" when it is longer."""
    if display_width(text) <= columns:
        return text
    words, kept = text.split(), ""
    for word in words:
        if display_width(f"{kept} {word}…".strip()) > columns:
            break
        kept = f"{kept} {word}".strip()
    return (kept or text[: columns // 2]) + "…"
