"""Render figures for the sample issue: time per stage and sizes. Prints; asserts nothing.

usage: python bench/render.py [ISSUE.md] [--runs N]

Targets (issue 3): the sample's base64-encoded HTML part under 90 KB (Gmail clips near 102 KB), a
15-paper issue under the clip or warned about by `newsletter build`, the whole render under 100 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from newsletter.config import load_config
from newsletter.model import Issue
from newsletter.parse import parse_issue
from newsletter.render import GMAIL_CLIP_BYTES, measure, render_issue

REPO = Path(__file__).resolve().parent.parent


def repeated_papers(issue: Issue, count: int) -> Issue:
    """A synthetic issue of `count` papers: the sample's, repeated with unique slugs."""
    papers = [
        dataclasses.replace(paper, slug=f"{paper.slug}-{n}")
        for n in range(count // len(issue.papers) + 1)
        for paper in issue.papers
    ]
    return dataclasses.replace(issue, papers=tuple(papers[:count]))


def sent_html_part_bytes(html: str) -> int:
    """The HTML part as the stdlib encodes it (base64, LF line ends; CRLF on the wire adds 1 byte
    per 76-character line, which `measure` counts): a cross-check of `measure`."""
    message = EmailMessage(policy=SMTP)
    message.set_content(html, subtype="html", cte="base64")
    return len(message.get_payload().encode("ascii"))


def report_sizes(label: str, issue: Issue, config) -> None:
    rendered = render_issue(issue, config)
    sizes = measure(rendered)
    verdict = "over the clip: build warns" if sizes.clipped_by_gmail else "under the clip"
    print(f"{label}: {len(issue.papers)} papers")
    print(f"  HTML                 {sizes.html_bytes:>9,} bytes")
    print(f"  HTML part, base64    {sizes.encoded_html_bytes:>9,} bytes  (stdlib, LF ends: "
          f"{sent_html_part_bytes(rendered.html):,}; Gmail clips above {GMAIL_CLIP_BYTES:,}: {verdict})")
    print(f"  text content         {sizes.text_content_bytes:>9,} bytes")
    print(f"  markup-to-text ratio {sizes.markup_ratio:>9.2f}  (HTML bytes per byte of visible text)")
    print(f"  text part            {sizes.text_part_bytes:>9,} bytes")
    print(f"  web page             {len(rendered.web_html.encode()):>9,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("issue", nargs="?", default=str(REPO / "issues" / "2023-10-16.md"))
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    config = load_config(REPO / "newsletter.toml")
    issue = parse_issue(args.issue)

    started = time.perf_counter()
    first = render_issue(issue, config)
    cold = time.perf_counter() - started
    runs = []
    for _ in range(args.runs):
        started = time.perf_counter()
        rendered = render_issue(issue, config)
        runs.append((time.perf_counter() - started, rendered.timings))

    print(f"render time, median of {args.runs} runs in one process (first call: {cold * 1000:.0f} ms, "
          f"of which premailer {first.timings['premailer'] * 1000:.0f} ms)")
    for stage in first.timings:
        median = statistics.median(timings[stage] for _, timings in runs)
        print(f"  {stage:<14} {median * 1000:7.2f} ms")
    print(f"  {'whole render':<14} {statistics.median(total for total, _ in runs) * 1000:7.2f} ms")
    print()
    report_sizes("sample issue", issue, config)
    report_sizes("synthetic issue", repeated_papers(issue, 15), config)


if __name__ == "__main__":
    main()
