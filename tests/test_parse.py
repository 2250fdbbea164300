"""The issue format: the sample week parses completely, and every bad input is a ParseError with
the line it is on."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.errors import ParseError
from newsletter.markup import to_plain
from newsletter.model import Issue
from newsletter.parse import parse_issue, parse_issue_bytes, parse_issue_text
from newsletter.render import render_issue

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "issues" / "2023-10-16.md"
# A copy of ../shared/seeds/2023-10-16-top-ml-papers.txt, the forum export the sample was made from.
SEED = ROOT / "tests" / "data" / "2023-10-16-top-ml-papers.txt"
SEED_TAGS = {"mathglm #": "mathglm", "rag": "rag", "chain-of-thought": "chain-of-thought"}
SEED_LABELS = {"소개", "논문 소개", "논문 초록", "논문 링크", "더 읽어보기", "원문"}

HEADER = "---\ntitle: 테스트 호\ndate: 2023-10-16\n---\n"


def issue_text(body: str, header: str = HEADER) -> str:
    return header + body


def parse(body: str, header: str = HEADER) -> Issue:
    return parse_issue_text(issue_text(body, header), "t.md")


def all_text(issue: Issue) -> str:
    """Everything a reader can read in the parsed issue, whitespace-normalised."""
    parts = [issue.title]
    passages = list(issue.intro)
    if issue.notice:
        parts.append(to_plain(issue.notice))
    for paper in issue.papers:
        parts.append(" / ".join(title for title in (paper.title_ko, paper.title_en) if title))
        passages += list(paper.summary) + list(paper.abstract)
    for passage in passages:
        parts += [to_plain(text) for text in (passage.ko, passage.en) if text]
    return " ".join(" ".join(parts).split())


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "newsletter.toml")


@pytest.fixture(scope="module")
def sample() -> Issue:
    return parse_issue(SAMPLE)


def test_sample_has_ten_papers_and_only_genbench_lacks_an_abstract(sample):
    assert sample.issue_id == "2023-10-16"
    assert len(sample.papers) == 10
    assert [p.title_en for p in sample.papers if not p.abstract] == ["GenBench"]
    for paper in sample.papers:
        assert paper.summary and paper.links and paper.read_more, paper.title
        for passage in paper.summary + paper.abstract:
            assert passage.ko and passage.en, paper.title


def test_sample_keeps_notice_intro_tags_and_clean_links(sample):
    assert "GPT 모델로 자동 요약한 설명" in to_plain(sample.notice)
    assert "주요 트렌드는 크게 두 가지" in to_plain(sample.intro[0].ko)
    tags = {paper.title_en: paper.tags for paper in sample.papers if paper.tags}
    assert sorted(tags.values()) == [("chain-of-thought",), ("mathglm",), ("rag",)]
    urls = [link.url for paper in sample.papers for link in paper.links + paper.read_more]
    assert len(urls) == 20
    assert not [url for url in urls if "?s=" in url or "utm_" in url]
    assert "https://www.nature.com/articles/s42256-023-00729-y" in urls


def seed_sentences() -> list[str]:
    sentences = []
    for raw in SEED.read_text(encoding="utf-8").splitlines()[1:]:  # line 1 is the title
        line = raw.strip().removeprefix("•").strip()
        if not line or line in SEED_LABELS or line.startswith("https://"):
            continue
        for tail in SEED_TAGS:
            if line.endswith(" " + tail):
                line = line[: -len(tail) - 1]
        sentences += [s for s in re.split(r"(?<=[.!?])\s+", line) if s]
    return sentences


def test_every_sentence_of_the_seed_is_in_the_parsed_issue(sample):
    text = all_text(sample)
    sentences = seed_sentences()
    assert len(sentences) > 150
    missing = [s for s in sentences if " ".join(s.split()) not in text]
    assert missing == []
    title = SEED.read_text(encoding="utf-8").splitlines()[0].strip()
    assert sample.title == title


def test_tag_words_become_tags_not_text(sample):
    llemma = sample.papers[0]
    assert llemma.tags == ("mathglm",)
    assert "mathglm" not in to_plain(llemma.summary[0].ko)


def test_slugs_are_stable_unique_ascii(sample):
    slugs = [paper.slug for paper in sample.papers]
    assert len(set(slugs)) == 10
    assert all(re.fullmatch(r"[a-z0-9-]+", slug) for slug in slugs)
    assert slugs[0] == "llemma-an-open-language-model-for-mathematics"
    issue = parse("## 한국어만\n\n## 한국어만\n\n## Same\n\n## Same\n")
    assert [p.slug for p in issue.papers][2:] == ["same", "same-2"]
    assert issue.papers[0].slug.startswith("paper-") and issue.papers[1].slug.endswith("-2")
    assert parse("## 한국어만\n").papers[0].slug == issue.papers[0].slug


def test_whitespace_variants_are_accepted_silently(sample):
    text = SAMPLE.read_text(encoding="utf-8")
    variants = {
        "crlf": text.replace("\n", "\r\n").encode(),
        "bom": b"\xef\xbb\xbf" + text.encode(),
        "trailing spaces": "\n".join(line + "  \t" for line in text.split("\n")).encode(),
        "blank lines": text.replace("\n\n", "\n\n\n\n").encode(),
        "tabs": text.replace("\n  > ", "\n\t> ").encode(),
    }
    for name, data in variants.items():
        issue = parse_issue_bytes(data, SAMPLE)
        assert without_lines(issue) == without_lines(sample), name


def without_lines(issue: Issue) -> Issue:
    return dataclasses.replace(issue, papers=tuple(dataclasses.replace(p, line=0) for p in issue.papers))


def test_forum_and_top_level_passages():
    issue = parse(
        "## 제목 / Title\n\n### 논문 소개\n\n"
        "* 첫째 한국어 *강조* `code`.\n\n  > First English.\n"
        "* 둘째 한국어.\n  > Second English\n  > continues.\n\n"
        "### Abstract\n\n한국어 문단.\n\n> English paragraph with [a link](https://example.org/x).\n\n"
        "- 목록 하나\n- 목록 둘\n\n> English list original.\n"
    )
    paper = issue.papers[0]
    assert [(to_plain(p.ko), to_plain(p.en)) for p in paper.summary] == [
        ("첫째 한국어 강조 code.", "First English."),
        ("둘째 한국어.", "Second English continues."),
    ]
    assert paper.summary[0].ko.markdown == "첫째 한국어 *강조* `code`."
    assert [(to_plain(p.ko), to_plain(p.en)) for p in paper.abstract] == [
        ("한국어 문단.", "English paragraph with a link (https://example.org/x)."),
        ("• 목록 하나\n• 목록 둘", "English list original."),
    ]


def test_titles_split_into_korean_and_english():
    issue = parse("## 한국어 제목 / English: A/B Title\n\n## English Only\n\n## 한국어만\n")
    assert [(p.title_ko, p.title_en) for p in issue.papers] == [
        ("한국어 제목", "English: A/B Title"),
        (None, "English Only"),
        ("한국어만", None),
    ]


def test_links_bare_markdown_and_lists():
    issue = parse(
        "## P\n\n### Paper\n\nhttps://arxiv.org/abs/1\n[PDF](https://arxiv.org/pdf/1)\n\n"
        "### 더 읽어보기\n\n* https://x.com/a\n* <https://x.com/b>\n* [메일](mailto:a@example.com)\n"
    )
    paper = issue.papers[0]
    assert [(l.url, l.label) for l in paper.links] == [
        ("https://arxiv.org/abs/1", None),
        ("https://arxiv.org/pdf/1", "PDF"),
    ]
    assert [l.url for l in paper.read_more] == ["https://x.com/a", "https://x.com/b", "mailto:a@example.com"]


def test_raw_html_stays_text():
    issue = parse("## P\n\n### Summary\n\n<script>alert(1)</script> <b onclick=\"x()\">굵게</b>\n\n> <img src=x onerror=alert(1)>\n")
    passage = issue.papers[0].summary[0]
    assert "<script>alert(1)</script>" in to_plain(passage.ko)
    assert "<img src=x onerror=alert(1)>" in to_plain(passage.en)


def test_front_matter_fields():
    issue = parse(
        "## P\n",
        header='---\ntitle: "T"\ndate: "2024-01-02"\nsubject: S\npreheader: P h\nsource_url: https://example.org/t/1\n---\n',
    )
    assert (issue.title, issue.date.isoformat(), issue.subject, issue.preheader, issue.source_url) == (
        "T", "2024-01-02", "S", "P h", "https://example.org/t/1",
    )


# --- bad input: each case names its line and says what was expected -------------------------

BAD_INPUTS = {
    "no front matter": ("# 제목\n\n## P\n", 1, "must start with YAML front matter"),
    "front matter never closed": ("---\ntitle: x\ndate: 2023-10-16\n## P\n", 1, "never closed"),
    "no date": ("---\ntitle: x\n---\n\n## P\n", 3, "no 'date:'"),
    "bad date": ("---\ntitle: x\ndate: next monday\n---\n## P\n", 3, "not a date; expected YYYY-MM-DD"),
    "unknown front matter key": ("---\ntitle: x\ndate: 2023-10-16\nsubjet: y\n---\n## P\n", 4, "unknown front matter key 'subjet'"),
    "broken yaml": ("---\ntitle: [x\ndate: 2023-10-16\n---\n## P\n", 3, "not valid YAML"),
    "section before any paper": (HEADER + "\n### 논문 소개\n\n본문\n", 6, "before any paper"),
    "unknown section": (HEADER + "## P\n\n### 요약\n", 7, "unknown section heading '### 요약'"),
    "section twice": (HEADER + "## P\n\n### Summary\n\n글\n\n### 논문 소개\n", 11, "second '논문 소개 / Summary' section in paper 'P' (the first is at line 7)"),
    "paper with no title": (HEADER + "## P\n\n##\n", 7, "paper heading with no title"),
    "no paper": (HEADER + "## 소개\n\n인사말\n", 8, "has no paper"),
    "javascript link": (HEADER + "## P\n\n### Summary\n\n글 [클릭](javascript:alert(1))\n", 9, "scheme 'javascript'"),
    "data link": (HEADER + "## P\n\n### Summary\n\n글\n\n> ![x](data:text/html;base64,PHNjcmlwdD4=)\n", 11, "scheme 'data'"),
    "relative link": (HEADER + "## P\n\n### Read more\n\n* [x](/local/page)\n", 9, "no scheme"),
    "not a link in links": (HEADER + "## P\n\n### 논문 링크\n\n여기를 보세요\n", 9, "expected a link"),
    "text under paper title": (HEADER + "## P\n\n떠도는 문단\n", 7, "expected a section heading first"),
    "text before first heading": (HEADER + "소개 없는 문단\n\n## P\n", 5, "text before the first '##' heading"),
    "level-1 heading": (HEADER + "# 제목\n\n## P\n", 5, "level-1 heading"),
    "level-4 heading": (HEADER + "## P\n\n#### 작은 제목\n", 7, "level-4 heading"),
    "second intro": (HEADER + "## 소개\n\n글\n\n## Introduction\n\n## P\n", 9, "second introduction (the first is at line 5)"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_a_parse_error_with_line_and_reason(case):
    text, line, message = BAD_INPUTS[case]
    with pytest.raises(ParseError) as caught:
        parse_issue_text(text, "bad.md")
    error = caught.value
    assert (error.path, error.line) == ("bad.md", line), error
    assert message in error.message
    assert str(error) == f"bad.md:{line}: {error.message}"


def test_bytes_that_are_not_utf8_name_their_line():
    data = (HEADER + "## P\n\n### Summary\n\n").encode() + "한국어".encode("cp949") + b"\n"
    with pytest.raises(ParseError) as caught:
        parse_issue_bytes(data, "euc.md")
    assert caught.value.line == 9
    assert "not UTF-8" in caught.value.message


def test_missing_file_is_a_parse_error(tmp_path):
    with pytest.raises(ParseError, match="cannot read"):
        parse_issue(tmp_path / "nope.md")


def test_the_documented_example_parses():
    doc = (ROOT / "docs" / "issue-format.md").read_text(encoding="utf-8")
    example = doc.split("```markdown\n", 1)[1].split("\n```\n", 1)[0]
    issue = parse_issue_text(example, "docs/issue-format.md")
    assert [p.title_en for p in issue.papers] == ["Llemma: An Open Language Model For Mathematics", "GenBench"]
    assert issue.papers[0].tags == ("mathglm", "math")
    assert issue.notice and issue.intro and issue.source_url


def test_sample_links_are_the_csv_links_without_tracking_parameters(sample):
    import csv

    with open(ROOT / "tests" / "data" / "2023-10-16-paper-links.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(sample.papers)
    for row, paper in zip(rows, sample.papers):
        paper_url = re.sub(r"\?utm_.*$", "", row["PaperURL"])
        tweet_url = row["TweetURL"].removesuffix("?s=20")
        assert [link.url for link in paper.links] == [paper_url], paper.title
        assert [link.url for link in paper.read_more] == [tweet_url], paper.title


def test_check_warns_about_what_an_editor_should_look_at():
    from newsletter.checks import issue_warnings

    issue = parse(
        "## 제목 / Title\n\n### Summary\n\n한국어만.\n\n"
        "## Other\n\n### Summary\n\n* 한국어\n\n  > English\n\n### Paper\n\nhttps://a.example/1\n\n"
        "## 셋째 / Third\n\n### Read more\n\nhttps://a.example/1\n"
    )
    messages = [(w.line, w.message) for w in issue_warnings(issue)]
    assert messages == [
        (0, "the issue has no introduction ('## 소개')"),
        (5, "Title: no paper link ('### 논문 링크')"),
        (5, "Title: a summary passage has no English original"),
        (11, "Other: no Korean title ('## 한국어 제목 / English Title')"),
        (23, "Third: no paper link ('### 논문 링크')"),
        (23, "Third: no summary ('### 논문 소개')"),
        (23, "Third: link https://a.example/1 also appears under Other"),
    ]


# --- the input stage: keys given twice, control characters, deep nesting, every error at once ---


def test_a_front_matter_key_given_twice_is_an_error_on_the_second():
    text = "---\ntitle: x\ndate: 2023-10-16\nsubject: s\ndate: 2023-10-23\n---\n## P\n"
    with pytest.raises(ParseError) as caught:
        parse_issue_text(text, "twice.md")
    assert str(caught.value) == "twice.md:5: 'date:' is given twice (first at line 3); keep one"


LINE_BREAKS = {"vertical tab (Word)": "\v", "form feed": "\f", "NEL": "\x85", "LS": "\u2028", "PS": "\u2029"}


@pytest.mark.parametrize("char", LINE_BREAKS.values(), ids=list(LINE_BREAKS))
def test_line_breaks_from_word_and_unicode_become_line_breaks_and_lines_keep_their_numbers(char, config):
    issue = parse(f"## P\n\n### Summary\n\n첫 줄{char}둘째 줄\n\n> first{char}second\n")
    passage = issue.papers[0].summary[0]
    assert (passage.ko.markdown, passage.en.markdown) == ("첫 줄\n둘째 줄", "first\nsecond")
    render_issue(issue, config)  # what check accepts, build renders
    with pytest.raises(ParseError) as caught:  # the break does not shift the lines below it
        parse(f"## P\n\n### Summary\n\n가{char}나\n\n### 요약\n")
    assert caught.value.line == 11


CONTROLS = {
    "NUL": ("\x00", "U+0000 (NUL)"), "BEL": ("\x07", "U+0007 (BEL)"), "ESC": ("\x1b", "U+001B (ESC)"),
    "DEL": ("\x7f", "U+007F (DEL)"), "C1 CSI": ("\x9b", "U+009B"), "file separator": ("\x1c", "U+001C"),
    "U+FFFE": ("\ufffe", "non-character U+FFFE"), "U+FFFF": ("\uffff", "non-character U+FFFF"),
    "lone surrogate": ("\ud800", "lone surrogate U+D800"),
}


@pytest.mark.parametrize("case", CONTROLS, ids=list(CONTROLS))
def test_a_control_character_is_an_error_with_its_line_and_column(case):
    char, named = CONTROLS[case]
    with pytest.raises(ParseError) as caught:
        parse(f"## P\n\n### Summary\n\n한국어 {char}본문\n")
    assert caught.value.line == 9
    assert caught.value.message.endswith(f"{named} at column 5; delete it")


def test_a_control_character_in_the_front_matter_is_named_not_a_yaml_error():
    with pytest.raises(ParseError) as caught:
        parse_issue_text("---\ntitle: 제목\x1b[1m\ndate: 2023-10-16\n---\n## P\n", "t.md")
    assert [str(error) for error in caught.value.errors] == [
        "t.md:2: an invisible control character U+001B (ESC) at column 10; delete it"]


def nested(kind: str, depth: int) -> str:
    if kind == "quote":
        return "".join("> " * level + f"q{level}\n" + "> " * level + "\n" for level in range(1, depth + 1))
    return "".join("  " * level + f"* l{level}\n" for level in range(depth))


@pytest.mark.parametrize("kind", ["quote", "list"])
def test_lists_and_quotes_nested_too_deep_are_an_error_not_lost_text(kind):
    kept = parse("## P\n\n### Summary\n\n" + nested(kind, 8))
    assert all(f"{kind[0]}{level}" in all_text(kept) for level in range(1 if kind == "quote" else 0, 8))
    with pytest.raises(ParseError) as caught:
        parse("## P\n\n### Summary\n\n" + nested(kind, 25))
    assert caught.value.line > 9
    assert "nested more than 8 levels deep" in caught.value.message


def test_every_error_is_reported_each_with_its_line():
    text = (
        "---\ntitle: t\ndate: 2023-10-16\nsubjet: s\n---\n"  # 4: unknown key
        "## P\n\n### 요약\n\n본문\n\n"  # 8: unknown section (its text skipped, not an error)
        "## Q\n\n### Summary\n\n글 [x](javascript:alert(1))\n\n"  # 16: bad link
        "#### 작은 제목\n\n"  # 18: level-4 heading
        "## R\n\n떠도는 문단\n\n또 하나\n"  # 22: text under the title (once)
    )
    with pytest.raises(ParseError) as caught:
        parse_issue_text(text, "many.md")
    errors = caught.value.errors
    assert [error.line for error in errors] == [4, 8, 16, 18, 22]
    assert str(caught.value) == str(errors[0]) and "unknown front matter key 'subjet'" in str(errors[0])
    assert all(str(error).startswith(f"many.md:{error.line}: ") for error in errors)


@pytest.mark.parametrize(
    ("line", "hint"),
    [("subjet: s", "unknown front matter key 'subjet'; did you mean 'subject'?"),
     ("preheder: p", "unknown front matter key 'preheder'; did you mean 'preheader'?"),
     ("source: s", "unknown front matter key 'source'; did you mean 'source_url'?"),
     ("colour: red", "unknown front matter key 'colour'; expected one of title, date, subject, preheader, source_url, "
                     "email_notice, web_notice")],
)
def test_a_front_matter_typo_names_the_closest_key_as_config_typos_do(line, hint):
    with pytest.raises(ParseError) as caught:
        parse_issue_text(f"---\ntitle: t\ndate: 2023-10-16\n{line}\n---\n## P\n\n### Summary\n\n글\n", "typo.md")
    assert str(caught.value) == f"typo.md:4: {hint}"
