"""css_inline (what `render` uses) against premailer (what it used before), on the same compiled
MJML: does the email look the same? Prints; asserts nothing. Needs premailer, which the project no
longer installs: `pip install 'premailer>=3.10,<4'`.

usage: python bench/inline_compare.py [--out DIR]

For each issue (the sample, 15 papers, and an edge issue: an intro with English originals, an
English-only passage, inline code, a 300-character word, a draft's markers, a Korean-only summary)
and each layout (as sent; every fold opened; the :checked rules removed; every <style> removed),
light and dark, at 375 and 800 px, Chromium lays out both versions and the script compares every
element's computed style (all properties) and box, one by one in document order, and the two
full-page screenshots pixel by pixel.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import logging
import re
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops
from playwright.sync_api import sync_playwright

from newsletter.clients import without_checked_rules, without_styles
from newsletter.config import load_config
from newsletter.model import Bilingual, Link, Paper, Text
from newsletter.parse import parse_issue
from newsletter.render import INLINE_CSS, _template_source, bundled_templates_dir, compile_mjml, render_issue, \
    template_environment

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from render import repeated_papers  # noqa: E402  (bench/render.py)

CHROMIUM = "/usr/bin/chromium"
IGNORE = ' data-premailer="ignore"'


def premailer_inline(html: str, css: str) -> str:
    """What render.inline_css did with premailer 3.10 (main before issue 21): inline `css`, leave
    every <style> alone (marked ignore), keep the doctype, no space after ';'."""
    from premailer import Premailer

    untouched = re.sub(r"<style\b", "<style" + IGNORE, html, flags=re.IGNORECASE)
    untouched = re.sub(r"^<!doctype html>", "<!DOCTYPE html>", untouched, flags=re.IGNORECASE)
    inliner = Premailer(untouched, css_text=css, allow_network=False, disable_link_rewrites=True,
                        strip_important=False, remove_classes=False, cssutils_logging_level=logging.CRITICAL)
    out = inliner.transform(pretty_print=False).replace(IGNORE, "")
    gap = re.compile(r";\s+")
    return re.sub(r'style="([^"]*)"', lambda m: 'style="' + gap.sub(";", m.group(1)) + '"', out)


def edge_issue(sample):
    intro = (Bilingual(Text("첫 문단입니다."), Text("The first paragraph.")), Bilingual(Text("둘째."), None))
    odd = Paper(
        slug="odd", title_ko="(번역 예정 · to be translated)", title_en="An Odd Paper: With `code`",
        summary=(Bilingual(Text("* 한국어로만 쓴 요약, `torch.nn.functional.scaled_dot_product_attention` 포함."), None),
                 Bilingual(None, Text("English only passage with " + "x" * 300 + "."))),
        abstract=(Bilingual(Text("(기계 번역 · machine translation) 초록."), Text("Abstract.")),),
        links=(Link("https://arxiv.org/abs/2310.10631"),), read_more=(Link("https://x.com/i/status/1"),),
    )
    return dataclasses.replace(sample, intro=intro, papers=(odd,) + sample.papers[:2], date=dt.date(2023, 10, 30))


LAYOUTS = {
    "as sent": lambda html: html,
    "opened": lambda html: html,  # every fold's label clicked
    "no :checked": without_checked_rules,
    "no <style>": without_styles,
}

STYLES = """() => [...document.querySelectorAll('*')].map(e => {
  const style = getComputedStyle(e), box = e.getBoundingClientRect();
  return [e.tagName, [...style].map(name => name + ':' + style.getPropertyValue(name)).join(';'),
          [box.x, box.y, box.width, box.height].join(',')];
})"""


def compare(browser, first: Path, second: Path, layout: str, scheme: str, width: int, out: Path | None, tag: str):
    shots, styles = [], []
    for path in (first, second):
        page = browser.new_page(viewport={"width": width, "height": 667}, color_scheme=scheme)
        page.goto(path.as_uri())
        if layout == "opened":
            for label in page.locator("label.tg").all():
                label.click()
        styles.append(page.evaluate(STYLES))
        shots.append(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB"))
        page.close()
    (a, b) = styles
    differing = sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b))
    if shots[0].size != shots[1].size:
        pixels = -1
    else:
        diff = ImageChops.difference(*shots)
        strongest = ImageChops.lighter(ImageChops.lighter(*diff.split()[:2]), diff.split()[2])
        pixels = sum(strongest.histogram()[1:])  # pixels where any channel differs, by as little as 1
        if pixels and out:
            diff.save(out / f"{tag}-diff.png")
    return len(a), differing, pixels, shots[0].size[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write a diff image for any screenshot that differs")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    config = load_config(REPO / "newsletter.toml")
    sample = parse_issue(REPO / "issues" / "2023-10-16.md")
    env = template_environment(bundled_templates_dir())
    css = _template_source(env, INLINE_CSS)
    issues = {"sample": sample, "15 papers": repeated_papers(sample, 15), "edge": edge_issue(sample)}
    folder = Path(tempfile.mkdtemp(prefix="inline-compare-"))
    total = same = 0
    print(f"{'issue':10} {'layout':12} {'scheme':6} {'width':>5} {'elements':>8} {'differ':>6} {'pixels':>6} {'height':>6}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        for name, issue in issues.items():
            rendered = render_issue(issue, config)
            versions = {"css_inline": rendered.html, "premailer": premailer_inline(compile_mjml(rendered.mjml), css)}
            for layout, transform in LAYOUTS.items():
                paths = []
                for version, html in versions.items():
                    path = folder / f"{name}-{layout}-{version}.html".replace(" ", "_").replace(":", "")
                    path.write_text(transform(html), encoding="utf-8")
                    paths.append(path)
                for scheme in ("light", "dark"):
                    for width in (375, 800):
                        tag = f"{name}-{layout}-{scheme}-{width}".replace(" ", "_").replace(":", "")
                        elements, differing, pixels, height = compare(browser, *paths, layout, scheme, width,
                                                                      args.out, tag)
                        total += 1
                        same += differing == 0 and pixels == 0
                        print(f"{name:10} {layout:12} {scheme:6} {width:>5} {elements:>8} {differing:>6} "
                              f"{pixels:>6} {height:>6}")
        browser.close()
    print(f"\n{same} of {total} comparisons identical (every element's computed style and box, and every pixel)")


if __name__ == "__main__":
    main()
