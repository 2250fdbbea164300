"""Render figures for the sample issue and a synthetic 15-paper issue: time per stage and sizes.
Prints; asserts nothing.

usage: python bench/render.py [ISSUE.md] [--runs N]

The figure that matters is the HTML part as it is sent (base64, CRLF lines): Gmail clips a
message whose HTML passes 104,448 bytes, hiding the rest of the issue and the unsubscribe link.
Targets (issue 11): the sample under 70 KB (70,000 bytes), 15 papers under 100 KB (100,000 bytes);
the whole render under 100 ms.
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
SAMPLE_TARGET = 70_000  # bytes of the encoded HTML part
FIFTEEN_TARGET = 100_000


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


def report_sizes(label: str, issue: Issue, config, target: int) -> None:
    rendered = render_issue(issue, config)
    sizes = measure(rendered)
    verdict = "over the clip: build warns" if sizes.clipped_by_gmail else "under the clip"
    met = "met" if sizes.encoded_html_bytes < target else "MISSED"
    print(f"{label}: {len(issue.papers)} papers")
    print(f"  HTML                 {sizes.html_bytes:>9,} bytes")
    print(f"  HTML part as sent    {sizes.encoded_html_bytes:>9,} bytes  base64, CRLF; "
          f"{GMAIL_CLIP_BYTES - sizes.encoded_html_bytes:,} below Gmail's {GMAIL_CLIP_BYTES:,} ({verdict}); "
          f"target {target:,}: {met}")
    print(f"  (stdlib payload)     {sent_html_part_bytes(rendered.html):>9,} bytes  (LF line ends: a cross-check)")
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
    report_sizes("sample issue", issue, config, SAMPLE_TARGET)
    report_sizes("synthetic issue", repeated_papers(issue, 15), config, FIFTEEN_TARGET)


if __name__ == "__main__":
    main()
