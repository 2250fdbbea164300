"""The rendered sample issue in real headless Chromium (Debian's chromium, driven by playwright):
no horizontal scroll on a phone, readable text, English originals open without styles and folded
(with a working toggle) with them."""

from __future__ import annotations

import datetime as dt
import os
import re
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


def test_with_styles_the_abstract_starts_folded_and_its_toggle_opens_and_closes_it(browser, sample):
    page = open_page(browser, sample / "email.html", 375)
    folded = page.locator(".more").first
    toggle = page.locator("label.tg").first
    assert folded.is_hidden() and toggle.is_visible()
    toggle.click()
    assert folded.is_visible() and page.locator(".more .en").first.is_visible()
    assert page.locator(".more").nth(1).is_hidden()  # one toggle opens one paper's fold
    toggle.click()
    assert folded.is_hidden()
    page.close()


def test_toggle_is_bilingual_44px_tall_and_works_from_the_keyboard(browser, sample):
    page = open_page(browser, sample / "email.html", 375)
    labels = page.evaluate("""() => [...document.querySelectorAll('label.tg')].map(l => {
        const box = l.getBoundingClientRect();
        return [l.textContent, box.height, box.width];
    })""")
    assert len(labels) == 10
    for text, height, width in labels:
        assert re.search("[가-힣]", text) and re.search("[A-Za-z]{4}", text), text
        assert height >= 44 and width >= 44, (text, height, width)
    # Tab reaches the first checkbox (visually hidden, not display:none); Space opens its fold.
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.matches('input.t')"):
            break
    assert page.evaluate("() => document.activeElement.id") == "f1"
    assert page.locator("#f1 ~ .more").is_hidden()
    page.keyboard.press("Space")
    assert page.locator("#f1 ~ .more").is_visible()
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


# Line breaks that fall between two Hangul syllables of one word, anywhere in the body: the last
# character of one line and the first of the next both Hangul, with no space between them.
MID_WORD_BREAKS = """() => {
  const hangul = /[\\uac00-\\ud7a3]/;
  let breaks = 0, lines = 0;
  const examples = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let previousTop = null, previousChar = '', before = '', previousBlock = null;
  const blockOf = node => {
    let element = node.parentElement;
    while (element && getComputedStyle(element).display.startsWith('inline')) element = element.parentElement;
    return element;
  };
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const block = blockOf(node);
    if (block !== previousBlock) { previousChar = ' '; previousBlock = block; }  // a new line by design
    for (let i = 0; i < node.length; i++) {
      const char = node.data[i];
      if (/\\s/.test(char)) { previousChar = ' '; continue; }
      const range = document.createRange();
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (!rect || rect.height === 0) continue;  // hidden: not on any line
      if (previousTop !== null && rect.top > previousTop + 2) {
        lines++;
        if (hangul.test(char) && hangul.test(previousChar)) {
          breaks++;
          examples.push(before.slice(-6) + '|' + node.data.slice(i, i + 6));
        }
      }
      previousTop = rect.top; previousChar = char; before = node.data.slice(Math.max(0, i - 6), i + 1);
    }
  }
  return [breaks, lines, examples.slice(0, 20)];
}"""


@pytest.mark.parametrize("width", [320, 375])
@pytest.mark.parametrize("styles", ["as sent", "stripped"])
def test_korean_lines_break_between_words_never_inside_them(browser, sample, width, styles):
    """Every <style> removed is how Gmail's apps with a non-Google account and Korean webmail
    show it: the rule that keeps Korean words whole must be inline on the wrapper."""
    page = open_page(browser, sample / "email.html", width)
    if styles == "stripped":
        page.evaluate(STRIP_STYLES)
    breaks, lines, examples = page.evaluate(MID_WORD_BREAKS)
    page.close()
    assert lines > 150  # the sample's Korean wraps onto many lines at phone width
    assert (breaks, examples) == (0, [])


STRIP_STYLES = "() => document.querySelectorAll('style, link').forEach(e => e.remove())"
GREY = "rgb(87, 96, 106)"


@pytest.mark.parametrize("styles", ["as sent", "stripped"])
def test_footer_text_and_links_are_grey_and_unsubscribe_stays_on_one_line(browser, sample, styles):
    page = open_page(browser, sample / "email.html", 375)
    if styles == "stripped":
        page.evaluate(STRIP_STYLES)
    colours = page.evaluate("""() => [...document.querySelectorAll('.foot p, .foot a, .foot span')]
        .map(e => [e.textContent.slice(0, 30), getComputedStyle(e).color])""")
    assert len(colours) >= 7
    assert [c for c in colours if c[1] != GREY] == []
    unsubscribe = page.locator(".foot a", has_text="Unsubscribe")
    assert unsubscribe.evaluate("a => a.getClientRects().length") == 1  # one line box: not split
    page.close()


def relative_luminance(rgb: str) -> float:
    channels = [int(part) / 255 for part in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    high, low = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# Each visible text element's colour and the first opaque background behind it.
TEXT_COLOURS = """() => {
  const out = [];
  for (const element of document.body.querySelectorAll('*')) {
    const ownText = [...element.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!ownText || !element.getClientRects().length) continue;
    let back = element, background = 'rgb(255, 255, 255)';
    for (; back; back = back.parentElement) {
      const colour = getComputedStyle(back).backgroundColor;
      if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') { background = colour; break; }
    }
    out.push([element.tagName + '.' + element.className, getComputedStyle(element).color, background]);
  }
  return out;
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("document", ["email.html", "web.html"])
def test_every_text_has_at_least_4_5_to_1_contrast(browser, sample, scheme, document):
    page = browser.new_page(viewport={"width": 800, "height": 900}, color_scheme=scheme)
    page.goto((sample / document).as_uri())
    if document == "web.html":
        page.locator("details summary").first.click()  # the "▸ English original" summary included
    texts = page.evaluate(TEXT_COLOURS)
    page.close()
    assert any(name.startswith("SUMMARY") for name, _, _ in texts) or document == "email.html"
    low = [(name, colour, back, round(contrast(colour, back), 2)) for name, colour, back in texts
           if contrast(colour, back) < 4.5]
    assert low == []


def test_contents_box_is_evenly_padded_and_the_notice_keeps_the_width_of_the_text(browser, sample):
    page = open_page(browser, sample / "email.html", 375)
    gaps = page.evaluate("""() => {
        const box = document.querySelector('.toc').getBoundingClientRect();
        const label = document.querySelector('.toc h3').getBoundingClientRect();
        const items = [...document.querySelectorAll('.toc li')];
        const last = items[items.length - 1].getBoundingClientRect();
        const body = document.querySelector('.intro p').getBoundingClientRect();
        const note = document.querySelector('.note li').getBoundingClientRect();
        return [label.top - box.top, box.bottom - last.bottom, note.width, body.width];
    }""")
    page.close()
    above, below, note_width, text_width = gaps
    assert 12 <= above <= 24 and abs(above - below) <= 2, gaps
    assert note_width >= text_width - 24, gaps  # bullets indented a little, not 40 px


def test_each_intro_passage_folds_its_own_english(browser, config, tmp_path):
    intro = (Bilingual(Text("첫 문단."), Text("First paragraph.")), Bilingual(Text("둘째 문단."), Text("Second one.")))
    paper = Paper(slug="p", title_ko="제목", title_en="Title", summary=(Bilingual(Text("요약."), None),))
    issue = Issue(title="Test", date=dt.date(2023, 10, 16), papers=(paper,), intro=intro)
    path = tmp_path / "email.html"
    path.write_text(render_issue(issue, config).html, encoding="utf-8")
    page = open_page(browser, path, 375)
    first, second = page.locator(".intro .en").nth(0), page.locator(".intro .en").nth(1)
    assert first.is_hidden() and second.is_hidden()
    assert page.locator(".paper label.tg").count() == 0  # nothing to fold in the paper: no toggle
    page.locator(".intro label.tg").nth(1).click()
    assert second.is_visible() and first.is_hidden()
    page.close()
