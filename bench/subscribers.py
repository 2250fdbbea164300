"""Subscriber-list figures for a generated CSV: import time and peak memory, and the speeds the
send engine relies on (streaming the list, one unsubscribe link per recipient). Prints; asserts
nothing.

usage: python bench/subscribers.py [--rows 100000]

Targets (issue 4): importing 100,000 rows under 10 s and under 200 MB peak (resident memory of
this whole process, Python included).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

from newsletter.config import load_config
from newsletter.store import Store
from newsletter.subscribers import export_csv, import_csv
from newsletter.unsubscribe import DEVELOPMENT_KEY, UnsubscribeLinks

REPO = Path(__file__).resolve().parent.parent
SURNAMES = "김이박최정강조윤장임"
GIVEN = ["민지", "지훈", "서연", "하나", "도윤", "서준", "하은", "지우"]


def write_csv(path: Path, rows: int) -> None:
    """Korean names, one row in 100 a repeat of an earlier address in other case."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["이름", "이메일"])
        for n in range(rows):
            if n % 100 == 99:
                writer.writerow(["", f"Reader{n - 50:06d}@Example.COM"])
            else:
                name = SURNAMES[n % len(SURNAMES)] + GIVEN[n % len(GIVEN)]
                writer.writerow([name, f"reader{n:06d}@{'example.com' if n % 2 else 'example.org'}"])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(label: str, action):
    start = time.perf_counter()
    result = action()
    print(f"{label:<44}{time.perf_counter() - start:8.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as folder:
        csv_path, database = Path(folder) / "list.csv", Path(folder) / "list.db"
        write_csv(csv_path, rows)
        print(f"{rows:,} rows, {csv_path.stat().st_size / 1e6:.1f} MB CSV; peak before import {peak_mb():.0f} MB")
        with Store.open(database) as store:
            report = timed("import into an empty store", lambda: import_csv(store, csv_path))
            print(f"  {report.summary()}")
            print(f"peak resident memory after import              {peak_mb():8.0f} MB")
            again = timed("import again (nothing changes)", lambda: import_csv(store, csv_path))
            print(f"  {again.summary()}")
            count = timed("stream every subscribed address", lambda: sum(1 for _ in store.subscribed()))
            with (Path(folder) / "export.csv").open("w", encoding="utf-8-sig", newline="") as out:
                timed("export", lambda: export_csv(store, out))
        config = dataclasses.replace(load_config(REPO / "newsletter.toml"), database=database)
        links = UnsubscribeLinks(config, DEVELOPMENT_KEY)
        addresses = [f"reader{n:06d}@example.com" for n in range(count)]
        start = time.perf_counter()
        for address in addresses:
            links.for_address(address)
        elapsed = time.perf_counter() - start
        print(f"unsubscribe links: {count / elapsed:,.0f} recipients/s ({elapsed / count * 1e6:.1f} µs each)")
        print(f"peak resident memory overall                   {peak_mb():8.0f} MB")


if __name__ == "__main__":
    main()
