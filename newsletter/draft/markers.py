"""Where an issue still has draft markers (`newsletter.placeholders`: the marker texts and what
each means), and the send's refusal of a draft.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DraftError
from ..model import Bilingual, Issue
from ..placeholders import (  # noqa: F401  (the draft's names for them: translate, review, tests)
    MACHINE,
    STATE_TO_REVIEW,
    STATE_TO_TRANSLATE,
    STATE_TO_WRITE,
    TO_TRANSLATE,
    TO_WRITE,
    state_of,
)


@dataclass(frozen=True)
class DraftPart:
    """One Korean part of an issue that is not finished: where it is and what is missing."""

    line: int  # the line of the Korean text (a title: the paper's heading) in the issue file
    state: str  # STATE_TO_TRANSLATE | STATE_TO_WRITE | STATE_TO_REVIEW
    where: str  # "Llemma: summary", "introduction"
    kind: str  # "title" or "text": how a translation of it is written back
    english: str | None = None  # the English original (Markdown as written), if there is one


def draft_parts(issue: Issue) -> list[DraftPart]:
    """Every unfinished Korean part of the issue, in file order."""
    parts: list[DraftPart] = []

    def add_passages(passages: tuple[Bilingual, ...], where: str) -> None:
        for number, passage in enumerate(passages, start=1):
            state = state_of(passage.ko.markdown if passage.ko else None)
            if state:
                label = where if len(passages) == 1 else f"{where} {number}"
                english = passage.en.markdown if passage.en else None
                parts.append(DraftPart(passage.line, state, label, "text", english))

    add_passages(issue.intro, "introduction")
    for paper in issue.papers:
        name = paper.title_en or paper.title
        state = state_of(paper.title_ko)
        if state:
            parts.append(DraftPart(paper.line, state, f"{name}: title", "title", paper.title_en))
        add_passages(paper.summary, f"{name}: summary")
        add_passages(paper.abstract, f"{name}: abstract")
    return parts


def refuse_draft(issue: Issue) -> None:
    """A send to the list takes a finished issue: no part to write, no unreviewed translation."""
    parts = draft_parts(issue)
    if not parts:
        return
    first = parts[0]
    raise DraftError(
        f"{issue.path} is a draft: {len(parts)} Korean part(s) not finished (first: line {first.line}, "
        f"{first.where}, {first.state}); `newsletter check` lists them. Finish them, or pass --allow-draft"
    )


LINE_BREAK = re.compile(r"(\r\n|\r|\n)")  # the line ends the parser counts lines by


def replace_on_line(data: bytes, line: int, old: str, new: str) -> bytes | None:
    """`data` with the first `old` on 1-based `line` replaced by `new`, every other byte kept (a
    BOM, CRLF or CR line ends, trailing spaces); None when that line does not hold `old`."""
    bom = data.startswith(b"\xef\xbb\xbf")
    pieces = LINE_BREAK.split(data.decode("utf-8-sig"))  # line, break, line, break, ..., line
    index = (line - 1) * 2
    if not 0 <= index < len(pieces) or old not in pieces[index]:
        return None
    pieces[index] = pieces[index].replace(old, new, 1)
    return (("\ufeff" if bom else "") + "".join(pieces)).encode("utf-8")
