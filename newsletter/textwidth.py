"""How many columns a monospace font gives a text: Hangul, CJK and emoji take two. The text part
wraps by it, and the subject and preheader are sized by it (a Hangul syllable is about twice as
wide as a Latin letter in a proportional font too)."""

from __future__ import annotations

import re
import unicodedata

# Characters a monospace font gives two columns: the blocks that are wide from end to end (Hangul
# syllables and jamo, CJK, fullwidth forms; tests check them against unicodedata), and any other
# non-ASCII character unicodedata calls wide (emoji), looked up one at a time, as they are few.
_WIDE_BLOCKS = ("\u1100-\u115f\u2e80-\u303e\u3041-\u3247\u3250-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97c"
                "\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff60\uffe0-\uffe6")
# Matches the empty string after each character of those blocks: a literal replacement there is
# inserted by the regex engine itself, with no Python call per character.
_AFTER_WIDE_BLOCK_CHAR = re.compile(f"(?<=[{_WIDE_BLOCKS}])")
_OTHER_NON_ASCII = re.compile(f"[^\x00-\x7f{_WIDE_BLOCKS}]")
# Follows each wide character while a paragraph is wrapped, so that one character is one column.
SECOND_COLUMN = "\x00"


def widened(text: str) -> str:
    """`text` with a SECOND_COLUMN after each wide character: its length is its display width."""
    text = _AFTER_WIDE_BLOCK_CHAR.sub(SECOND_COLUMN, text.replace(SECOND_COLUMN, ""))
    return _OTHER_NON_ASCII.sub(_widen_one, text)


def _widen_one(match: re.Match) -> str:
    char = match.group(0)
    return char + SECOND_COLUMN if unicodedata.east_asian_width(char) in "WF" else char


def display_width(text: str) -> int:
    """Columns a monospace font gives the text: Hangul and other wide characters take two."""
    return len(widened(text))
