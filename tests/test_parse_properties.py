"""Property: whatever bytes an editor saves, the parser returns an Issue or raises ParseError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import load_config
from newsletter.errors import ParseError
from newsletter.model import Issue
from newsletter.parse import parse_issue_bytes, parse_issue_text
from newsletter.render import render_issue

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_LINES = (ROOT / "issues" / "2023-10-16.md").read_text(
    encoding="utf-8"
).split("\n")

# Fragments that exercise the grammar's corners when spliced into the sample.
FRAGMENTS = [
    "---", "## ", "### ", "#", "> ", "* ", "  > ", "1. ", "Tags:", "### 논문 소개", "### Abstract",
    "## 소개", "[x](javascript:1)", "<script>", "https://", "```", "    ", "\t", "\r", "\ufeff",
    "title:", "date: 2023-02-30", ": [", "!!python/object:os.system", "~~~", "* * *", "&amp;",
]

settings.register_profile(
    "parser", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def parses_or_reports(outcome) -> None:
    try:
        result = outcome()
    except ParseError as error:
        assert error.line >= 0 and error.message and "\n" not in error.message
        return
    assert isinstance(result, Issue)


@st.composite
def mutated_sample(draw) -> str:
    lines = list(SAMPLE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(lines)))
        action = draw(st.sampled_from(["delete", "duplicate", "insert", "fragment", "swap", "cut"]))
        if action == "delete" and lines:
            del lines[where : where + draw(st.integers(1, 12))]
        elif action == "duplicate" and where < len(lines):
            lines.insert(where, lines[where])
        elif action == "insert":
            lines.insert(where, draw(st.text(max_size=40)))
        elif action == "fragment" and where < len(lines):
            column = draw(st.integers(0, len(lines[where])))
            fragment = draw(st.sampled_from(FRAGMENTS))
            lines[where] = lines[where][:column] + fragment + lines[where][column:]
        elif action == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            where = min(where, len(lines) - 1)
            lines[where], lines[other] = lines[other], lines[where]
        elif action == "cut" and lines:
            lines = lines[: where or 1]
    return "\n".join(lines)


@settings(settings.get_profile("parser"), max_examples=2000)
@given(mutated_sample())
def test_mutations_of_the_sample_parse_or_raise_parse_error(text):
    parses_or_reports(lambda: parse_issue_text(text, "mutated.md"))


@settings(settings.get_profile("parser"), max_examples=1000)
@given(st.text())
def test_arbitrary_text_parses_or_raises_parse_error(text):
    parses_or_reports(lambda: parse_issue_text(text, "arbitrary.md"))


@settings(settings.get_profile("parser"), max_examples=500)
@given(st.binary())
def test_arbitrary_bytes_parse_or_raise_parse_error(data):
    parses_or_reports(lambda: parse_issue_bytes(data, "bytes.md"))


@settings(settings.get_profile("parser"), max_examples=500)
@given(st.lists(st.sampled_from(FRAGMENTS + ["\n", "x", "한", " ", "/"]), max_size=60).map(
    lambda pieces: "---\ntitle: t\ndate: 2023-10-16\n---\n" + "".join(pieces)))
def test_grammar_fragments_after_valid_front_matter(text):
    parses_or_reports(lambda: parse_issue_text(text, "fragments.md"))


# What `check` accepts, `build` renders: any text the parser takes must render to an email.

# Characters that have broken rendering or that editors paste: controls, Word's breaks, Unicode's
# separators and non-characters, MJML/HTML syntax, wide and combining characters.
HOSTILE = st.sampled_from(
    [chr(code) for code in range(0x20)] + ["\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\ufeff", "\ufffe",
     "\uffff", "\ufdd0", "\U0001fffe", "<", ">", "&", "]]>", "<mj-text>", "</mj-text>", "{{", "{%", "\\",
     "\u200b", "가",
     "\u0301", "😀"]
)
PASSAGE = st.lists(st.one_of(HOSTILE, st.characters()), max_size=30).map("".join)


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "newsletter.toml")


@settings(settings.get_profile("parser"), max_examples=300)
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE_LINES)), PASSAGE), min_size=1, max_size=4))
def test_whatever_check_accepts_build_renders(config, insertions):
    lines = list(SAMPLE_LINES)
    for where, text in insertions:
        where = min(where, len(lines) - 1)
        lines[where] = lines[where] + text
    try:
        issue = parse_issue_text("\n".join(lines), "mutated.md")
    except ParseError:
        return
    render_issue(issue, config)
