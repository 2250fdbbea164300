"""Is the rendered email whole: every paper's block, then the footer with the unsubscribe link?

Rendering can lose the end of an email without an error anywhere: the CSS inliner used before
css_inline (premailer, on libxml2) stopped at a text of more than 10 MB and dropped everything
after it, so a runaway translation once made an email that ended after its contents list; any
HTML tool in the chain may do the same, and an editor's template can leave papers or the
unsubscribe link out. `build` and `send` must refuse such an email, not
write or send it.

The check reads the email as a reader does (tags and comments out, entities decoded) and looks
for each paper's first words, in order, then for the unsubscribe link after the last of them.
A paper's first words are those of its first passage (its summary, else its abstract), which
the contents list does not show, else its title.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

from . import labels, markup
from .errors import IncompleteEmailError
from .model import UNSUBSCRIBE_URL_PLACEHOLDER, Issue, Paper

FIRST_WORDS = 60  # characters of a paper's first passage looked for; enough to tell papers apart
_TAG_OR_COMMENT = re.compile(r"<!--.*?-->|<[^>]*>", re.S)
# Where the reading has the unsubscribe link: NUL never occurs in an issue (the parser refuses
# it), and the HTML serialiser never writes it.
_UNSUBSCRIBE_LINK = "\0"
# A passage this long is the likely cause, and worth naming (libxml2, for one, stops at 10,000,000 bytes).
_SUSPECT_BYTES = 1_000_000


def reading(html_text: str) -> str:
    """The body's text as a reader sees it, one space between words, with _UNSUBSCRIBE_LINK where
    a tag carries the unsubscribe URL."""
    body = html_text.split("<body", 1)[-1]
    marked = _TAG_OR_COMMENT.sub(lambda tag: _UNSUBSCRIBE_LINK if UNSUBSCRIBE_URL_PLACEHOLDER in tag.group() else " ",
                                 body)
    return " ".join(html.unescape(marked).split())


@lru_cache(maxsize=1024)  # every render checks the same papers again: kept, like their HTML
def first_words(paper: Paper) -> str:
    passage = next(iter(paper.summary + paper.abstract), None)
    text = passage and (passage.ko or passage.en)
    words = reading(markup.to_html(text)) if text else labels.emojize(paper.title)
    return words[:FIRST_WORDS]


def check_complete(issue: Issue, email_html: str, template: str) -> None:
    """IncompleteEmailError, in one line, unless every paper's first words and then the
    unsubscribe link are in `email_html` (rendered from `template`)."""
    seen = reading(email_html)
    at = 0
    for number, paper in enumerate(issue.papers, start=1):
        words = first_words(paper)
        found = seen.find(words, at)
        if found < 0:
            raise IncompleteEmailError(
                f"the rendered email lacks paper {number} of {len(issue.papers)} ({paper.title[:60]!r}, line "
                f"{paper.line}) and what follows it; {_likely_cause(issue, template)}")
        at = found + len(words)
    if seen.find(_UNSUBSCRIBE_LINK, at) < 0:
        raise IncompleteEmailError(
            f"the rendered email has no unsubscribe link after its last paper; {_likely_cause(issue, template)}")


def _likely_cause(issue: Issue, template: str) -> str:
    sizes = [(len(paper.title.encode("utf-8")), paper.line) for paper in issue.papers]
    passages = [*issue.intro, *(part for paper in issue.papers for part in paper.summary + paper.abstract)]
    sizes += [(len(text.markdown.encode("utf-8")), part.line) for part in passages for text in (part.ko, part.en) if text]
    longest, line = max(sizes, default=(0, 0))
    if longest > _SUSPECT_BYTES:
        return (f"the text at line {line} has {longest:,} bytes, more than the HTML tools keep in one piece: "
                "shorten it")
    return f"{template} must show every paper and, after them, the unsubscribe link ({{{{ unsubscribe_url }}}})"
