"""Draft figures: `new` from the sample week's list, and what `translate` itself costs per part
(re-read, parse, splice, re-parse, fsync'd atomic write) with `cat` as the "translator", so the
command's own time is near zero. Prints; asserts nothing.

usage: python bench/drafts.py [--papers N]

Target (issue 13): the tool's own share of a translate run is small next to a language model's
seconds per call, so that writing after every part (kill -9 loses at most one) costs nothing that
matters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from newsletter.config import DraftSettings, TranslateSettings
from newsletter.draft import draft_text, new_issue, read_paper_list
from newsletter.translate import translate_issue

REPO = Path(__file__).resolve().parent.parent
SAMPLE_LIST = REPO / "tests" / "data" / "2023-10-16-paper-links.csv"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=10, help="papers in the draft (the sample's, repeated)")
    args = parser.parse_args()
    listed = read_paper_list(SAMPLE_LIST)
    papers = [listed[n % len(listed)] for n in range(args.papers)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "2023-10-16.md"
        started = time.perf_counter()
        new_issue(path, draft_text(dt.date(2023, 10, 16), papers, DraftSettings()))
        made = time.perf_counter() - started
        size = path.stat().st_size
        started = time.perf_counter()
        summary = translate_issue(path, TranslateSettings(command="cat", retries=0))
        took = time.perf_counter() - started
    parts = len(summary.outcomes)
    print(f"new: {args.papers} papers, {size:,} bytes, {made * 1000:.1f} ms (parse check included)")
    print(f"translate with `cat`: {parts} parts in {took:.2f} s, {took / parts * 1000:.1f} ms per part "
          f"(process start, re-read, two parses, fsync'd atomic write); {len(summary.filled)} filled")


if __name__ == "__main__":
    main()
