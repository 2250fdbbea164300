"""Subscriber-list figures for generated CSV files: import time and peak memory for 100,000 and
1,000,000 rows, each size measured in a child process of its own (so one size's memory does not
hide in another's peak), and the speeds the send engine relies on (streaming the list, one
unsubscribe link per recipient). Prints; asserts nothing.

usage: python bench/subscribers.py [--rows 100000 --rows 1000000]

Targets (issue 14): importing 1,000,000 rows under 30 s and under 200 MB peak (resident memory of
the whole child process, Python and its imports included).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SURNAMES = "김이박최정강조윤장임"
GIVEN = ["민지", "지훈", "서연", "하나", "도윤", "서준", "하은", "지우"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "한국.kr"] + [f"d{n}.example.com" for n in range(200)]


def write_csv(path: Path, rows: int) -> None:
    """Korean names over 204 domains (one of them Korean); one row in 100 a repeat of an earlier
    address in other case, one in 1,000 a bad address."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["이름", "이메일"])
        for n in range(rows):
            domain = DOMAINS[n % len(DOMAINS)]
            if n % 100 == 99:
                earlier = n - 50
                writer.writerow(["", f"Reader{earlier:07d}@{DOMAINS[earlier % len(DOMAINS)].upper()}"])
            elif n % 1000 == 500:
                writer.writerow(["", f"reader{n:07d}@@{domain}"])
            else:
                name = SURNAMES[n % len(SURNAMES)] + GIVEN[n % len(GIVEN)]
                writer.writerow([name, f"reader{n:07d}@{domain}"])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(label: str, action):
    """Run `action`, printing its wall-clock time and this process's CPU time (the two differ when
    other processes share the machine's cores)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = action()
    print(f"  {label:<42}{time.perf_counter() - start:8.2f} s  (CPU {time.process_time() - cpu:.2f} s)", flush=True)
    return result


def measure(rows: int) -> None:
    """One size, in this process (the parent runs it in a child)."""
    from newsletter.config import load_config
    from newsletter.store import Store
    from newsletter.subscribers import export_csv, import_csv
    from newsletter.unsubscribe import DEVELOPMENT_KEY, UnsubscribeLinks

    with tempfile.TemporaryDirectory() as folder:
        csv_path, database = Path(folder) / "list.csv", Path(folder) / "list.db"
        write_csv(csv_path, rows)
        print(f"{rows:,} rows, {csv_path.stat().st_size / 1e6:.1f} MB CSV; peak before import {peak_mb():.0f} MB")
        with Store.open(database) as store:
            report = timed("import into an empty store", lambda: import_csv(store, csv_path, skip_invalid=True))
            print(f"    {report.summary()}")
            print(f"  peak resident memory after import         {peak_mb():8.0f} MB", flush=True)
            again = timed("import again (nothing changes)", lambda: import_csv(store, csv_path, skip_invalid=True))
            print(f"    {again.summary()}")
            count = timed("stream every subscribed address", lambda: sum(1 for _ in store.subscribed()))
            with (Path(folder) / "export.csv").open("w", encoding="utf-8-sig", newline="") as out:
                timed("export", lambda: export_csv(store, out))
        config = dataclasses.replace(load_config(REPO / "newsletter.toml"), database=database)
        links = UnsubscribeLinks(config, DEVELOPMENT_KEY)
        start = time.perf_counter()
        for n in range(count):
            links.for_address(f"reader{n:07d}@example.com")
        elapsed = time.perf_counter() - start
        print(f"  unsubscribe links: {count / elapsed:,.0f} recipients/s ({elapsed / count * 1e6:.1f} µs each)")
        print(f"  peak resident memory overall              {peak_mb():8.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per file (repeatable)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        measure(arguments.child)
        return
    for rows in arguments.rows or [100_000, 1_000_000]:
        subprocess.run([sys.executable, __file__, "--child", str(rows)], check=True)
        print()


if __name__ == "__main__":
    main()
