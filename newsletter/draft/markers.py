"""The draft markers: plain Markdown text that says a Korean part is still to be written, or was
written by a machine and is not reviewed yet (docs/issue-format.md, "Drafts").

They are ordinary text on purpose. Raw HTML is off in the issue dialect, so an HTML comment would
show as literal text; a marker instead renders as what it says ("(번역 예정 · to be translated)"),
so a draft previews and builds at every stage and the editor sees in the email what is unfinished.

- `(번역 예정 · to be translated)` as the whole Korean text of a title, summary or abstract
  passage: `newsletter translate` fills it from the English original beside it.
- `(작성 예정 · to be written)` as the whole Korean text: the editor writes it (the introduction,
  a summary with no English to translate from).
- `(기계 번역 · machine translation)` at the start of a Korean text: a machine wrote it; the
  editor deletes the marker once the text is reviewed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DraftError
from ..model import Bilingual, Issue

TO_TRANSLATE = "(번역 예정 · to be translated)"
TO_WRITE = "(작성 예정 · to be written)"
MACHINE = "(기계 번역 · machine translation)"

# A part's state, as `check` names it.
STATE_TO_TRANSLATE = "to translate"
STATE_TO_WRITE = "to write"
STATE_TO_REVIEW = "machine translation to review"


@dataclass(frozen=True)
class DraftPart:
    """One Korean part of an issue that is not finished: where it is and what is missing."""

    line: int  # the line of the Korean text (a title: the paper's heading) in the issue file
    state: str  # STATE_TO_TRANSLATE | STATE_TO_WRITE | STATE_TO_REVIEW
    where: str  # "Llemma: summary", "introduction"
    kind: str  # "title" or "text": how a translation of it is written back
    english: str | None = None  # the English original (Markdown as written), if there is one


def _squeezed(text: str) -> str:
    """Whitespace squeezed, and a lone list marker before the text dropped ('* (작성 예정 …)')."""
    return re.sub(r"^(?:[*+-]|\d{1,9}[.)]) (?=\()", "", " ".join(text.split()))


def state_of(korean: str | None) -> str | None:
    """The draft state of a Korean text (a title or a passage's Markdown), None when finished."""
    if korean is None:
        return None
    squeezed = _squeezed(korean)
    if squeezed == TO_TRANSLATE:
        return STATE_TO_TRANSLATE
    if squeezed == TO_WRITE:
        return STATE_TO_WRITE
    if squeezed.startswith(MACHINE):
        return STATE_TO_REVIEW
    return None


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
