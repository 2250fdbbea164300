"""Prints what the backup ([backup], the real Litestream binary, moto's S3 in its own process) costs
and how far behind S3 it runs.

    python bench/backup.py                 # 20 changes, 1.3 s apart; 5 runs of each command
    python bench/backup.py --changes 50

- lag: a change committed while a command holds the backup (one row, nothing else writing) until
  S3's newest change file is a new one, polled every 20 ms. Target: about a second at most.
- the cost per command: `newsletter subscribers add` (a child process, as an editor runs it) with
  and without a [backup] table; the difference is the lease, Litestream's start, the upload and
  reading it back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from send import BENCH_ENV, start_moto  # noqa: E402  (the bench scripts' shared moto starter)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import write_config  # noqa: E402


def config_in(folder: Path, bucket: str | None) -> Path:
    folder.mkdir(parents=True)
    path = write_config(folder / "newsletter.toml")
    if bucket:
        with path.open("a", encoding="utf-8") as out:
            out.write(f'\n[backup]\nto = "s3://{bucket}/{folder.name}/list"\n')
    return path


def lag(config_path: Path, changes: int, spacing: float) -> list[float]:
    from newsletter.backup import Replication
    from newsletter.config import load_config
    from newsletter.model import Subscriber
    from newsletter.store import Store, utc_now

    config = load_config(config_path)
    seconds = []
    with Replication(config, "bench") as replication, Store.open(config.database) as store:
        replica = replication.replica
        for number in range(changes):
            before = replica.head()
            time.sleep(spacing)
            now = utc_now()
            started = time.monotonic()
            store.insert([Subscriber(f"lag{number}@example.org", None, "subscribed", "bench", now, now)])
            while (head := replica.head()) is None or (before is not None and head.name == before.name):
                time.sleep(0.02)
            seconds.append(time.monotonic() - started)
        replication.caught_up()
    return seconds


def command_seconds(config_path: Path, runs: int) -> list[float]:
    seconds = []
    for number in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config_path), "subscribers", "add",
                        f"cost{number}@example.org"], check=True, capture_output=True)
        seconds.append(time.monotonic() - started)
    return seconds


def describe(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return (f"{name}: median {statistics.median(values):.2f} s, p95 {p95:.2f} s, max {max(values):.2f} s "
            f"({len(values)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=1.3, help="seconds between changes")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    os.environ.update(BENCH_ENV)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    print(f"load average (1, 5, 15 min): {' '.join(f'{load:.2f}' for load in os.getloadavg())}; {os.cpu_count()} cores")
    server, url = start_moto()
    os.environ["AWS_ENDPOINT_URL_S3"] = url
    try:
        import boto3

        boto3.client("s3", region_name="us-east-1", endpoint_url=url).create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as folder:
            print(describe("lag, commit to S3", lag(config_in(Path(folder) / "lag", "bench"), options.changes,
                                                    options.spacing)))
            plain = command_seconds(config_in(Path(folder) / "plain", None), options.runs)
            backed = command_seconds(config_in(Path(folder) / "backed", "bench"), options.runs)
            print(describe("`subscribers add` without [backup]", plain))
            print(describe("`subscribers add` with [backup]", backed))
            print(f"cost of the backup per command: {statistics.median(backed) - statistics.median(plain):.2f} s (median)")
    finally:
        server.terminate()
        server.wait()
    print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
