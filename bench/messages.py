"""Prints how fast personal messages are prepared, and the memory a dry run needs as the list grows.

    python bench/messages.py            # the sample issue; lists of 10,000, 30,000 and 100,000
    python bench/messages.py --sizes 1000 5000

1. Messages per second on one core (the process is pinned to one CPU): the sample issue rendered
   once, then per recipient its unsubscribe links signed and its message composed (what the send
   loop does before the transport). Target: at least 2,000/s.
2. Peak memory (max RSS) of a whole dry run, `prepare_send` + `send_issue` into the outbox, for a
   store of N subscribers, each size in a fresh process. Target: flat as N grows, under 300 MB.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "issues" / "2023-10-16.md"


def pin_to_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def bench_config(folder: Path):
    """The example newsletter.toml, with its database and outbox in `folder`."""
    from newsletter.config import load_config

    example = load_config(ROOT / "newsletter.toml")
    return dataclasses.replace(example, database=folder / "newsletter.db", outbox=folder / "outbox")


def subscribers(count: int):
    from newsletter.model import Subscriber
    from newsletter.store import utc_now

    now = utc_now()
    for number in range(count):
        name = "김민지" if number % 2 else f"Reader Number {number}"
        yield Subscriber(f"reader{number:07d}@example.org", name, "subscribed", "bench", now, now)


def messages_per_second(count: int) -> None:
    from newsletter.compose import MessageTemplate
    from newsletter.parse import parse_issue
    from newsletter.preferences import PreferenceLinks
    from newsletter.render import render_issue
    from newsletter.unsubscribe import DEVELOPMENT_KEY, UnsubscribeLinks

    pin_to_one_core()
    config = bench_config(Path(tempfile.gettempdir()))
    rendered = render_issue(parse_issue(ISSUE), config)
    template = MessageTemplate(rendered, config)
    links = UnsubscribeLinks(config, DEVELOPMENT_KEY)
    preference_links = PreferenceLinks(config, DEVELOPMENT_KEY, datetime.datetime.now(datetime.UTC))
    readers = list(subscribers(count))
    total_bytes = 0
    started = time.perf_counter()
    for reader in readers:
        https_url, mailto_url = links.for_address(reader.address)
        message = template.message_for(
            reader.address, name=reader.name, unsubscribe_url=https_url, unsubscribe_mailto=mailto_url,
            preferences_url=preference_links.for_address(reader.address, rendered.edition),
        )
        total_bytes += len(message.raw)
    elapsed = time.perf_counter() - started
    print(f"personalised messages: {count:,} in {elapsed:.2f} s on one core = {count / elapsed:,.0f} messages/s "
          f"(target >= 2,000/s); {total_bytes / count / 1024:.1f} KB each, "
          f"HTML part {template.encoded_html_size() / 1024:.1f} KB as sent")


def dry_run_child(count: int) -> None:
    """Runs in its own process: fill a store with `count` subscribers, dry-run the sample issue."""
    from newsletter.send import prepare_send, send_issue
    from newsletter.store import Store

    pin_to_one_core()
    with tempfile.TemporaryDirectory() as folder:
        config = bench_config(Path(folder))
        with Store.open(config.database) as store, store.transaction():
            store.insert(subscribers(count))
        started = time.perf_counter()
        plan = prepare_send(ISSUE, config, dry_run=True)
        summary = send_issue(plan)
        elapsed = time.perf_counter() - started
        manifest_rows = sum(1 for _ in open(summary.manifest, encoding="utf-8")) - 1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB
    print(f"dry run of {count:>7,} recipients: peak RSS {peak_mb:6.1f} MB; {summary.sent:,} prepared, "
          f"manifest rows {manifest_rows:,}; {elapsed:.1f} s ({summary.sent / elapsed:,.0f}/s, SQLite and CSV included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages to time (default 20,000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child is not None:
        dry_run_child(arguments.child)
        return
    messages_per_second(arguments.messages)
    for size in arguments.sizes:
        subprocess.run([sys.executable, __file__, "--child", str(size)], check=True)
    print("memory target: flat as the list grows, under 300 MB")


if __name__ == "__main__":
    main()
