"""Display columns (Hangul, CJK and emoji take two) and the text part's wrapping by them."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from newsletter import textwidth
from newsletter.plaintext import WIDTH, wrap
from newsletter.textwidth import display_width


def columns(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def test_every_character_of_the_wide_blocks_is_wide():
    ranges = re.findall(r"(.)-(.)", textwidth._WIDE_BLOCKS)
    assert len(ranges) >= 10
    narrow = [hex(code) for start, end in ranges for code in range(ord(start), ord(end) + 1)
              if columns(chr(code)) != 2]
    assert narrow == []


def test_display_width_agrees_with_unicodedata_on_every_character():
    every = [chr(code) for code in range(1, 0x110000) if not 0xD800 <= code <= 0xDFFF]
    assert sum(map(display_width, every[::97])) == sum(map(columns, every[::97]))  # one at a time
    assert display_width("".join(every)) == sum(map(columns, every))
    assert display_width("한국어 ML 😄 ｆ…·") == 6 + 1 + 2 + 1 + 2 + 1 + 2 + 1 + 1


words = st.lists(st.text(st.sampled_from("가나다abcXYZ😄·…ｆ中-/"), min_size=1, max_size=90), max_size=40)


@given(words, st.sampled_from(["", "  ", "   "]))
def test_wrap_keeps_every_word_and_fits_each_line_unless_one_word_is_longer(text_words, indent):
    wrapped = wrap(" ".join(text_words), indent)
    assert wrapped.split() == [word for word in text_words]
    for line in wrapped.split("\n"):
        assert display_width(line) <= WIDTH or len(line.split()) == 1, line
        assert line.startswith(indent) or not line
