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

A leaf module (it imports nothing of the package): `labels` reads it to name a paper by its
English title while the Korean one is a marker, and `draft.markers` to find the unfinished parts.
"""

from __future__ import annotations

import re

TO_TRANSLATE = "(번역 예정 · to be translated)"
TO_WRITE = "(작성 예정 · to be written)"
MACHINE = "(기계 번역 · machine translation)"

# A part's state, as `check` names it.
STATE_TO_TRANSLATE = "to translate"
STATE_TO_WRITE = "to write"
STATE_TO_REVIEW = "machine translation to review"


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


def still_to_write(korean: str | None) -> bool:
    """Whether a Korean text is only a marker (to translate, to write): no words of its own yet.
    A machine translation to review is text a reader can read."""
    return state_of(korean) not in (None, STATE_TO_REVIEW)
