"""Each edition's view of an issue (newsletter/editions.py) and what the renderer makes of it: the
ko and en emails and text parts, their words, subjects and preheaders, and the completeness check
reading each edition in its own language."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest

from newsletter import completeness, editions, labels
from newsletter.config import load_config
from newsletter.errors import IncompleteEmailError
from newsletter.model import EDITIONS, Bilingual, Issue, Link, Paper, Text
from newsletter.parse import parse_issue
from newsletter.render import EMAIL_TEMPLATE, render_editions, render_issue, web_url

REPO = Path(__file__).resolve().parent.parent
HANGUL = re.compile("[가-힣]")


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "newsletter.toml")


@pytest.fixture(scope="module")
def sample():
    return parse_issue(REPO / "issues" / "2023-10-16.md")


def small_issue(**changes) -> Issue:
    papers = (
        Paper(slug="both", title_ko="두 언어 논문", title_en="Both: A Paper",
              summary=(Bilingual(Text("한국어 요약."), Text("The English summary.")),
                       Bilingual(Text("한국어만 있는 문단."), None), Bilingual(None, Text("English only, no Korean."))),
              abstract=(Bilingual(Text("한국어 초록."), Text("The English abstract.")),),
              links=(Link("https://arxiv.org/abs/2310.00001"),), read_more=(Link("https://github.com/a/b"),)),
        Paper(slug="korean-only", title_ko="한국어 제목만", title_en=None,
              summary=(Bilingual(Text("요약뿐입니다."), None),)),
    )
    issue = Issue(title="[2023/10/16 ~ 10/22] 이번 주의 주요 ML 논문 (Top ML Papers of the Week)",
                  date=dt.date(2023, 10, 16), papers=papers,
                  intro=(Bilingual(Text("소개 문단."), Text("The intro.")), Bilingual(Text("한국어 소개뿐."), None)),
                  email_notice=Text("자동 번역입니다."), preheader="한국어 미리보기")
    return dataclasses.replace(issue, **changes)


def test_the_bilingual_view_is_the_issue_itself_and_slugs_never_change():
    issue = small_issue()
    assert editions.view(issue, "bilingual") is issue
    for edition in EDITIONS:
        assert [paper.slug for paper in editions.view(issue, edition).papers] == ["both", "korean-only"]
    with pytest.raises(ValueError, match="unknown edition 'fr'"):
        editions.view(issue, "fr")


def test_the_korean_view_drops_each_english_original_and_keeps_an_english_only_passage():
    ko = editions.view(small_issue(), "ko")
    both = ko.papers[0]
    assert [(p.ko and p.ko.markdown, p.en and p.en.markdown) for p in both.summary] == [
        ("한국어 요약.", None), ("한국어만 있는 문단.", None), (None, "English only, no Korean.")]
    assert [(p.ko.markdown, p.en) for p in both.abstract] == [("한국어 초록.", None)]
    assert both.title_en == "Both: A Paper"  # kept for the paper's name; shown only in the bilingual edition
    assert [p.en for p in ko.intro] == [None, None]
    assert ko.email_notice == Text("자동 번역입니다.") and ko.preheader == "한국어 미리보기"
    assert labels.headline(ko) == ("이번 주의 주요 ML 논문", None)
    assert editions.english_originals(small_issue()) == frozenset({"both"})  # the Korean-only paper has none


def test_the_english_view_keeps_only_english_and_drops_korean_front_matter():
    en = editions.view(small_issue(), "en")
    both, korean_only = en.papers
    assert [p.en.markdown for p in both.summary] == ["The English summary.", "English only, no Korean."]
    assert all(p.ko is None for p in both.summary + both.abstract)
    assert (both.title_ko, both.title_en) == (None, "Both: A Paper")
    assert (korean_only.title_ko, korean_only.summary) == ("한국어 제목만", ())  # a heading is needed
    assert [p.en.markdown for p in en.intro] == ["The intro."]
    assert (en.email_notice, en.preheader) == (None, None)  # Korean: left out (the preheader is derived)
    assert labels.headline(en) == ("Top ML Papers of the Week", None) and labels.dateline(en) == "2023/10/16 ~ 10/22"
    kept = editions.view(small_issue(email_notice=Text("Machine translated."), preheader="An English preview"), "en")
    assert (kept.email_notice, kept.preheader) == (Text("Machine translated."), "An English preview")


def test_a_title_whose_korean_half_holds_a_middle_dot_keeps_each_half_whole(sample):
    issue = dataclasses.replace(sample, title="[2023/10/16 ~ 10/22] 이번 주 · 주요 논문 / Top ML Papers")
    assert editions.view(issue, "ko").title == "[2023/10/16 ~ 10/22] 이번 주 · 주요 논문"
    assert editions.view(issue, "en").title == "[2023/10/16 ~ 10/22] Top ML Papers"


def test_labels_subject_and_the_newsletter_name_are_worded_per_edition(sample, config):
    link = Link("https://x.com/omarsar0/status/1713940983199506910")
    assert [labels.link_label(link, edition=edition) for edition in EDITIONS] == [
        "X 스레드 · Thread by @omarsar0", "X 스레드 · @omarsar0", "Thread by @omarsar0"]
    arxiv = Link("https://arxiv.org/abs/2310.10631")
    assert [labels.link_label(arxiv, paper=True, edition=edition) for edition in EDITIONS] == [
        "논문 · Paper (arXiv)", "논문 (arXiv)", "Paper (arXiv)"]
    assert labels.subject(editions.view(sample, "en"), "en") == "Llemma, Self-RAG, GenBench and 7 more"
    assert [editions.in_language(config.name, edition) for edition in EDITIONS] == [
        config.name, "이번 주의 주요 ML 논문", "Top ML Papers of the Week"]
    assert editions.in_language("Only English", "ko") == "Only English"  # nothing in Korean to pick


def test_the_english_email_and_text_part_hold_no_hangul_beyond_a_korean_only_title(config):
    rendered = render_editions(small_issue(), config)
    en = rendered["en"]
    body = completeness.reading(en.html)
    assert HANGUL.findall(body.replace("한국어 제목만", "")) == [] and "한국어 제목만" in body
    assert HANGUL.findall(en.text.replace("한국어 제목만", "")) == []
    assert 'lang="en"' in en.html.split(">", 2)[1] or '<html lang="en"' in en.html
    assert "The English abstract." in body and "The intro." in body
    assert en.subject == "Both and 1 more" and not HANGUL.search(en.preheader)


def test_the_korean_email_and_text_part_link_each_english_original_on_the_web_page(config):
    issue = small_issue()
    ko = render_editions(issue, config)["ko"]
    anchor = f"{web_url(issue, config)}#both"
    assert f'href="{anchor}"' in ko.html and "영어 원문 ↗" in ko.html
    assert f"[영어 원문]\n{anchor}" in ko.text and "#korean-only" not in ko.text
    for english in ("The English summary.", "The English abstract.", "The intro.", "Both: A Paper"):
        assert english not in ko.html and english not in ko.text
    assert "English only, no Korean." in ko.html  # nothing else to show for that passage
    assert "You are receiving" not in ko.text and "이 메일은 뉴스레터를 구독하신 분께" in ko.text


def test_the_web_page_stays_bilingual_and_is_rendered_once(config):
    issue = small_issue()
    rendered = render_editions(issue, config)
    assert {edition: r.edition for edition, r in rendered.items()} == {edition: edition for edition in EDITIONS}
    assert rendered["ko"].web_html is rendered["en"].web_html is rendered["bilingual"].web_html
    assert rendered["bilingual"].web_html == render_issue(issue, config).web_html
    assert "web" not in rendered["ko"].timings and "web" in rendered["bilingual"].timings


def test_the_completeness_check_reads_each_edition_in_its_own_language(config):
    issue = small_issue()
    rendered = render_editions(issue, config)
    for edition, edition_rendered in rendered.items():
        completeness.check_complete(editions.view(issue, edition), edition_rendered.html, EMAIL_TEMPLATE)
    # The bilingual issue's first words are Korean: the English email has none of them.
    with pytest.raises(IncompleteEmailError):
        completeness.check_complete(issue, rendered["en"].html, EMAIL_TEMPLATE)
    # An English email that lost a paper is refused.
    cut = rendered["en"].html.replace("The English summary.", "")
    with pytest.raises(IncompleteEmailError, match="lacks paper 1 of 2"):
        completeness.check_complete(editions.view(issue, "en"), cut, EMAIL_TEMPLATE)
