"""The rendered sample issue in real headless Chromium (Debian's chromium, driven by playwright):
no horizontal scroll on a phone, readable text, English originals open without styles and folded
(with a working toggle) with them."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.model import Bilingual, Issue, Link, Paper, Text
from newsletter.parse import parse_issue
from newsletter.render import render_issue

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("NEWSLETTER_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"NEWSLETTER_REQUIRE_CHROMIUM=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if not Path(CHROMIUM).exists():
    _skip_or_fail(f"{CHROMIUM} not found: install Debian's chromium and fonts-noto-cjk (as .ci/run does)")
try:
    from playwright import sync_api
except ImportError:
    _skip_or_fail("the playwright package is missing: pip install -e '.[test]'")

# Elements whose own text a reader reads; their computed font size is what the test checks.
TEXT_SIZES = """() => {
  const sizes = [];
  for (const element of document.body.querySelectorAll('*')) {
    const ownText = [...element.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (ownText && element.offsetParent !== null)
      sizes.push([parseFloat(getComputedStyle(element).fontSize), element.className]);
  }
  return sizes;
}"""

HIDDEN_ENGLISH = """() => [...document.querySelectorAll('.en')]
  .filter(e => getComputedStyle(e).display === 'none' || e.offsetHeight === 0).length"""


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "newsletter.toml")


@pytest.fixture(scope="module")
def sample(config, tmp_path_factory):
    rendered = render_issue(parse_issue(REPO / "issues" / "2023-10-16.md"), config)
    folder = tmp_path_factory.mktemp("sample")
    (folder / "email.html").write_text(rendered.html, encoding="utf-8")
    (folder / "web.html").write_text(rendered.web_html, encoding="utf-8")
    return folder


def open_page(browser, path: Path, width: int):
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(path.as_uri())
    assert page.evaluate("() => document.compatMode") == "CSS1Compat"  # not quirks mode
    return page


def horizontal_overflow(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


@pytest.mark.parametrize("width", [320, 375, 600])
def test_no_horizontal_scroll_and_text_at_least_14px(browser, sample, width):
    page = open_page(browser, sample / "email.html", width)
    assert horizontal_overflow(page) <= 0
    sizes = page.evaluate(TEXT_SIZES)
    assert len(sizes) > 50
    assert [(size, name) for size, name in sizes if size < 14] == []
    page.close()


def test_without_styles_every_english_original_is_visible_and_no_toggle_shows(browser, sample):
    page = open_page(browser, sample / "email.html", 375)
    page.evaluate("() => document.querySelectorAll('style, link').forEach(e => e.remove())")
    assert page.evaluate("() => document.querySelectorAll('.en').length") == 19  # the sample's pairs
    assert page.evaluate(HIDDEN_ENGLISH) == 0
    assert page.locator("label.tg").first.is_hidden()
    assert page.locator("input.t").first.is_hidden()
    page.close()


def test_with_styles_english_starts_folded_and_its_toggle_opens_and_closes_it(browser, sample):
    page = open_page(browser, sample / "email.html", 375)
    english = page.locator(".en").first
    toggle = page.locator("label.tg").first
    assert english.is_hidden() and toggle.is_visible()
    toggle.click()
    assert english.is_visible()
    assert page.locator(".en").nth(1).is_hidden()  # one toggle opens one original
    toggle.click()
    assert english.is_hidden()
    page.close()


def test_web_version_folds_with_details(browser, sample):
    page = open_page(browser, sample / "web.html", 375)
    assert horizontal_overflow(page) <= 0
    english = page.locator("details .en").first
    assert english.is_hidden()
    page.locator("details summary").first.click()
    assert english.is_visible()
    page.close()


def test_a_3000_character_word_and_url_do_not_widen_the_layout(browser, config, tmp_path):
    word, url = "가" + "A" * 3000, "https://example.com/" + "a" * 3000
    paper = Paper(
        slug="long",
        title_ko="B" * 3000,
        title_en="C" * 3000,
        summary=(Bilingual(Text(f"{word} [{url}]({url}) {url}"), Text(word)),),
        links=(Link(url),),
        read_more=(Link(url),),
    )
    issue = Issue(title="D" * 3000, date=dt.date(2023, 10, 16), papers=(paper,))
    rendered = render_issue(issue, config)
    for name, document in (("email", rendered.html), ("web", rendered.web_html)):
        path = tmp_path / f"{name}.html"
        path.write_text(document, encoding="utf-8")
        for width in (320, 600):
            page = open_page(browser, path, width)
            assert horizontal_overflow(page) <= 0, (name, width)
            page.close()


# Line breaks that fall between two Hangul syllables of one word, in the Korean blocks.
MID_WORD_BREAKS = """() => {
  const hangul = /[\\uac00-\\ud7a3]/;
  let breaks = 0, lines = 0;
  for (const block of document.querySelectorAll('.ko, h2.title-ko')) {
    const walker = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
    let previousTop = null, previousChar = '';
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (let i = 0; i < node.length; i++) {
        const range = document.createRange();
        range.setStart(node, i); range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        const char = node.data[i];
        if (!rect) { previousChar = char; continue; }
        if (previousTop !== null && rect.top > previousTop + 2) {
          lines++;
          if (hangul.test(char) && hangul.test(previousChar)) breaks++;
        }
        previousTop = rect.top; previousChar = char;
      }
    }
  }
  return [breaks, lines];
}"""


def test_korean_lines_break_between_words_not_inside_them(browser, sample):
    page = open_page(browser, sample / "email.html", 375)
    breaks, lines = page.evaluate(MID_WORD_BREAKS)
    page.close()
    assert lines > 100  # the sample's Korean wraps onto many lines at phone width
    assert breaks == 0
