"""The archive's pages in real headless Chromium (the setup of test_render_browser): no horizontal
scroll at 375 and 800 px, Korean drawn with a Hangul font (no tofu), the subscribe form usable with
JavaScript off; search typed into the archive's box over a plain static file server (no app code
running), every tag link answered, the feed read over HTTP; 4.5:1 contrast light and dark and no
Korean word broken, on the archive's pages, the subscribe pages and the confirmation email."""

from __future__ import annotations

import functools
import http.server
import re
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import feedparser
import pytest

from test_publish import (NEW_PAPER, NEW_PAPER_SLUG, SAMPLE, SUBSCRIBE_URL, WEB_BASE, hostile_week, issue_copy, publish,
                          second_week, site_config)
from test_render_browser import (CHROMIUM, CHROMIUM_ARGS, MID_WORD_BREAKS, TEXT_COLOURS, browser, contrast,  # noqa: F401
                                 horizontal_overflow, open_page)

from newsletter.config import load_config
from newsletter.parse import parse_issue
from newsletter.store import Store

# For each element: its Hangul syllables, and the glyphs Chromium drew for it with a CJK font
# (CSS.getPlatformFontsForNode, the fonts DevTools lists under "Rendered Fonts").
HANGUL = "[\uac00-\ud7a3]"


def hangul_drawn_by_a_cjk_font(page, selector: str) -> tuple[int, int]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    glyphs = 0
    for node in cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": selector})["nodeIds"]:
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        glyphs += sum(f["glyphCount"] for f in fonts if "CJK" in f["familyName"] or "KR" in f["familyName"])
    text = page.evaluate(f"() => [...document.querySelectorAll({selector!r})].map(e => e.textContent).join('')")
    syllables = len(re.findall(HANGUL, text))
    cdp.detach()
    return syllables, glyphs


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    config_path = site_config(folder)
    publish(config_path, SAMPLE, issue_copy(folder, "2023-10-23"), issue_copy(folder, "2023-10-30"))
    return load_config(config_path).publish.out


@pytest.mark.parametrize("width", [375, 800])
def test_the_index_fits_the_screen_and_draws_korean_with_a_hangul_font(browser, site, width):
    page = open_page(browser, site / "index.html", width)
    assert horizontal_overflow(page) <= 0
    for selector in ("h1", "h2", "ul.papers li", "p.fine", "label"):
        syllables, glyphs = hangul_drawn_by_a_cjk_font(page, selector)
        assert syllables > 0 and glyphs >= syllables, selector
    smallest = page.evaluate("""() => Math.min(...[...document.querySelectorAll('p, li, label, button, input, h1, h2, h3')]
        .filter(e => e.offsetParent !== null && !e.closest('.hp')).map(e => parseFloat(getComputedStyle(e).fontSize)))""")
    assert smallest >= 14
    assert page.locator("li.issue").count() == 3
    page.close()


def test_without_javascript_the_form_posts_the_address_and_the_honeypot_stays_out_of_sight(browser, site):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
    page = context.new_page()
    posted = []
    page.route(SUBSCRIBE_URL, lambda route: (posted.append(route.request.post_data), route.fulfill(body="ok")))
    page.goto((site / "index.html").as_uri())
    assert page.locator("#subscribe-email").is_visible()
    honeypot = page.locator("#subscribe-website").bounding_box()
    assert honeypot is None or honeypot["x"] + honeypot["width"] <= 0
    page.fill("#subscribe-email", "독자@example.com")
    page.click(".subscribe-form button[type=submit]")
    page.wait_for_load_state()
    assert posted == ["email=%EB%8F%85%EC%9E%90%40example.com&edition=bilingual&website="]  # the default edition
    page.goto((site / "index.html").as_uri())
    page.fill("#subscribe-email", "reader@example.com")
    page.click("text=영어만")  # the whole label is the tap target
    page.click(".subscribe-form button[type=submit]")
    page.wait_for_load_state()
    assert posted[-1] == "email=reader%40example.com&edition=en&website="
    context.close()


# --- the web app's subscribe pages --------------------------------------------------------------


@pytest.fixture
def web_app(tmp_path, moto_events, monkeypatch):
    from conftest import _free_port
    from test_subscribe import WebApp, subscribe_config

    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    port = _free_port()  # the form's public URL is this server
    app = WebApp(subscribe_config(tmp_path, url=f"http://127.0.0.1:{port}/subscribe/"), with_database=True, port=port)
    yield app
    app.close()


@pytest.mark.parametrize("width", [375, 800])
def test_the_subscribe_pages_fit_the_screen_and_draw_korean_with_a_hangul_font(browser, web_app, width):
    page = browser.new_page(viewport={"width": width, "height": 800})
    for path in ("/subscribe/", "/subscribe/confirm/not-a-token"):
        page.goto(web_app.base + path)
        assert horizontal_overflow(page) <= 0, path
        syllables, glyphs = hangul_drawn_by_a_cjk_font(page, "h1, .message p")
        assert syllables > 0 and glyphs >= syllables, path
    page.close()


def test_without_javascript_a_reader_subscribes_and_confirms_in_the_browser(browser, web_app, moto_events):
    from test_subscribe import LINK

    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.goto(web_app.base + "/subscribe/")
    page.fill("#subscribe-email", "reader@example.com")
    page.check("input[name=edition][value=ko]")
    page.click("button[type=submit]")
    assert "메일함을 확인해 주세요" in page.locator("h1").inner_text()
    assert horizontal_overflow(page) <= 0
    [message] = moto_events.ses.messages()
    path = LINK.search(message.get_body(("plain",)).get_content()).group(1)
    page.goto(web_app.base + path)
    assert "구독을 확인하시겠습니까?" in page.locator("h1").inner_text()
    assert "한국어만" in page.locator("main").inner_text()  # the edition the link carries
    page.click("button[type=submit]")
    assert "구독이 시작되었습니다" in page.locator("h1").inner_text()
    context.close()
    with Store.open(web_app.config.database) as store:
        assert (store.get("reader@example.com").status, store.get("reader@example.com").edition) == ("subscribed", "ko")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_preferences_page_reads_well_and_a_reader_changes_edition_in_the_browser(browser, web_app, scheme):
    import datetime as dt

    from newsletter.model import Subscriber
    from newsletter.preferences import PreferenceLinks
    from test_subscribe import KEY

    with Store.open(web_app.config.database) as store:
        now = dt.datetime.now(dt.UTC)
        store.insert([Subscriber("reader@example.com", None, "subscribed", "test", now, now, edition="ko")])
    link = PreferenceLinks(web_app.config, KEY, dt.datetime.now(dt.UTC)).for_address("reader@example.com", "ko")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 320, "height": 800},
                                  color_scheme=scheme)
    page = context.new_page()
    page.goto(web_app.base + "/preferences/" + link.rpartition("/")[2])
    assert horizontal_overflow(page) <= 0
    texts = page.evaluate(TEXT_COLOURS)
    assert len(texts) > 8 and [(what, colour, back, round(contrast(colour, back), 2)) for what, colour, back in texts
                               if contrast(colour, back) < 4.5] == []
    assert page.evaluate(MID_WORD_BREAKS)[0] == 0
    heights = page.evaluate("() => [...document.querySelectorAll('label.choice, button')].map(e => e.getBoundingClientRect().height)")
    assert len(heights) == 5 and min(heights) >= 44  # three choices, save, unsubscribe: thumb-sized
    assert page.is_checked("input[value=ko]")
    page.click("text=영어만")
    page.click("button:has-text('저장')")
    assert "저장되었습니다" in page.locator("h1").inner_text()
    context.close()
    with Store.open(web_app.config.database) as store:
        assert store.get("reader@example.com").edition == "en"


# --- search, tag pages and the feed over a static file server --------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two weeks published (the sample, then a second week with a paper of its own), and a week
    with hostile title and tags, served as static files: what S3 would serve, no app code."""
    folder = tmp_path_factory.mktemp("served")
    config_path = site_config(folder)
    publish(config_path, SAMPLE)
    publish(config_path, second_week(folder))
    site = load_config(config_path).publish.out
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", site, folder, config_path
    server.shutdown()
    server.server_close()


def search(page, words: str) -> list[str]:
    """Type `words` into the archive's search box; the links of the results, once they show."""
    page.fill("#search-input", "")
    page.fill("#search-input", words)
    page.wait_for_function("""words => new URL(location.href).searchParams.get('q') === words
        && document.querySelector('.search-status').textContent !== ''""", arg=words)
    page.wait_for_timeout(400)  # debounced: let a result list for a half-typed query be replaced
    return page.eval_on_selector_all("ol.results a.result-title", "links => links.map(a => a.getAttribute('href'))")


SELF_RAG = "self-rag-learning-to-retrieve-generate-and-critique-through"
RETRIEVAL_AUGMENTATION = "understanding-retrieval-augmentation-for-long-form-question"


def test_typing_into_the_archives_search_box_finds_each_paper_at_its_anchor_in_its_week(browser, served):
    base, site, _, _ = served
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(base + "index.html")
    found = search(page, "Self-RAG")
    assert set(found[:2]) == {f"2023-10-16.web.html#{SELF_RAG}", f"2023-10-23.web.html#{SELF_RAG}"}
    found = search(page, "검색 증강")
    assert {f"{week}.web.html#{slug}" for week in ("2023-10-16", "2023-10-23")
            for slug in (SELF_RAG, RETRIEVAL_AUGMENTATION)} <= set(found)
    assert found[0].endswith(RETRIEVAL_AUGMENTATION)  # the paper with the words in its title first
    found = search(page, NEW_PAPER)
    assert found[0] == f"2023-10-23.web.html#{NEW_PAPER_SLUG}"
    assert not [href for href in found if href.startswith("2023-10-16") and NEW_PAPER_SLUG in href]
    first = page.locator("li.result").first
    assert first.locator(".result-title").inner_text() == "깊이 혼합: 트랜스포머 언어 모델의 동적 연산 배분"
    assert first.locator(".result-en").inner_text() == NEW_PAPER
    assert first.locator(".result-week").inner_text() == "2023/10/23 ~ 10/29"
    assert first.locator("mark").count() > 0
    # The link lands on the paper.
    first.locator("a").click()
    page.wait_for_load_state()
    assert page.url == base + f"2023-10-23.web.html#{NEW_PAPER_SLUG}"
    assert page.evaluate("() => document.querySelector(':target') !== null")
    page.close()


def test_an_issue_pages_search_box_sends_its_words_to_the_archives_search(browser, served):
    base, site, _, _ = served
    page = browser.new_page(viewport={"width": 375, "height": 800})

    def from_the_site(route):  # the published URLs, answered from the site's folder
        path = urllib.parse.urlsplit(route.request.url).path.removeprefix(urllib.parse.urlsplit(WEB_BASE).path)
        route.fulfill(path=site / (path or "index.html"))

    page.route(WEB_BASE + "**", from_the_site)
    page.goto(WEB_BASE + "2023-10-23.web.html")
    page.fill("form.find input[name=q]", "검색 증강")
    page.click("form.find button")
    page.wait_for_selector("li.result")
    assert page.input_value("#search-input") == "검색 증강"
    assert page.locator("a.result-title").first.get_attribute("href").endswith(RETRIEVAL_AUGMENTATION)
    page.close()


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode("utf-8")


def test_every_tag_link_answers_200_with_a_page_naming_the_tag_and_its_papers(served):
    base, site, folder, _ = served
    weeks = [parse_issue(folder / "2023-10-23.md"), parse_issue(SAMPLE)]  # newest first
    links = {}
    for issue in weeks:
        _, page = fetch(base + f"{issue.issue_id}.web.html")
        for href, tag in re.findall(r'<a class="tag" href="([^"]+)"[^>]*>#([^<]+)</a>', page):
            links[href] = tag
    assert set(links.values()) == {"rag", "chain-of-thought", "mathglm", "moe", "효율"}
    _, index = fetch(base + "tags/index.html")
    for href, tag in links.items():
        assert href.startswith(WEB_BASE + "tags/")
        status, page = fetch(base + href.removeprefix(WEB_BASE))
        assert status == 200 and f"#{tag}</h1>" in page, href
        assert href.removeprefix(WEB_BASE + "tags/") in index
        titles = [paper.title for issue in weeks for paper in issue.papers if tag in paper.tags]
        positions = [page.index(title) for title in titles]
        assert positions == sorted(positions), tag  # newest week first


def test_the_feed_over_http_dates_each_entry_by_its_issue_and_links_its_papers(served):
    base, _, _, _ = served
    feed = feedparser.parse(base + "feed.xml")
    assert not feed.bozo, feed.get("bozo_exception")
    assert [entry.published_parsed[:3] for entry in feed.entries] == [(2023, 10, 23), (2023, 10, 16)]
    assert all(entry.updated_parsed >= entry.published_parsed for entry in feed.entries)
    assert f'href="{WEB_BASE}2023-10-23.web.html#{NEW_PAPER_SLUG}"' in feed.entries[0].content[0].value
    assert {tag.term for tag in feed.entries[0].tags} == {"rag", "chain-of-thought", "moe", "효율"}


def test_hostile_titles_show_as_text_in_search_results_and_run_nothing(browser, served):
    base, site, folder, config_path = served
    publish(config_path, hostile_week(folder))
    dialogs = []
    page = browser.new_page(viewport={"width": 800, "height": 800})
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(base + "index.html")
    found = search(page, "alert")
    assert found == ["2023-10-30.web.html#script-alert-2-script-llemma"]
    assert page.locator("a.result-title").inner_text() == '<img src=x onerror=alert(1)>렘마 " \' &'
    assert page.locator("ol.results img, ol.results script").count() == 0
    search(page, "passwd")
    page.goto(base + "tags/index.html")
    page.wait_for_timeout(200)
    assert dialogs == []
    page.close()


# --- contrast and Korean line breaks on every page around the email ----------------------------------


def _site_page(browser, url: str, width: int, scheme: str, query: str | None = None):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.goto(url)
    if query:
        search(page, query)
    return page


def _pages(served):
    base, _, _, _ = served
    pages = {"index with results": (base + "index.html", "검색 증강"), "tag page": (base + "tags/rag.html", None),
             "tag index": (base + "tags/index.html", None)}
    return pages


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("name", ["index with results", "tag page", "tag index"])
def test_every_text_on_the_archives_pages_has_at_least_4_5_to_1_contrast(browser, served, scheme, name):
    url, query = _pages(served)[name]
    page = _site_page(browser, url, 800, scheme, query)
    texts = page.evaluate(TEXT_COLOURS)
    page.close()
    assert len(texts) > 10
    low = [(what, colour, back, round(contrast(colour, back), 2)) for what, colour, back in texts
           if contrast(colour, back) < 4.5]
    assert low == []


@pytest.mark.parametrize("width", [320, 375])
@pytest.mark.parametrize("name", ["index with results", "tag page"])
def test_korean_on_the_archives_pages_breaks_between_words_never_inside_them(browser, served, width, name):
    url, query = _pages(served)[name]
    page = _site_page(browser, url, width, "light", query)
    assert horizontal_overflow(page) <= 0
    page.evaluate("() => document.querySelectorAll('.hp').forEach(e => e.remove())")  # the honeypot: off screen
    breaks, lines, examples = page.evaluate(MID_WORD_BREAKS)
    page.close()
    assert lines > 20
    assert (breaks, examples) == (0, [])


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_subscribe_pages_have_4_5_to_1_contrast_and_keep_korean_words_whole(browser, web_app, scheme):
    page = browser.new_page(viewport={"width": 320, "height": 800}, color_scheme=scheme)
    for path in ("/subscribe/", "/subscribe/confirm/not-a-token"):
        page.goto(web_app.base + path)
        page.evaluate("() => document.querySelectorAll('.hp').forEach(e => e.remove())")  # off screen
        texts = page.evaluate(TEXT_COLOURS)
        low = [(what, colour, back, round(contrast(colour, back), 2)) for what, colour, back in texts
               if contrast(colour, back) < 4.5]
        assert len(texts) > 5 and low == [], path
        breaks, lines, examples = page.evaluate(MID_WORD_BREAKS)
        assert lines > 5 and (breaks, examples) == (0, []), path
    page.close()


@pytest.fixture(scope="module")
def confirmation_email(tmp_path_factory) -> Path:
    from newsletter.site.pages import render_site_template

    config = load_config(site_config(tmp_path_factory.mktemp("confirmation")))
    html = render_site_template("confirmation_email.html.j2", {
        "config": config, "hours": 48, "link": "https://newsletter.example.com/subscribe/confirm/" + "x" * 120})
    path = tmp_path_factory.mktemp("confirmation-email") / "confirmation.html"
    path.write_text(html, encoding="utf-8")
    return path


@pytest.mark.parametrize("view", ["light", "dark", "light, every <style> removed"])
def test_the_confirmation_email_has_4_5_to_1_contrast_a_dark_palette_and_whole_korean_words(
        browser, confirmation_email, view):
    page = browser.new_page(viewport={"width": 320, "height": 800}, color_scheme=view.split(",")[0])
    page.goto(confirmation_email.as_uri())
    if "removed" in view:
        page.evaluate("() => document.querySelectorAll('style').forEach(e => e.remove())")
    texts = page.evaluate(TEXT_COLOURS)
    low = [(what, colour, back, round(contrast(colour, back), 2)) for what, colour, back in texts
           if contrast(colour, back) < 4.5]
    assert len(texts) >= 6 and low == []
    background = page.evaluate("() => getComputedStyle(document.querySelector('.cf-card')).backgroundColor")
    assert (background == "rgb(255, 255, 255)") == (view != "dark")
    breaks, lines, examples = page.evaluate(MID_WORD_BREAKS)
    assert lines > 10 and (breaks, examples) == (0, [])
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 320
    page.close()
