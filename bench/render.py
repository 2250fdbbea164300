"""Render figures for the sample issue and synthetic 15- and 20-paper issues: time per stage, and
the sizes of the HTML part and of the whole message as sent, for each edition (bilingual, ko,
en). Prints; asserts nothing.

usage: python bench/render.py [ISSUE.md] [--runs N]

The figure that matters for Gmail is the HTML part as it is sent (base64, CRLF lines): Gmail clips
a message whose HTML passes about 102 KB (104,448 bytes), hiding the rest of the issue and the
unsubscribe link; `build` warns from 100,000. The whole message (both parts and the headers) is
what each SES call uploads. Targets: the sample under 70 KB and 15 papers under 100 KB as sent
(issues 11 and 17), every edition; a warm render of the sample under 4 ms (issue 21), and the
three editions a send renders timed together.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from newsletter.compose import MessageTemplate
from newsletter.config import load_config
from newsletter.model import Issue
from newsletter.parse import parse_issue
from newsletter.render import CLIP_WARNING_BYTES, GMAIL_CLIP_BYTES, measure, render_editions, render_issue

REPO = Path(__file__).resolve().parent.parent
SIZE_TARGETS = {10: 70_000, 15: 100_000}  # papers -> bytes of the encoded HTML part
RENDER_TARGET_MS = 4.0


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


def whole_message_bytes(rendered, config) -> int:
    """One reader's message as compose builds it: headers, text part, HTML part, all encoded."""
    message = MessageTemplate(rendered, config).message_for(
        "reader@example.org", name="독자", unsubscribe_url="https://example.org/unsubscribe?t=" + "x" * 43,
        unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe",
        preferences_url="https://example.org/preferences/" + "x" * 60,
    )
    return len(message.raw)


def report_sizes(label: str, issue: Issue, config) -> None:
    for edition, rendered in render_editions(issue, config).items():
        report_edition_sizes(f"{label}, {edition} edition", issue, rendered, config)


def report_edition_sizes(label: str, issue: Issue, rendered, config) -> None:
    sizes = measure(rendered)
    papers = len(issue.papers)
    if sizes.clipped_by_gmail:
        verdict = "OVER the clip: build warns"
    elif sizes.near_gmail_clip:
        verdict = f"under the clip, past {CLIP_WARNING_BYTES:,}: build warns"
    else:
        verdict = "under the clip"
    target = SIZE_TARGETS.get(papers)
    met = f"; target {target:,}: {'met' if sizes.encoded_html_bytes < target else 'MISSED'}" if target else ""
    print(f"{label}: {papers} papers")
    print(f"  HTML                 {sizes.html_bytes:>9,} bytes")
    print(f"  HTML part as sent    {sizes.encoded_html_bytes:>9,} bytes  base64, CRLF; "
          f"{GMAIL_CLIP_BYTES - sizes.encoded_html_bytes:,} below Gmail's {GMAIL_CLIP_BYTES:,} ({verdict}){met}")
    print(f"  whole message        {whole_message_bytes(rendered, config):>9,} bytes  headers, text and HTML parts "
          "as one reader gets them")
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

    load_before = os.getloadavg()
    started = time.perf_counter()
    first = render_issue(issue, config)
    cold = time.perf_counter() - started
    runs, cpu = [], []
    for _ in range(args.runs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        rendered = render_issue(issue, config)
        cpu.append(time.thread_time() - started_cpu)
        runs.append((time.perf_counter() - started, rendered.timings))
    whole = statistics.median(total for total, _ in runs) * 1000

    print(f"render time, median of {args.runs} warm runs in one process (first call: {cold * 1000:.0f} ms, "
          f"of which inlining {first.timings['inline'] * 1000:.0f} ms)")
    for stage in first.timings:
        median = statistics.median(timings[stage] for _, timings in runs)
        print(f"  {stage:<14} {median * 1000:7.2f} ms")
    print(f"  {'whole render':<14} {whole:7.2f} ms  (target {RENDER_TARGET_MS:.0f} ms: "
          f"{'met' if whole < RENDER_TARGET_MS else 'MISSED'})")
    # CPU time of this thread: what the render costs, without the waits of a loaded machine.
    print(f"  {'CPU time':<14} {statistics.median(cpu) * 1000:7.2f} ms  median ({min(cpu) * 1000:.2f} at least)")
    editions_runs = []
    for _ in range(max(1, args.runs // 3)):
        started = time.perf_counter()
        render_editions(issue, config)
        editions_runs.append(time.perf_counter() - started)
    print(f"  {'3 editions':<14} {statistics.median(editions_runs) * 1000:7.2f} ms  median of {len(editions_runs)}: "
          "what a send renders (each edition's email and text part, the web page once)")
    print(f"  load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (2 cores)")
    print()
    report_sizes("sample issue", issue, config)
    report_sizes("synthetic issue", repeated_papers(issue, 15), config)
    report_sizes("synthetic issue", repeated_papers(issue, 20), config)


if __name__ == "__main__":
    main()
