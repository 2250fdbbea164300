"""The archive's index page in real headless Chromium (the setup of test_render_browser): no
horizontal scroll at 375 and 800 px, Korean drawn with a Hangul font (no tofu), and the subscribe
form usable with JavaScript off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_publish import SAMPLE, SUBSCRIBE_URL, issue_copy, publish, site_config
from test_render_browser import CHROMIUM, CHROMIUM_ARGS, browser, horizontal_overflow, open_page  # noqa: F401

from newsletter.config import load_config

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
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert posted == ["email=%EB%8F%85%EC%9E%90%40example.com&website="]
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
    page.click("button[type=submit]")
    assert "메일함을 확인해 주세요" in page.locator("h1").inner_text()
    assert horizontal_overflow(page) <= 0
    [message] = moto_events.ses.messages()
    path = LINK.search(message.get_body(("plain",)).get_content()).group(1)
    page.goto(web_app.base + path)
    assert "구독을 확인하시겠습니까?" in page.locator("h1").inner_text()
    page.click("button[type=submit]")
    assert "구독이 시작되었습니다" in page.locator("h1").inner_text()
    context.close()
