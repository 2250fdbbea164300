"""`newsletter new`: the week's paper list -> a draft issue that parses, builds and says it is a draft."""

from __future__ import annotations

import csv
import re
from html import unescape
from pathlib import Path

import pytest

from conftest import require_pagefind
from draft_fixtures import SAMPLE_LIST, cli, draft_config
from newsletter.checks import draft_warnings
from newsletter.draft import draft_parts
from newsletter.draft.markers import TO_TRANSLATE, TO_WRITE
from newsletter.draft.paperlist import ListedArxivId, clean_url, parse_paper_list
from newsletter.config import load_config
from newsletter.errors import ListError
from newsletter.labels import PREHEADER_COLUMNS
from newsletter.parse import parse_issue
from newsletter.render import render_issue
from newsletter.textwidth import display_width


def sample_rows() -> list[dict[str, str]]:
    with SAMPLE_LIST.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return draft_config(tmp_path)


def test_new_from_the_sample_list_gives_ten_papers_with_the_lists_english(config: Path):
    result = cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    assert result.exit_code == 0, result.output
    path = config.parent / "issues" / "2023-10-16.md"
    assert f"wrote {path}: 10 papers" in result.stdout
    issue = parse_issue(path)
    rows = sample_rows()
    assert len(issue.papers) == len(rows) == 10
    for paper, row in zip(issue.papers, rows):
        assert paper.title_en == row["Title"]
        assert paper.title_ko == TO_TRANSLATE
        assert [p.en.markdown for p in paper.summary] == [row["Description"]]
        assert [p.ko.markdown for p in paper.summary] == [TO_TRANSLATE]
        assert [p.en.markdown for p in paper.abstract] == ([row["Abstract"]] if row["Abstract"] else [])
        assert [link.url for link in paper.links] == [clean_url(row["PaperURL"])]
        assert [link.url for link in paper.read_more] == [clean_url(row["TweetURL"])]
    assert issue.papers[0].read_more[0].url == "https://x.com/zhangir_azerbay/status/1714098025956864031"
    assert issue.papers[4].links[0].url == "https://www.nature.com/articles/s42256-023-00729-y"
    assert issue.title == "[2023/10/16 ~ 10/22] 이번 주의 주요 ML 논문 (Top ML Papers of the Week)"
    assert issue.preheader is None  # derived when rendered: three whole titles ran to 230 characters
    rendered = render_issue(issue, load_config(config))
    assert display_width(rendered.preheader) <= PREHEADER_COLUMNS
    assert rendered.subject.startswith("Llemma, ") and "Self-RAG" in rendered.subject + rendered.preheader
    assert issue.notice and issue.intro[0].ko.markdown == TO_WRITE


def test_check_reports_the_new_draft_with_a_line_per_part_to_write(config: Path):
    cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    path = config.parent / "issues" / "2023-10-16.md"
    result = cli(config, "check", path)
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if ": draft: " in line]
    assert len(lines) == 30  # 10 titles, 10 summaries, 9 abstracts, the introduction
    source = path.read_text(encoding="utf-8").split("\n")
    for line in lines:
        number = int(line.split(":")[1])
        assert TO_TRANSLATE in source[number - 1] or TO_WRITE in source[number - 1]
    assert f"{path}:13: draft: Llemma: title: to translate" in lines[:3]
    assert "a draft: 30 Korean part(s) to finish" in result.stdout.splitlines()[-1]
    data = __import__("json").loads(cli(config, "check", "--json", path).stdout)
    assert len(data["draft"]) == 30


def test_the_draft_builds(config: Path, tmp_path: Path):
    cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    result = cli(config, "build", "-o", tmp_path / "build", config.parent / "issues" / "2023-10-16.md")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "build" / "2023-10-16.html").read_text(encoding="utf-8")
    assert "번역 예정 · to be translated" in html and "작성 예정 · to be written" in html


def test_a_drafts_contents_tell_the_papers_apart_in_the_email_and_the_text_part(config: Path, tmp_path: Path):
    # Every Korean title of a fresh draft is the same marker: the contents list shows each paper's
    # English title instead of ten identical lines (the paper's own heading still shows the marker).
    cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    assert cli(config, "build", "-o", tmp_path / "build", config.parent / "issues" / "2023-10-16.md").exit_code == 0
    titles = [row["Title"] for row in sample_rows()]
    text = (tmp_path / "build" / "2023-10-16.txt").read_text(encoding="utf-8")
    contents = text.split("이번 주의 논문 · In this issue\n\n", 1)[1].split("\n\n", 1)[0]
    assert [" ".join(entry.split()) for entry in re.split(r"(?m)^\d+\. ", contents)[1:]] == titles
    html = (tmp_path / "build" / "2023-10-16.html").read_text(encoding="utf-8")
    toc = html.split('class="toc"', 1)[1].split("</div>", 1)[0]
    entries = [unescape(re.sub(r"<b>\d+</b>\s*", "", entry)).strip() for entry in re.findall(r"<a [^>]*>(.*?)</a>", toc)]
    assert len(set(entries)) == len(titles) and all(title.startswith(entry) for entry, title in zip(entries, titles))
    # Each paper's own heading still says what is missing.
    assert len(re.findall(rf"(?m)^\d+\. {re.escape(TO_TRANSLATE)}\n   \S", text)) == len(titles)
    assert len(re.findall(rf"<h2[^>]*>{re.escape(TO_TRANSLATE)}</h2>", html)) == len(titles)


def test_new_never_overwrites_without_force(config: Path):
    path = config.parent / "issues" / "2023-10-16.md"
    path.parent.mkdir()
    path.write_bytes(b"the editor's work\n")
    result = cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    assert result.exit_code == 1
    assert "exists; pass --force" in result.stderr
    assert path.read_bytes() == b"the editor's work\n"
    assert cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST, "--force").exit_code == 0
    assert len(parse_issue(path).papers) == 10
    assert [p.name for p in path.parent.iterdir()] == ["2023-10-16.md"]  # no temporary file left


def test_columns_are_found_by_header_in_any_case_and_order_and_cp949_is_read(config: Path, tmp_path: Path):
    listing = tmp_path / "list.csv"
    listing.write_bytes(
        " abstract ,PAPER URL,title,Tweet_URL,description\r\n"
        "초록 없음,https://arxiv.org/abs/2310.10631,라마 수학 Llemma,,수학 언어 모델\r\n".encode("cp949")
    )
    result = cli(config, "new", "2023-10-16", "--from", listing)
    assert result.exit_code == 0, result.output
    paper = parse_issue(config.parent / "issues" / "2023-10-16.md").papers[0]
    assert (paper.title_en, paper.summary[0].en.markdown, paper.abstract[0].en.markdown) == (
        "라마 수학 Llemma", "수학 언어 모델", "초록 없음")
    assert paper.read_more == ()


def test_a_bom_and_markdown_in_titles_and_texts_keep_the_text_as_listed():
    data = ("\ufeffTitle,Description,PaperURL\n"
            '"*Star* [x] <b> #1 & co / two",'
            '"# not a heading\n- not a list\n1. not a list\n\nsecond paragraph",https://example.org/p\n').encode()
    papers = parse_paper_list(data, "list.csv")
    from newsletter.config import DraftSettings
    from newsletter.draft import draft_text
    import datetime as dt
    from newsletter.parse import parse_issue_text

    issue = parse_issue_text(draft_text(dt.date(2023, 10, 16), papers, DraftSettings()))
    paper = issue.papers[0]
    assert paper.title_en == "*Star* [x] <b> #1 & co / two"
    assert len(paper.summary) == 1 and paper.summary[0].ko.markdown == TO_TRANSLATE
    assert "second paragraph" in paper.summary[0].en.markdown


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(config: Path, tmp_path: Path):
    listing = tmp_path / "list.csv"
    listing.write_text(
        "Title,Description,PaperURL,TweetURL\n"             # 1
        'Good,"two\nlines",https://arxiv.org/abs/1,\n'        # 2-3
        ",no title,https://arxiv.org/abs/2,\n"               # 4
        "Bad link,x,javascript:alert(1),\n"                  # 5
        "Too many,a,https://arxiv.org/abs/3,,extra\n"        # 6
        "\n"                                                 # 7
        "Twice,b,https://arxiv.org/abs/1,\n"                 # 8
        "Evil text,[x](javascript:alert(1)),https://arxiv.org/abs/9,\n",  # 9
        encoding="utf-8",
    )
    result = cli(config, "new", "2023-10-16", "--from", listing)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{listing}:4: no title in the Title column",
        f"{listing}:5: Bad link: the paper link: link 'javascript:alert(1)' has scheme 'javascript'; "
        "expected an absolute http, https or mailto URL",
        f"{listing}:6: 5 fields but the header names 4; quote a field that holds a comma",
        f"{listing}:8: Twice: the same paper link as line 2",
    ]
    assert not (config.parent / "issues").exists()
    # With the rows fixed, the text that would break the issue is named on its line too.
    listing.write_text("Title,Description,PaperURL\nOk,fine,https://a.example/1\n"
                       "Evil text,[x](javascript:alert(1)),https://a.example/2\n", encoding="utf-8")
    result = cli(config, "new", "2023-10-16", "--from", listing)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{listing}:3: in the summary: link 'javascript:alert(1)'")
    assert "Traceback" not in result.output


def test_bytes_neither_utf8_nor_cp949_are_reported_with_their_line(config: Path, tmp_path: Path):
    listing = tmp_path / "list.csv"
    listing.write_bytes(b"Title,Description\nA,ok\nB,\xff\xfe bad\n")
    result = cli(config, "new", "2023-10-16", "--from", listing)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{listing}:3: byte 0xff is neither UTF-8 nor CP949; save the list as UTF-8"


def test_a_text_file_of_arxiv_ids_and_urls_is_read_line_by_line():
    ids = parse_paper_list(
        b"# this week\n2310.10631\nhttps://arxiv.org/abs/2310.11511v2\narXiv:2310.12150  # long-form QA\n"
        b"https://arxiv.org/pdf/2310.10634v1.pdf\nhep-th/9901001\n\n", "ids.txt")
    assert ids == [
        ListedArxivId(2, "2310.10631"), ListedArxivId(3, "2310.11511", "v2"), ListedArxivId(4, "2310.12150"),
        ListedArxivId(5, "2310.10634", "v1"), ListedArxivId(6, "hep-th/9901001"),
    ]
    with pytest.raises(ListError) as caught:
        parse_paper_list(b"2310.10631\nnot an id\n2310.10631v3\n", "ids.txt")
    assert caught.value.problems[0][0] == 2 and "is not an arXiv id" in caught.value.problems[0][1]
    assert caught.value.problems[1] == (3, "arXiv 2310.10631 is already on line 1")


def test_the_title_pattern_comes_from_the_config(tmp_path: Path):
    config = draft_config(tmp_path, extra='')
    text = config.read_text(encoding="utf-8").replace(
        '[draft]\nfolder = "issues"', '[draft]\nfolder = "drafts"\ntitle = "Week of {date:%B %d}"\nnotice = []')
    config.write_text(text, encoding="utf-8")
    assert cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST).exit_code == 0
    issue = parse_issue(tmp_path / "drafts" / "2023-10-16.md")
    assert issue.title == "Week of October 16" and issue.notice is None
    config.write_text(text.replace("{date:%B %d}", "{week}"), encoding="utf-8")
    result = cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    assert result.exit_code == 1 and "draft.title: not a usable pattern" in result.stderr


def test_send_to_the_list_refuses_a_draft_but_a_dry_run_and_allow_draft_go_on(tmp_path: Path, smtp_server, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "s" * 40)
    config = draft_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8").replace('kind = "ses"', 'kind = "smtp"').replace(
        'host = "127.0.0.1"', f'host = "127.0.0.1"\nport = {smtp_server.port}'), encoding="utf-8")
    cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    cli(config, "subscribers", "add", "reader@example.org")
    path = config.parent / "issues" / "2023-10-16.md"
    result = cli(config, "send", "--yes", path)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path} is a draft: 30 Korean part(s) not finished (first: line 11")
    assert "--allow-draft" in result.stderr
    dry_run = cli(config, "send", "--dry-run", path)
    assert dry_run.exit_code == 0
    assert "note: a draft: 30 Korean part(s) not finished" in dry_run.stderr
    assert smtp_server.messages == []
    allowed = cli(config, "send", "--yes", "--allow-draft", path)
    assert allowed.exit_code == 0, allowed.output
    assert len(smtp_server.messages) == 1


def test_publish_refuses_a_draft_unless_allowed(tmp_path: Path):
    require_pagefind()
    config = draft_config(tmp_path)
    cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    path = config.parent / "issues" / "2023-10-16.md"
    site = tmp_path / "site"
    refused = cli(config, "publish", "--out", site, path)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: {path} is a draft: 30 Korean part(s) not finished")
    assert not site.exists()
    assert cli(config, "publish", "--out", site, "--allow-draft", path).exit_code == 0
    assert (site / "2023-10-16.web.html").is_file()


def test_a_finished_issue_is_no_draft():
    sample = parse_issue(Path(__file__).resolve().parent.parent / "issues" / "2023-10-16.md")
    assert draft_parts(sample) == [] and draft_warnings(sample) == []


def test_a_marker_counts_only_as_the_whole_korean_text_or_its_start():
    from newsletter.draft.markers import MACHINE, STATE_TO_REVIEW, STATE_TO_TRANSLATE, STATE_TO_WRITE, state_of

    assert state_of(f"  {TO_TRANSLATE}\n") == STATE_TO_TRANSLATE
    assert state_of(f"* {TO_WRITE}") == STATE_TO_WRITE
    assert state_of(f"{MACHINE} 번역된 글.") == STATE_TO_REVIEW
    assert state_of(f"앞 문장 {TO_TRANSLATE}") is None
    assert state_of(f"검토한 글. {MACHINE}") is None
    assert state_of(None) is None


def test_review_drops_the_markers_of_the_papers_asked_for_only(config: Path, tmp_path: Path):
    cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    path = config.parent / "issues" / "2023-10-16.md"
    assert cli(config, "review", path).exit_code == 2  # --paper N or --all: never by accident
    result = cli(config, "review", "--paper", "11", path)
    assert result.exit_code == 1 and "has 10 papers; there is no paper 11" in result.stderr
    # Nothing machine-written yet: review changes nothing.
    before = path.read_bytes()
    assert cli(config, "review", "--all", path).stdout.startswith("0 part(s) marked reviewed; 30")
    assert path.read_bytes() == before


def test_the_draft_is_written_through_a_symlink_not_over_it(config: Path, tmp_path: Path):
    from newsletter.atomicfile import write_atomically

    target = tmp_path / "real.md"
    target.write_bytes(b"old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    write_atomically(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_new_without_a_list_writes_a_skeleton_that_parses_and_builds(config: Path, tmp_path: Path):
    result = cli(config, "new", "2023-10-23")
    assert result.exit_code == 0, result.output
    path = config.parent / "issues" / "2023-10-23.md"
    issue = parse_issue(path)
    assert issue.title.startswith("[2023/10/23 ~ 10/29]") and issue.preheader is None
    assert [part.where for part in draft_parts(issue)] == ["introduction", f"{TO_WRITE}: title",
                                                          f"{TO_WRITE}: summary", f"{TO_WRITE}: abstract"]
    assert cli(config, "build", "-o", tmp_path / "build", path).exit_code == 0
    assert cli(config, "new", "2023-10-23").exit_code == 1  # and it is not replaced by accident


def test_a_sheet_pasted_as_tsv_or_a_semicolon_csv_is_read_too():
    for delimiter in ("\t", ";"):
        data = delimiter.join(["Title", "Description", "Paper URL"]) + "\n" + \
            delimiter.join(["Llemma", "math, with a comma", "https://arxiv.org/abs/2310.10631"]) + "\n"
        (paper,) = parse_paper_list(data.encode(), "list")
        assert (paper.title, paper.summary, paper.paper_url) == (
            "Llemma", "math, with a comma", "https://arxiv.org/abs/2310.10631")
