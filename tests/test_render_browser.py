"""The rendered sample issue (and a 15-paper week) in real headless Chromium (Debian's chromium,
driven by playwright), laid out at 375 px as three kinds of client show it: as sent (Apple Mail,
iOS, Samsung: the folds work), with the :checked rules removed (Gmail, Outlook.com, Proton: no
fold) and with every <style> removed (Gmail apps with a non-Google account, Korean webmail). No
horizontal scroll, readable text, compact where nothing folds, every English original one tap
away, targets a thumb can hit, Korean broken only between words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from pathlib import Path

import lxml.html
import pytest

from newsletter import markup
from newsletter.clients import without_checked_rules, without_styles
from newsletter.config import load_config
from newsletter.model import EDITIONS, Bilingual, Issue, Link, Paper, Text
from newsletter.parse import parse_issue
from newsletter.render import render_editions, render_issue, web_url

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


LAYOUTS = {"as sent": lambda html: html, "no :checked": without_checked_rules, "no <style>": without_styles}


def fifteen_papers(issue: Issue) -> Issue:
    """The sample's papers repeated to 15, each with a slug of its own."""
    papers = [dataclasses.replace(paper, slug=f"{paper.slug}-{n}") if n else paper
              for n in range(2) for paper in issue.papers][:15]
    return dataclasses.replace(issue, papers=tuple(papers))


@pytest.fixture(scope="module")
def weeks(config, tmp_path_factory):
    """The sample and a 15-paper week: each issue, its web page and its email in the three
    layouts, in each edition (keyed by week, then edition)."""
    sample_issue = parse_issue(REPO / "issues" / "2023-10-16.md")
    out = {}
    for name, issue in (("sample", sample_issue), ("15 papers", fifteen_papers(sample_issue))):
        for edition, rendered in render_editions(issue, config).items():
            folder = tmp_path_factory.mktemp(f"{name.replace(' ', '-')}-{edition}")
            (folder / "web.html").write_text(rendered.web_html, encoding="utf-8")
            for layout, transform in LAYOUTS.items():
                (folder / f"{layout}.html").write_text(transform(rendered.html), encoding="utf-8")
            out[name, edition] = (issue, folder)
    return out


def open_page(browser, path: Path, width: int, height: int = 667):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(path.as_uri())
    assert page.evaluate("() => document.compatMode") == "CSS1Compat"  # not quirks mode
    return page


def horizontal_overflow(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


@pytest.mark.parametrize("width", [320, 375, 600])
@pytest.mark.parametrize("edition", EDITIONS)
def test_no_horizontal_scroll_and_text_at_least_14px(browser, weeks, width, edition):
    _, folder = weeks["sample", edition]
    page = open_page(browser, folder / "as sent.html", width)
    assert horizontal_overflow(page) <= 0
    sizes = page.evaluate(TEXT_SIZES)
    assert len(sizes) > 50
    assert [(size, name) for size, name in sizes if size < 14] == []
    page.close()


PAGE_HEIGHT = "() => document.documentElement.scrollHeight"


@pytest.mark.parametrize("week", ["sample", "15 papers"])
@pytest.mark.parametrize("edition", EDITIONS)
def test_where_nothing_folds_the_email_stays_about_as_long_as_where_it_folds(browser, weeks, week, edition):
    """Today's main: 2.9x and 3.1x the folded height for the sample (20,401 and 21,939 px)."""
    _, folder = weeks[week, edition]
    heights = {}
    for layout in LAYOUTS:
        page = open_page(browser, folder / f"{layout}.html", 375)
        heights[layout] = page.evaluate(PAGE_HEIGHT)
        page.close()
    folded = heights["as sent"]
    assert heights["no :checked"] <= 1.25 * folded, heights
    assert heights["no <style>"] <= 1.5 * folded, heights


ENGLISH_OF_EACH_PAPER = """() => [...document.querySelectorAll('.paper')].map(card => [
  [...card.querySelectorAll('.en')].map(e => [e.textContent, e.getClientRects().length > 0]),
  [...card.querySelectorAll('a.wl')].filter(a => a.getClientRects().length).map(a => a.href),
  [...card.querySelectorAll('label.tg')].filter(l => l.getClientRects().length).map(l => l.id || l.htmlFor)])"""


@pytest.mark.parametrize("week", ["sample", "15 papers"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_papers_english_original_is_one_tap_away_in_every_layout(browser, weeks, week, layout, config):
    """As sent: folded behind a toggle that opens it. Where nothing folds: not shown (that is what
    keeps the email short) but linked, from a link in its place, to the paper's anchor on the web
    page, which holds every English original of that paper."""
    issue, folder = weeks[week, "bilingual"]
    page = open_page(browser, folder / f"{layout}.html", 375)
    cards = page.evaluate(ENGLISH_OF_EACH_PAPER)
    web = lxml.html.fromstring((folder / "web.html").read_text(encoding="utf-8"))
    assert len(cards) == len(issue.papers)
    for number, (paper, (english, links, toggles)) in enumerate(zip(issue.papers, cards), start=1):
        originals = [passage.en for passage in paper.summary + paper.abstract if passage.en and passage.ko]
        assert len(english) == len(originals) > 0
        assert not any(shown for _, shown in english), (layout, paper.slug)  # folded or linked: compact
        if layout == "as sent":
            assert links == [] and toggles == [f"f{number}"]
            page.locator(f"label[for=f{number}]").click()
            assert page.locator(f"#p{number} .en").first.is_visible()
        else:
            assert links == [f"{web_url(issue, config)}#{paper.slug}"] and toggles == []
            held = " ".join(web.get_element_by_id(paper.slug).text_content().split())
            for text in originals:
                assert " ".join(markup.to_plain(text).split()) in held
    page.close()


FOLDS_OF_EACH_PAPER = """() => [...document.querySelectorAll('.paper')].map(card => [
  card.querySelectorAll('.en, .te').length,
  [...card.querySelectorAll('a.wl, a.btn2')].filter(a => a.getClientRects().length).map(a => [a.textContent, a.href]),
  [...card.querySelectorAll('label.tg')].filter(l => l.getClientRects().length).map(l => l.htmlFor)])"""


@pytest.mark.parametrize("week", ["sample", "15 papers"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("edition", ["ko", "en"])
def test_in_an_edition_of_one_language_each_abstract_and_english_original_is_one_tap_away(
        browser, weeks, week, layout, edition, config):
    """No original in the other language anywhere; the abstract folds where folds run and is
    linked at the paper's anchor on the web page elsewhere; in ko, each paper also links its
    English original there, and the web page's anchor holds it."""
    issue, folder = weeks[week, edition]
    page = open_page(browser, folder / f"{layout}.html", 375)
    cards = page.evaluate(FOLDS_OF_EACH_PAPER)
    web = lxml.html.fromstring((folder / "web.html").read_text(encoding="utf-8"))
    assert len(cards) == len(issue.papers)
    for number, (paper, (originals_shown, links, toggles)) in enumerate(zip(issue.papers, cards), start=1):
        anchor, links = f"{web_url(issue, config)}#{paper.slug}", [tuple(link) for link in links]
        assert originals_shown == 0, (edition, paper.slug)
        if not paper.abstract:  # nothing to fold (GenBench)
            assert toggles == [] and [text for text, _ in links if "초록" in text or "Abstract" in text] == []
        elif layout == "as sent":
            assert toggles == [f"f{number}"] and anchor not in [href for text, href in links if "초록" in text
                                                                 or "Abstract" in text]
            page.locator(f"label[for=f{number}]").click()
            shown = page.locator(f"#p{number} .more").inner_text()
            abstract = paper.abstract[0].ko if edition == "ko" else paper.abstract[0].en
            assert " ".join(markup.to_plain(abstract).split())[:40] in " ".join(shown.split())
        else:
            assert toggles == [] and (f"{'논문 초록' if edition == 'ko' else 'Abstract'} ↗", anchor) in links
        if edition == "ko":
            assert ("영어 원문 ↗", anchor) in links
            held = " ".join(web.get_element_by_id(paper.slug).text_content().split())
            for passage in paper.summary + paper.abstract:
                assert " ".join(markup.to_plain(passage.en).split()) in held
    page.close()


def test_the_english_edition_shows_no_hangul_and_the_korean_no_english_original(browser, weeks):
    issue, _ = weeks["sample", "en"]
    visible = {}
    for edition in EDITIONS:
        page = open_page(browser, weeks["sample", edition][1] / "as sent.html", 375)
        visible[edition] = page.evaluate("() => document.body.textContent")  # what folds open, too
        page.close()
    assert re.findall("[가-힣]+", visible["en"]) == []
    originals = [" ".join(markup.to_plain(passage.en).split())[:50] for paper in issue.papers
                 for passage in paper.summary + paper.abstract]
    flat = {edition: " ".join(text.split()) for edition, text in visible.items()}
    assert [original for original in originals if original in flat["ko"]] == []
    assert [original for original in originals if original not in flat["en"]] == []


# Each link and toggle a reader can see, one box per line it sits on: [class, text, height].
TARGETS = """() => [...document.querySelectorAll('a, label')]
  .flatMap(e => [...e.getClientRects()].map(box => [e.className || e.tagName, e.textContent.slice(0, 30), box.height]))"""


@pytest.mark.parametrize("week", ["sample", "15 papers"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("edition", EDITIONS)
def test_no_link_is_under_24px_and_buttons_are_44px(browser, weeks, week, layout, edition):
    """WCAG 2.5.8 (24 px); a button or toggle is a thumb's 44 px where the styles give it that look."""
    _, folder = weeks[week, edition]
    page = open_page(browser, folder / f"{layout}.html", 375)
    targets = page.evaluate(TARGETS)
    page.close()
    assert len(targets) > 40
    assert [target for target in targets if target[2] < 24] == []
    if layout != "no <style>":
        buttons = [target for target in targets if target[0] in ("btn", "btn2", "wl", "tg")]
        assert len(buttons) >= 20 and [b for b in buttons if b[2] < 44] == []


@pytest.mark.parametrize("layout", ["as sent", "no :checked"])
@pytest.mark.parametrize("edition", EDITIONS)
def test_the_first_screen_shows_the_contents_and_reaches_the_first_paper(browser, weeks, layout, edition):
    """375 x 667: the week's contents whole, and the first paper's heading begun."""
    _, folder = weeks["sample", edition]
    page = open_page(browser, folder / f"{layout}.html", 375)
    contents, heading = page.evaluate("""() => [document.querySelector('.toc').getBoundingClientRect().bottom,
                                                document.querySelector('.paper h2').getBoundingClientRect().top]""")
    page.close()
    assert contents < heading < 667 - 24, (contents, heading)


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


@pytest.mark.parametrize("week, width", [("sample", 320), ("sample", 375), ("15 papers", 375)])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("edition", EDITIONS)
def test_korean_lines_break_between_words_never_inside_them(browser, weeks, week, width, layout, edition):
    """Every <style> removed is how Gmail's apps with a non-Google account and Korean webmail
    show it: the rule that keeps Korean words whole must be inline on the wrapper. (The en
    edition has no Korean to break: it checks that nothing else breaks mid-word either.)"""
    _, folder = weeks[week, edition]
    page = open_page(browser, folder / f"{layout}.html", width)
    breaks, lines, examples = page.evaluate(MID_WORD_BREAKS)
    page.close()
    assert lines > 100  # the Korean wraps onto many lines at phone width
    assert (breaks, examples) == (0, [])


STRIP_STYLES = "() => document.querySelectorAll('style, link').forEach(e => e.remove())"
GREY = "rgb(87, 96, 106)"


@pytest.mark.parametrize("styles", ["as sent", "stripped"])
@pytest.mark.parametrize("edition", EDITIONS)
def test_footer_text_and_links_are_grey_and_unsubscribe_stays_on_one_line(browser, weeks, styles, edition):
    _, folder = weeks["sample", edition]
    page = open_page(browser, folder / "as sent.html", 375)
    if styles == "stripped":
        page.evaluate(STRIP_STYLES)
    colours = page.evaluate("""() => [...document.querySelectorAll('.foot p, .foot a, .foot span')]
        .map(e => [e.textContent.slice(0, 30), getComputedStyle(e).color])""")
    assert len(colours) >= 7
    assert [c for c in colours if c[1] != GREY] == []
    unsubscribe = page.locator(".foot a", has_text="수신 거부" if edition == "ko" else "Unsubscribe")
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
        const entries = [...document.querySelectorAll('.toc a')];
        const last = entries[entries.length - 1].getBoundingClientRect();
        const body = document.querySelector('.intro p').getBoundingClientRect();
        const note = document.querySelector('.note li').getBoundingClientRect();
        return [label.top - box.top, box.bottom - last.bottom, note.width, body.width];
    }""")
    page.close()
    above, below, note_width, text_width = gaps
    assert 8 <= above <= 24 and abs(above - below) <= 4, gaps
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
