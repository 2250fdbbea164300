"""render: the sample issue through Jinja2 -> MJML -> premailer, the text part, the web page, and
the `build` and `preview` commands (the preview through a real waitress server)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner

from newsletter import labels, markup
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.errors import ParseError, TemplateError
from newsletter.model import UNSUBSCRIBE_URL_PLACEHOLDER, Bilingual, Issue, Link, Paper, Text
from newsletter.parse import parse_issue, parse_issue_text
from newsletter.plaintext import WIDTH
from newsletter.preview import PreviewSite, create_preview_server
from newsletter.render import GMAIL_CLIP_BYTES, bundled_templates_dir, measure, render_issue
from newsletter.textwidth import display_width

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2023-10-16.md"
HIDING = re.compile(r"display\s*:\s*none|max-height\s*:\s*0|visibility\s*:\s*hidden|mso-hide", re.I)
URL = re.compile(r"https?://\S+")


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "newsletter.toml")


@pytest.fixture(scope="module")
def issue():
    return parse_issue(SAMPLE)


@pytest.fixture(scope="module")
def rendered(issue, config):
    return render_issue(issue, config)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def visible_text(document: str) -> str:
    """What a reader sees: the body's text, entities decoded."""
    return normalise(html.unescape(lxml.html.fromstring(document).body.text_content()))


def sentences(issue: Issue) -> list[str]:
    """Every sentence of the issue in both languages: titles plus each Text as plain text."""
    texts = [part for part in labels.headline(issue) if part]
    passages = list(issue.intro)
    for paper in issue.papers:
        texts += [title for title in (paper.title_ko, paper.title_en) if title]
        passages += paper.summary + paper.abstract
    plain = [markup.to_plain(text) for passage in passages for text in (passage.ko, passage.en) if text]
    notice = issue.email_notice or issue.notice
    if notice:
        plain.append(markup.to_plain(notice))
    for block in plain:
        for line in block.split("\n"):
            line = re.sub(r"^\s*(•|\d+\.)\s+", "", line)
            texts += [part for part in re.split(r"(?<=[.!?])\s+", line) if part.strip()]
    return [normalise(labels.emojize(text)) for text in texts]


def english_blocks(document: str):
    """The English text of the issue (the toggle's own English words left out)."""
    return lxml.html.fromstring(document).xpath("//body//*[@lang='en'][not(ancestor::label)]")


def paper(**changes) -> Paper:
    base = Paper(
        slug="p",
        title_ko="한국어 제목",
        title_en="English title",
        summary=(Bilingual(Text("한국어 요약."), Text("English summary.")),),
        links=(Link("https://arxiv.org/abs/2310.10631"),),
    )
    return dataclasses.replace(base, **changes)


def issue_with(*papers: Paper) -> Issue:
    return Issue(title="Test issue", date=dt.date(2023, 10, 16), papers=papers)


# --- content -----------------------------------------------------------------------------------


def test_every_sentence_of_the_sample_is_in_the_html_and_the_text_part(issue, rendered):
    html_text, text_part = visible_text(rendered.html), normalise(rendered.text)
    expected = sentences(issue)
    assert len(expected) > 100  # both languages of all ten papers, not an empty list
    assert any(re.search("[가-힣]", s) for s in expected) and any(re.fullmatch(r"[ -~’]+", s) for s in expected)
    assert [s for s in expected if s not in html_text] == []
    assert [s for s in expected if s not in text_part] == []


def test_every_link_is_in_the_html_and_written_out_in_the_text_part(issue, rendered):
    hrefs = {a.get("href") for a in lxml.html.fromstring(rendered.html).iter("a")}
    for paper in issue.papers:
        for link in paper.links + paper.read_more:
            assert link.url in hrefs
            assert link.url in rendered.text.split()


def test_output_has_no_mjml_tag_script_or_google_fonts(rendered):
    for document in (rendered.html, rendered.web_html):
        assert not re.search(r"<\/?mj-", document)
        assert "<script" not in document.lower()
        assert "fonts.googleapis" not in document and "<link" not in document.lower()
    assert "data-premailer" not in rendered.html


def test_unsubscribe_placeholder_is_a_link_in_the_email_and_text_but_not_on_the_web(rendered):
    hrefs = [a.get("href") for a in lxml.html.fromstring(rendered.html).iter("a")]
    assert UNSUBSCRIBE_URL_PLACEHOLDER in hrefs
    assert UNSUBSCRIBE_URL_PLACEHOLDER in rendered.text.split()
    assert UNSUBSCRIBE_URL_PLACEHOLDER not in rendered.web_html


def test_footer_has_web_link_reason_and_postal_address(rendered, config):
    text = visible_text(rendered.html)
    assert config.postal_address in text and config.postal_address in rendered.text
    assert "You are receiving this because you subscribed" in text
    hrefs = [a.get("href") for a in lxml.html.fromstring(rendered.html).iter("a")]
    assert f"{config.web_base_url}2023-10-16.web.html" in hrefs


def test_table_of_contents_links_to_every_paper_card(issue, rendered):
    document = lxml.html.fromstring(rendered.html)
    targets = [a.get("href") for a in document.find_class("toc")[0].iter("a")]
    assert targets == [f"#p{number}" for number in range(1, len(issue.papers) + 1)]  # short: bytes count
    assert all(document.get_element_by_id(target[1:]) is not None for target in targets)
    web = lxml.html.fromstring(rendered.web_html)  # the archive keeps the stable slugs
    assert [a.get("href") for a in web.find_class("toc")[0].iter("a")] == [f"#{p.slug}" for p in issue.papers]
    assert all(web.get_element_by_id(paper.slug) is not None for paper in issue.papers)


# --- the email's design --------------------------------------------------------------------------


def test_document_is_korean_and_every_english_original_is_marked_english(issue, rendered):
    document = lxml.html.fromstring(rendered.html)
    assert document.get("lang") == "ko"
    english = {normalise(block.text_content()) for block in english_blocks(rendered.html)}
    for paper in issue.papers:
        for passage in paper.summary + paper.abstract:
            if passage.en:
                assert normalise(markup.to_plain(passage.en).replace("• ", "")) in english


def test_email_keeps_its_doctype_so_clients_use_standards_mode(rendered):
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert rendered.web_html.startswith("<!doctype html>")


def test_layout_tables_are_presentational_and_body_text_is_16px_in_the_system_fonts(rendered):
    document = lxml.html.fromstring(rendered.html)
    tables = document.xpath("//body//table")
    assert tables and all(table.get("role") == "presentation" for table in tables)
    body_text = document.find_class("s")[0].find("div")  # mj-text puts its class on the cell
    style = body_text.get("style").replace(" ", "")
    assert "font-size:16px" in style and "line-height:1.6" in style
    assert "AppleSDGothicNeo" in style and "MalgunGothic" in style


def test_latin_text_is_set_in_a_latin_face_and_hangul_falls_through_to_a_korean_one(rendered):
    """A browser takes each character from the first listed face that has it: Korean faces first
    would set English in their own Latin letters on Windows and Android."""
    for document in (rendered.html, rendered.web_html):
        stack = re.search(r"font-family:\s*([^;\"]+)", document.split("<body", 1)[1] if document is rendered.html
                          else document).group(1)
        faces = [face.strip() for face in stack.split(",")]
        first_korean = min(faces.index(face) for face in ("Apple SD Gothic Neo", "Malgun Gothic", "Noto Sans KR"))
        assert max(faces.index(face) for face in ("Segoe UI", "Roboto", "Helvetica", "Arial")) < first_korean, faces


# --- what survives a client that strips every <style> -------------------------------------------


def inline_style(element) -> str:
    return element.get("style", "").replace(" ", "")


def test_the_divider_between_papers_and_the_footers_spacing_are_inline(rendered):
    document = lxml.html.fromstring(rendered.html)
    for card in document.find_class("paper"):
        assert "border-top:1pxsolid" in inline_style(card) and "padding-top:" in inline_style(card)
    footer = document.find_class("foot")[0]
    assert "|" not in footer.text_content()  # no separator left dangling at a line's end
    links = footer.iter("a")
    assert all("display:inline-block" in inline_style(a) and "padding:" in inline_style(a) for a in links)


def test_a_korean_only_summary_is_a_paragraph_like_the_others(config):
    """The forum writes every summary as one bulleted item; the parser takes the bullet off a
    passage with an English original, and the renderer off one without."""
    korean_only = paper(summary=(Bilingual(Text("* 한국어로만 쓴 요약입니다."), None),))
    bilingual = paper(slug="q", summary=(Bilingual(Text("한국어 요약입니다."), Text("English summary.")),))
    result = render_issue(issue_with(korean_only, bilingual), config)
    for document in (result.html, result.web_html):
        cards = lxml.html.fromstring(document).find_class("paper")
        assert [card.xpath("./ul[not(@class)]") for card in cards] == [[], []]
        assert cards[0].xpath("./p[not(@class)]/text()") == ["한국어로만 쓴 요약입니다."]
    assert "• 한국어로만" not in result.text and "\n한국어로만 쓴 요약입니다." in result.text
    assert "<ul>" in markup.to_html(Text("* 둘\n* 셋"))  # a real list stays a list


def test_inline_code_has_a_quiet_background_and_keeps_an_identifier_whole_without_styles(config):
    result = render_issue(issue_with(paper(summary=(Bilingual(Text("`torch.nn.functional.scaled_dot_product_attention`를 씁니다."), None),))), config)
    code = lxml.html.fromstring(result.html).xpath("//code")[0]
    assert "background-color:" in inline_style(code) and "display:inline-block" in inline_style(code)


def test_color_scheme_meta_dark_palette_and_preheader(issue, rendered):
    document = lxml.html.fromstring(rendered.html)
    assert document.xpath("//head/meta[@name='color-scheme']/@content") == ["light dark"]
    head_css = "".join(document.xpath("//head/style/text()"))
    assert "prefers-color-scheme:dark" in head_css
    assert issue.preheader in document.body.text_content()


def test_default_preheader_carries_the_papers_the_subject_leaves_out(issue, config):
    week = dataclasses.replace(issue, preheader=None)
    result = render_issue(week, config)
    named = {labels.paper_name(p) for p in week.papers} - {None}
    in_subject = {name for name in named if name in result.subject}
    in_preheader = [title for title in map(labels.short_title, week.papers) if title in result.preheader]
    assert in_subject and in_preheader
    assert not in_subject & set(in_preheader)  # the rest, not the subject again
    assert display_width(result.preheader) <= labels.PREHEADER_COLUMNS  # was 230 characters
    assert result.preheader in lxml.html.fromstring(result.html).body.text_content()


def test_build_prints_no_css_parser_warnings(tmp_path):
    """In a fresh process: cssutils's logger is process-wide, so an in-process test would pass on
    whatever an earlier test had set."""
    templates = copy_templates(tmp_path)
    edit(templates / "inline.css", "div.note {", "div.note { mso-line-height-rule: exactly; -webkit-text-size-adjust: 100%;")
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--config", str(REPO / "newsletter.toml"), "build", str(SAMPLE),
         "-o", str(tmp_path / "out"), "--templates", str(templates)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # cssutils calls both properties unknown unless told to keep quiet


def head_rules(document: str) -> list[tuple[list[str], str]]:
    """Every rule of the <style> blocks: (its selectors, its declarations), @media unwrapped."""
    css = "".join(lxml.html.fromstring(document).xpath("//head/style/text()"))
    css = re.sub(r"@media[^{]*\{", "", css)
    return [([sel.strip() for sel in selectors.split(",")], body)
            for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css)]


def test_abstracts_and_english_are_hidden_inline_and_shown_only_where_checked_runs(issue, rendered):
    """Hidden by default in a way every client honours (display:none inline, and Outlook for
    Windows never sees the fold); every rule that shows a fold needs the checked checkbox `k`, the
    proof that the client runs :checked, and the same proof hides the link that stands in for it."""
    document = lxml.html.fromstring(rendered.html)
    originals = document.xpath("//div[@class='en']")
    assert len(originals) == 19  # the sample's pairs
    for block in originals:
        box = block.xpath("ancestor::div[@class='fw']")
        assert box and "display:none" in box[0].get("style").replace(" ", "")
    assert document.xpath("//input[@class='k']/@checked") == ["checked"]
    assert len(re.findall(r"<!--\[if !mso\]><!--><div class=\"fw\"", rendered.html)) == folds(issue)
    rules = head_rules(rendered.html)
    showing = [sel for sels, body in rules if re.search(r"display:(block|inline)", body)
               for sel in sels if re.search(r"\.(fw|more)\b", sel)]
    assert showing and all(sel.startswith(".k:checked~div ") for sel in showing), showing
    hiding_links = [sel for sels, body in rules if "display:none" in body for sel in sels if sel.endswith(".wl")]
    assert hiding_links == [".k:checked~div .wl"]
    assert not any(":not(" in sel for sels, _ in rules for sel in sels)  # Yahoo, Outlook.com: no :not()


def test_each_fold_has_a_link_to_its_text_on_the_web_page(issue, rendered, config):
    email, web = lxml.html.fromstring(rendered.html), lxml.html.fromstring(rendered.web_html)
    web_page = f"{config.web_base_url}2023-10-16.web.html"
    for number, paper in enumerate(issue.papers, start=1):
        links = email.get_element_by_id(f"p{number}").find_class("wl")
        assert [a.get("href") for a in links] == [f"{web_page}#{paper.slug}"]
        assert "↗" in links[0].text_content() and "English" in links[0].text_content()
        anchored = normalise(web.get_element_by_id(paper.slug).text_content())
        for passage in paper.summary + paper.abstract:
            if passage.en:
                assert normalise(markup.to_plain(passage.en)) in anchored


def test_inline_css_may_not_hold_a_rule_that_needs_a_state(tmp_path, config, issue):
    templates = copy_templates(tmp_path)
    edit(templates / "inline.css", "div.w {", ".t:checked ~ .more { display: block; }\ndiv.w {")
    with pytest.raises(TemplateError, match=r"inline.css: '\.t:checked ~ \.more' depends on a state"):
        render_issue(issue, config, templates)


def folds(issue: Issue) -> int:
    """One fold per paper with an abstract or an English summary, one per English intro passage."""
    return (sum(1 for p in issue.papers if p.abstract or any(b.ko and b.en for b in p.summary))
            + sum(1 for b in issue.intro if b.ko and b.en))


def test_toggles_sit_in_the_hidden_box_and_outlook_never_sees_them(issue, rendered):
    document = lxml.html.fromstring(rendered.html)
    toggles = document.xpath("//div[@class='fw']/input[@type='checkbox']") + document.xpath("//div[@class='fw']/label")
    assert len(toggles) == 2 * folds(issue) == 20
    # Outlook for Windows skips what sits between these comments: no checkbox, label or folded text.
    assert len(re.findall(r'<!--\[if !mso\]><!--><div class="fw" style="display:none"><input [^>]*><label [^>]*>.*?'
                          r'</label><div class="more">.*?</div></div><!--<!\[endif\]-->', rendered.html)) == folds(issue)


def test_images_need_alt_text(tmp_path, config, issue):
    templates = copy_templates(tmp_path)
    edit(templates / "email.mjml.j2", '<mj-section padding="0 0 40px">',
         '<mj-section><mj-column><mj-image src="https://example.com/logo.png" /></mj-column>'
         '</mj-section>\n<mj-section padding="0 0 40px">')
    with pytest.raises(TemplateError, match="no alt text"):
        render_issue(issue, config, templates)


# --- what a reader sees first: subject, preheader, header, notice ------------------------------

SHORTCODE = re.compile(r":[a-z0-9_+-]+:")


def test_no_emoji_shortcode_is_left_in_the_email_the_web_page_or_the_text_part(rendered):
    for document in (visible_text(rendered.html), visible_text(rendered.web_html), rendered.text):
        assert [code for code in SHORTCODE.findall(document) if labels.emojize(code) != code] == []
        assert "😄" in document  # the sample's :smile:
    assert "🙇" in visible_text(rendered.html)  # :bowing_man:, in the email's notice only


def test_a_shortcode_in_a_title_or_inline_code_and_a_time_of_day(config):
    result = render_issue(issue_with(paper(
        title_ko="로켓 :rocket:", summary=(Bilingual(Text("10:30:00 `:tada:` :tada: :no_such_emoji:"), None),),
    )), config)
    for document in (visible_text(result.html), result.text):
        assert "로켓 🚀" in document and "10:30:00" in document and ":no_such_emoji:" in document
    code = lxml.html.fromstring(result.html).xpath("//code")[0]
    assert code.text == ":tada:" and code.tail.startswith(" 🎉")  # code is shown as written


def test_the_default_subject_names_the_weeks_lead_papers_within_a_phones_width(rendered, issue, config):
    assert issue.subject is None
    assert rendered.subject == "Llemma, Self-RAG, GenBench 외 7편"
    assert display_width(rendered.subject) <= labels.SUBJECT_COLUMNS
    assert render_issue(dataclasses.replace(issue, subject="Llemma 외 9편"), config).subject == "Llemma 외 9편"


def test_the_default_subjects_of_two_weeks_each_name_one_of_their_papers(issue, config):
    """Two weeks no longer share one subject that only the date tells apart; a week whose papers
    have no short name is named by its first paper's title, cut to fit."""
    other_week = dataclasses.replace(issue, date=dt.date(2023, 10, 23), title="[2023/10/23 ~ 10/29] 이번 주의 주요 ML 논문",
                                     papers=tuple(p for p in issue.papers if not labels.paper_name(p)))
    subjects = [render_issue(week, config).subject for week in (issue, other_week)]
    assert subjects[0] != subjects[1]
    for week, subject in zip((issue, other_week), subjects):
        assert any(labels.short_title(p)[:8] in subject for p in week.papers), subject
        assert display_width(subject) <= labels.SUBJECT_COLUMNS
    assert subjects[1] == "소프트웨어 엔지니어링을 위한… 외 4편"


@pytest.mark.parametrize("title_ko, title_en, name, short", [
    ("Llemma(렘마): 수학을 위한 개방형 언어 모델", "Llemma: An Open Language Model For Mathematics", "Llemma", "Llemma"),
    ("GenBench", None, "GenBench", "GenBench"),
    ("비디오 언어 계획", "Video Language Planning", None, "비디오 언어 계획"),
    ("대규모 언어 모델이 스스로를 설명할 수 있을까? LLM이 생성한 자기 설명에 대한 연구",
     "Can Large Language Models Explain Themselves? A Study of LLM-Generated Self-Explanations",
     None, "대규모 언어 모델이 스스로를 설명할 수 있을까?"),
    ("(번역 예정 · to be translated)", "Mistral 7B", "Mistral 7B", "Mistral 7B"),
    ("(번역 예정 · to be translated)", "Sparse Attention Is All You Need", None, "Sparse Attention Is All You Need"),
    (None, ":rocket: Rocket: A Fast Thing", "🚀 Rocket", "🚀 Rocket"),
    (None, ": A Title That Starts With A Colon", None, ": A Title That Starts With A Colon"),
])
def test_a_paper_is_named_by_its_short_name_or_its_titles_first_clause(title_ko, title_en, name, short):
    named = paper(title_ko=title_ko, title_en=title_en)
    assert (labels.paper_name(named), labels.short_title(named)) == (name, short)


def test_the_header_says_the_title_once_and_the_week_once(rendered, config):
    document = lxml.html.fromstring(rendered.html)
    body = visible_text(rendered.html)
    assert body.count("이번 주의 주요 ML 논문") == 2  # the heading and the footer's sender line
    assert "[2023/10/16" not in body and body.count("2023/10/16 ~ 10/22") == 1
    assert document.xpath("//h1")[0].text_content() == "이번 주의 주요 ML 논문"
    title = lxml.html.fromstring(rendered.web_html).xpath("//title")[0].text_content()
    assert title == "이번 주의 주요 ML 논문 · Top ML Papers of the Week · 2023/10/16 ~ 10/22"


@pytest.mark.parametrize("title, week, rest", [
    ("[2023/10/16 ~ 10/22] 이번 주의 주요 ML 논문", "2023/10/16 ~ 10/22", "이번 주의 주요 ML 논문"),
    ("[10월 셋째 주] 논문", "10월 셋째 주", "논문"),
    ("[특집] NeurIPS 2023", None, "[특집] NeurIPS 2023"),
    ("[2023/10/16] ", None, "[2023/10/16]"),
    ("논문 [2023/10/16]", None, "논문 [2023/10/16]"),
])
def test_only_a_leading_bracket_with_a_number_is_the_forums_week(title, week, rest):
    assert labels.split_title(title) == (week, rest)


def test_a_title_that_is_not_the_name_gets_the_name_above_it(config):
    result = render_issue(dataclasses.replace(issue_with(paper()), title="특집: NeurIPS 2023"), config)
    document = lxml.html.fromstring(result.html)
    assert document.find_class("brand")[0].text_content() == config.name
    assert document.xpath("//h1")[0].text_content() == "특집: NeurIPS 2023"
    assert result.preheader == "특집: NeurIPS 2023 · 2023-10-16"  # one paper, in the subject: the issue
    long_title = render_issue(dataclasses.replace(issue_with(paper()), title="특집 " * 80), config)
    assert display_width(long_title.preheader) <= labels.PREHEADER_COLUMNS


def test_preheader_is_padded_so_the_preview_does_not_run_on_into_the_body(rendered, issue):
    hidden = lxml.html.fromstring(rendered.html).body.xpath(".//div")[0]
    assert "display:none" in hidden.get("style")
    text = hidden.text_content()
    assert text.startswith(issue.preheader)
    padding = text[len(issue.preheader):]
    assert set(padding) == {"\u200c", "\u00a0"} and len(issue.preheader) + len(padding) >= 148


def test_the_email_edition_words_the_notice_from_email_notice(config):
    source = SAMPLE.read_text(encoding="utf-8")
    issue = parse_issue_text(source)
    assert "덧글" in markup.to_plain(issue.notice) and "답장" in markup.to_plain(issue.email_notice)
    result = render_issue(issue, config)
    for document in (visible_text(result.html), result.text):
        assert "답장으로 알려주시기를" in document and "덧글" not in document
    without = parse_issue_text(re.sub(r"(?ms)^email_notice:.*?(?=^web_notice:)", "", source))
    assert without.email_notice is None and "덧글" in visible_text(render_issue(without, config).html)


def test_the_web_page_never_asks_readers_to_reply_and_shows_only_its_own_notice(config):
    """A page cannot be replied to and has no comments: it shows `web_notice:` or no notice."""
    source = SAMPLE.read_text(encoding="utf-8")
    issue = parse_issue_text(source)
    page = visible_text(render_issue(issue, config).web_html)
    assert normalise(markup.to_plain(issue.web_notice).removeprefix("• ")).removesuffix(":smile:").strip() in page
    for document in (page, visible_text(render_issue(dataclasses.replace(issue, web_notice=None), config).web_html)):
        assert "답장" not in document and "reply" not in document.lower() and "덧글" not in document
    assert lxml.html.fromstring(render_issue(dataclasses.replace(issue, web_notice=None), config).web_html
                                ).find_class("note") == []


@pytest.mark.parametrize("key", ["email_notice", "web_notice"])
def test_notice_links_are_held_to_the_issues_rule(key):
    source = SAMPLE.read_text(encoding="utf-8").replace(f"{key}: |\n", f"{key}: |\n  [x](javascript:alert(1))\n", 1)
    with pytest.raises(ParseError, match=f"{key}.*javascript"):
        parse_issue_text(source)


def test_the_notice_is_a_small_quiet_note(rendered):
    note = lxml.html.fromstring(rendered.html).find_class("note")[0]
    style = note.get("style").replace(" ", "")
    assert "font-size:14px" in style and "color:#57606a" in style


# --- links ---------------------------------------------------------------------------------------


def test_no_link_shows_a_bare_url_longer_than_30_characters(rendered, config):
    long_url = "https://example.com/a/very/long/path/that/goes/on/and/on"
    odd = paper(summary=(Bilingual(Text(f"<{long_url}> and <https://a.io/x>"), None),),
                links=(Link(long_url), Link("https://arxiv.org/pdf/2310.10631")),
                read_more=(Link("https://x.com/omarsar0/status/1"), Link(long_url, label=None)))
    documents = (rendered.html, rendered.web_html, *(lambda r: (r.html, r.web_html))(render_issue(issue_with(odd), config)))
    for document in documents:
        for anchor in lxml.html.fromstring(document).iter("a"):
            text = normalise(anchor.text_content())
            assert not (URL.fullmatch(text) and len(text) > 30), text
    assert "https://a.io/x" in visible_text(render_issue(issue_with(odd), config).html)  # short: shown


@pytest.mark.parametrize("url, paper_link, label", [
    ("https://arxiv.org/abs/2310.10631", True, "논문 · Paper (arXiv)"),
    ("https://arxiv.org/pdf/2310.10631", True, "PDF (arXiv)"),
    ("https://www.nature.com/articles/s42256-023-00729-y", True, "논문 · Paper (Nature)"),
    ("https://x.com/zhangir_azerbay/status/1714098025956864031", False, "X 스레드 · Thread by @zhangir_azerbay"),
    ("https://twitter.com/omarsar0/status/1", False, "X 스레드 · Thread by @omarsar0"),
    ("https://x.com/i/status/1714098025956864031", False, "X 스레드 · Thread on X"),
    ("https://twitter.com/i/web/status/1714098025956864031", False, "X 스레드 · Thread on X"),
    ("https://x.com/omarsar0", False, "X · @omarsar0"),
    ("https://github.com/xlang-ai/OpenAgents", False, "코드 · Code (GitHub)"),
    ("https://huggingface.co/papers/2310.10631", False, "논문 · Paper (Hugging Face)"),
    ("https://blog.example.org/post", False, "더 읽기 · Read more (blog.example.org)"),
])
def test_links_are_labelled_from_their_urls(url, paper_link, label):
    assert labels.link_label(Link(url), paper=paper_link) == label
    assert labels.link_label(Link(url, label="에디터의 말"), paper=paper_link) == "에디터의 말"


def test_sample_buttons_and_read_more_say_what_they_open(rendered):
    document = lxml.html.fromstring(rendered.html)
    buttons = [normalise(a.text_content()) for a in document.find_class("btn")]
    assert buttons.count("논문 · Paper (arXiv)") == 9 and "논문 · Paper (Nature)" in buttons
    more = [normalise(a.text_content()) for a in document.find_class("btn2")]
    assert "X 스레드 · Thread by @zhangir_azerbay" in more


# --- footer and the web page's way back in ---------------------------------------------------------


def test_footer_sentences_need_no_korean_particle_and_no_name_in_the_english(rendered, config):
    for document in (visible_text(rendered.html), normalise(rendered.text)):
        assert "을(를)" not in document and "(을)" not in document
        assert "You are receiving this because you subscribed to this newsletter." in document
    footer = lxml.html.fromstring(rendered.html).find_class("foot")[0]
    assert "color:#57606a" in footer.getparent().get("style").replace(" ", "")  # on mj-text's own div
    assert all("white-space:nowrap" in a.get("style") for a in footer.iter("a"))


def test_email_and_web_page_link_to_subscribe_and_to_the_archive_index(rendered, config):
    assert config.subscribe_url == config.web_base_url + "#subscribe"
    for document in (rendered.html, rendered.web_html):
        links = {normalise(a.text_content()): a.get("href") for a in lxml.html.fromstring(document).iter("a")}
        assert links["구독하기 · Subscribe"] == config.subscribe_url
        assert links["지난 호 · Archive"] == config.web_base_url
    assert config.subscribe_url in rendered.text.split() and config.web_base_url in rendered.text.split()


def test_subscribe_url_can_be_set(tmp_path, issue):
    toml = (REPO / "newsletter.toml").read_text(encoding="utf-8").replace(
        'web_base_url = "https://newsletter.example.com/issues/"',
        'web_base_url = "https://newsletter.example.com/issues/"\nsubscribe_url = "https://example.org/join"')
    (tmp_path / "newsletter.toml").write_text(toml, encoding="utf-8")
    result = render_issue(issue, load_config(tmp_path / "newsletter.toml"))
    assert 'href="https://example.org/join"' in result.web_html and 'href="https://example.org/join"' in result.html


def test_text_part_opens_with_the_issue_not_the_preheader(rendered, issue):
    first_lines = rendered.text.split("\n")[:3]
    assert first_lines == ["이번 주의 주요 ML 논문", "Top ML Papers of the Week", "2023/10/16 ~ 10/22"]
    assert issue.preheader not in rendered.text
    assert "- 논문 · Paper (arXiv):\n  https://arxiv.org/abs/2310.10631" in rendered.text


def test_text_part_keeps_the_emails_order_and_a_papers_links_before_its_abstract(rendered):
    """A pager reader sees a paper's links with its summary, and pages past the abstract."""
    text = rendered.text
    papers = text.index("=" * 76 + "\n\n1. Llemma(렘마)")
    assert text.index("이번 주의 논문 · In this issue") < text.index("GPT 모델로 자동 요약") < papers
    first = text[papers:text.index("\n\n2. 소프트웨어", papers)]
    assert first.index("[논문 소개 · Summary]") < first.index("[논문 링크 · Paper]") < first.index("[논문 초록 · Abstract]")
    assert papers < text.index("10. 비디오 언어 계획\n   Video Language Planning") < text.index("소개 · Introduction")


# --- hostile content ---------------------------------------------------------------------------


def test_hostile_markdown_never_becomes_markup(config):
    hostile = Text(
        '<script>alert(1)</script> <img src=x onerror="alert(2)"> <a href="javascript:alert(3)">a</a> '
        "[b](javascript:alert(4)) [c](data:text/html;base64,PHNjcmlwdD4=) <b onclick=alert(5)>d</b>"
    )
    evil = paper(
        title_ko="<script>alert(6)</script>",
        summary=(Bilingual(hostile, hostile),),
        abstract=(Bilingual(None, hostile),),
        tags=('"><script>alert(7)</script>',),
    )
    result = render_issue(dataclasses.replace(issue_with(evil), intro=(Bilingual(hostile, hostile),)), config)
    for document in (result.html, result.web_html):
        tree = lxml.html.fromstring(document)
        assert tree.xpath("//script") == []
        assert [name for element in tree.iter() if isinstance(element.tag, str)
                for name in element.attrib if name.lower().startswith("on")] == []
        assert [href for href in tree.xpath("//@href|//@src")
                if href.strip().lower().startswith(("javascript:", "data:"))] == []
        assert "<script>alert(1)</script>" in html.unescape(tree.body.text_content())  # shown as text


def test_a_hand_built_link_with_a_bad_scheme_is_refused(config):
    with pytest.raises(ParseError, match="javascript"):
        render_issue(issue_with(paper(read_more=(Link("javascript:alert(1)"),))), config)


def test_long_unbroken_words_may_wrap_anywhere(config):
    long_word = "A" * 3000
    result = render_issue(issue_with(paper(summary=(Bilingual(Text(long_word), Text(long_word)),))), config)
    wrapper = lxml.html.fromstring(result.html).find_class("w")[0]
    assert "overflow-wrap:anywhere" in wrapper.get("style").replace(" ", "")
    assert long_word in result.text  # never broken in the text part either


# --- plain-text part -----------------------------------------------------------------------------


def test_text_part_lines_fit_76_columns_unless_a_url_needs_the_room(rendered, issue):
    # Columns as a monospace font shows them: each Hangul syllable takes two.
    long_lines = [line for line in rendered.text.split("\n") if display_width(line) > WIDTH]
    assert all(URL.search(line) for line in long_lines), long_lines
    assert "Llemma: An Open Language Model For Mathematics" in rendered.text
    assert "[English]" in rendered.text


def test_a_url_longer_than_a_line_stays_whole_in_the_text_part(config):
    url = "https://example.com/" + "x" * 120
    result = render_issue(issue_with(paper(summary=(Bilingual(Text(f"앞 문장 {url} 뒤 문장"), None),))), config)
    assert url in result.text.split()


# --- web version -------------------------------------------------------------------------------


def test_web_version_folds_english_with_details(issue, rendered):
    document = lxml.html.fromstring(rendered.web_html)
    details = document.xpath("//details")
    assert len(details) == folds(issue)
    assert all(d.find("summary") is not None and d.xpath(".//*[@lang='en']") for d in details)
    assert document.get("lang") == "ko"
    as_on_the_web = dataclasses.replace(issue, email_notice=issue.web_notice)
    assert [s for s in sentences(as_on_the_web) if s not in visible_text(rendered.web_html)] == []


# --- templates: bundled, or the editor's own ----------------------------------------------------


def copy_templates(tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundled_templates_dir(), tmp_path / "templates"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_bundled_templates_are_found_through_the_package():
    assert (bundled_templates_dir() / "email.mjml.j2").is_file()


def test_an_editors_own_templates_are_used(tmp_path, config, issue):
    templates = copy_templates(tmp_path)
    edit(templates / "email.mjml.j2", '<div class="w">', '<div class="w">EDITOR-COPY ')
    assert "EDITOR-COPY" in render_issue(issue, config, templates).html
    assert "EDITOR-COPY" not in render_issue(issue, config).html


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("</mj-column></mj-section>\n<mj-section padding", "</mj-section>\n<mj-section padding", "invalid MJML"),
        ("<mj-section padding=\"0 0 40px\">", "<mj-sektion></mj-sektion><mj-section padding=\"0 0 40px\">",
         "mj-sektion"),
        ("{{ subject }}", "{{ subject ", "email.mjml.j2:"),
        ("{{ subject }}", "{{ issue.no_such_field }}", "no_such_field"),
    ],
    ids=["broken-mjml", "unknown-mj-tag", "jinja-syntax", "undefined-variable"],
)
def test_template_mistakes_are_template_errors(tmp_path, config, issue, old, new, message):
    templates = copy_templates(tmp_path)
    edit(templates / "email.mjml.j2", old, new)
    with pytest.raises(TemplateError, match=re.escape(message)):
        render_issue(issue, config, templates)


# --- the build command ---------------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(main, ["--config", str(REPO / "newsletter.toml"), *args])


def test_build_writes_four_files_and_each_editions_three_and_prints_the_sizes(tmp_path):
    result = run("build", str(SAMPLE), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert names == sorted(["2023-10-16.html", "2023-10-16.mjml", "2023-10-16.txt", "2023-10-16.web.html",
                            *(f"2023-10-16.{edition}.{kind}" for edition in ("ko", "en") for kind in ("html", "mjml", "txt"))])
    for edition, name in (("bilingual", "2023-10-16.html"), ("ko", "2023-10-16.ko.html"), ("en", "2023-10-16.en.html")):
        html_bytes = (tmp_path / "out" / name).stat().st_size
        assert f"{edition}: HTML {html_bytes:,} bytes" in result.output
    assert "base64-encoded for sending" in result.output
    assert "warning" not in result.output


def write_issue_with_papers(path: Path, count: int) -> Path:
    """The sample's papers repeated to `count`, with fresh headings so the slugs stay unique."""
    source = SAMPLE.read_text(encoding="utf-8")
    head, *papers = re.split(r"(?m)^(?=## (?!소개$))", source)
    extra = [re.sub(r"(?m)^## (.*)$", rf"## \1 (반복 {n})", papers[n % len(papers)], count=1)
             for n in range(count - len(papers))]
    path.write_text(head + "".join(papers + extra), encoding="utf-8")
    return path


def test_build_warns_when_the_encoded_html_passes_gmails_clip(tmp_path, config):
    big = write_issue_with_papers(tmp_path / "big.md", 30)
    sizes = measure(render_issue(parse_issue(big), config))
    assert sizes.encoded_html_bytes > GMAIL_CLIP_BYTES
    result = run("build", str(big), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert "over Gmail's clipping point" in result.output


def test_build_warns_from_100000_bytes_short_of_gmails_clip(tmp_path, config):
    """Gmail's clipping point is approximate: an issue just under it is warned about too."""
    source = write_issue_with_papers(tmp_path / "base.md", 15).read_text(encoding="utf-8")
    low, high = 0, 4000
    while True:  # an intro long enough to land the HTML part between 100,000 and the clip
        length = (low + high) // 2
        path = tmp_path / "near.md"
        path.write_text(source.replace("## 소개\n", "## 소개\n\n" + "가" * length + "\n", 1), encoding="utf-8")
        encoded = measure(render_issue(parse_issue(path), config)).encoded_html_bytes
        if encoded < 100_000:
            low = length + 1
        elif encoded > GMAIL_CLIP_BYTES:
            high = length - 1
        else:
            break
        assert low <= high, "no intro length lands between 100,000 bytes and the clip"
    result = run("build", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert f"bytes short of Gmail's clipping point ({GMAIL_CLIP_BYTES:,}" in result.output


def test_a_fifteen_paper_issue_fits_or_is_warned_about(tmp_path, config):
    fifteen = write_issue_with_papers(tmp_path / "fifteen.md", 15)
    assert len(parse_issue(fifteen).papers) == 15
    result = run("build", str(fifteen), "-o", str(tmp_path / "out"))
    encoded = measure(render_issue(parse_issue(fifteen), config)).encoded_html_bytes
    assert encoded <= GMAIL_CLIP_BYTES or "over Gmail's clipping point" in result.output


def test_build_reports_a_template_error_in_one_line(tmp_path):
    templates = copy_templates(tmp_path)
    edit(templates / "email.mjml.j2", "{{ subject }}", "{{ subject ")
    result = run("build", str(SAMPLE), "-o", str(tmp_path / "out"), "--templates", str(templates))
    assert result.exit_code == 1
    assert re.fullmatch(r"error: \S*email\.mjml\.j2:\d+: .*\n", result.output), result.output


# --- the preview server --------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def wait_for_render(site: PreviewSite, after: int) -> None:
    deadline = time.monotonic() + 20
    while site.renders <= after:
        assert time.monotonic() < deadline, "the preview did not re-render after the file changed"
        time.sleep(0.05)


@pytest.fixture
def preview(tmp_path, config):
    issue_path = tmp_path / "issue.md"
    shutil.copy(SAMPLE, issue_path)
    site = PreviewSite(issue_path, config, copy_templates(tmp_path))
    server = create_preview_server(site, "127.0.0.1", 0)
    stop = threading.Event()
    threads = [threading.Thread(target=server.run, daemon=True),
               threading.Thread(target=site.watch, args=(stop,), daemon=True)]
    for thread in threads:
        thread.start()
    yield site, f"http://127.0.0.1:{server.effective_port}", issue_path
    stop.set()
    server.close()


def test_preview_serves_the_email_web_and_text_and_rerenders_on_change(preview):
    site, base, issue_path = preview
    status, page = fetch(f"{base}/email")
    assert status == 200 and "Llemma(렘마)" in page
    assert fetch(f"{base}/web")[1].count("<details") == 10
    assert "Unsubscribe" in fetch(f"{base}/text")[1]
    # Each edition, as a send renders them.
    assert '<html lang="en"' in fetch(f"{base}/email/en")[1] and "Llemma(렘마)" not in fetch(f"{base}/email/en")[1]
    assert "수신 거부:" in fetch(f"{base}/text/ko")[1] and "Unsubscribe" not in fetch(f"{base}/text/ko")[1]
    assert all(f'href="/email{suffix}"' in fetch(base + "/")[1] for suffix in ("", "/ko", "/en"))

    before = site.renders
    edit(issue_path, "Llemma(렘마)", "Llemma(렘마-수정됨)")
    wait_for_render(site, before)
    assert "Llemma(렘마-수정됨)" in fetch(f"{base}/email")[1]

    before = site.renders
    edit(site.templates_dir / "email.mjml.j2", '<div class="w">', '<div class="w">TEMPLATE-EDIT ')
    wait_for_render(site, before)
    assert "TEMPLATE-EDIT" in fetch(f"{base}/email")[1]


def test_preview_shows_an_error_instead_of_stopping(preview):
    site, base, issue_path = preview
    before = site.renders
    issue_path.write_text("---\ntitle: broken\n", encoding="utf-8")
    wait_for_render(site, before)
    status, page = fetch(f"{base}/email")
    assert status == 500 and page.startswith("error: ")
    assert "error: " in fetch(f"{base}/")[1]
