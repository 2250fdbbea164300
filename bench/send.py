"""Prints how closely a real send keeps to the rate it is given, against moto's SES server.

    python bench/send.py                    # 1,000 recipients, MaxSendRate 50/s, shares 1.0 and 0.9
    python bench/send.py --recipients 300 --rate 20 --shares 0.9

For each share: a fresh moto server (its own process, on 127.0.0.1), a store of N subscribers, and
`prepare_send` + `send_issue` through the reliable engine with 8 workers, MaxSendRate from the
config (moto has no GetAccount). From the ledger's per-row start times it prints:

- the achieved rate, N / (last start - first start + 1/rate), and its ratio to the rate the
  limiter was set to (share x MaxSendRate). Target: at least 0.9.
- the most calls that started in any one-second window (a row's start is when the limiter let
  its call go), against MaxSendRate (what SES enforces) and the set rate. Target: no window
  above the rate.
- the same count by when the answers were recorded (network and thread timing added);
- the wall time of the whole send, and whether moto got each recipient exactly once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "issues" / "2023-10-16.md"
SENDER_DOMAIN = "newsletter.example.com"  # the example config's From domain
BENCH_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "NEWSLETTER_SECRET": "bench-only-secret-0123456789abcdefghijklmnop",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json").close()
            return server, url
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("moto's server did not start")
            time.sleep(0.1)


def delivered(url: str) -> Counter:
    with urllib.request.urlopen(f"{url}/moto-api/data.json") as answer:
        messages = json.load(answer)["ses"]["RawMessage"]
    return Counter(address for item in messages for address in set(item["destinations"]))


def run(recipients: int, account_rate: float, share: float, workers: int) -> None:
    import boto3

    from newsletter.config import SesSettings, load_config
    from newsletter.ratelimit import busiest_window
    from newsletter.model import Subscriber
    from newsletter.send import prepare_send, send_issue
    from newsletter.store import Store, utc_now

    server, url = start_moto()
    try:
        boto3.client("sesv2", endpoint_url=url, region_name="us-east-1").create_email_identity(EmailIdentity=SENDER_DOMAIN)
        with tempfile.TemporaryDirectory() as folder:
            example = load_config(ROOT / "newsletter.toml")
            config = dataclasses.replace(
                example,
                database=Path(folder) / "newsletter.db",
                outbox=Path(folder) / "outbox",
                transport="ses",
                ses=SesSettings(endpoint_url=url, max_send_rate=account_rate),
                rate_share=share,
                workers=workers,
            )
            now = utc_now()
            addresses = [f"reader{number:05d}@example.org" for number in range(recipients)]
            with Store.open(config.database) as store:
                store.insert(Subscriber(address, None, "subscribed", "bench", now, now) for address in addresses)

            began = time.perf_counter()
            plan = prepare_send(ISSUE, config, dry_run=False)
            summary = send_issue(plan)
            wall = time.perf_counter() - began
            with Store.open(config.database) as store:
                rows = list(store.deliveries(plan.issue_id, ["sent"]))
            starts = [row.started_at for row in rows]
            answers = [row.finished_at for row in rows]
        copies = delivered(url)
    finally:
        server.terminate()
        server.wait()

    set_rate = account_rate * share
    span = (max(starts) - min(starts)).total_seconds() + 1 / set_rate
    achieved = len(starts) / span
    window = busiest_window(starts)
    once = sorted(copies) == addresses and set(copies.values()) == {1}
    print(f"MaxSendRate {account_rate:g}/s, share {share:g}: limiter set to {set_rate:g}/s, {workers} workers, "
          f"{recipients} recipients")
    print(f"  sent {summary.sent} (failed {len(summary.failures)}, unknown {len(summary.unknown)}, "
          f"retries {summary.retries}); moto got each recipient exactly once: {once}")
    print(f"  achieved {achieved:.2f}/s = {achieved / set_rate:.3f} of the set rate "
          f"({achieved / account_rate:.3f} of MaxSendRate)  [target >= 0.9]")
    verdict = {True: "within", False: "ABOVE"}
    print(f"  busiest one-second window: {window} calls; MaxSendRate {account_rate:g}: "
          f"{verdict[window <= account_rate]}; set rate {set_rate:g}: {verdict[window <= set_rate]}  "
          "[target: no window above the rate]")
    print(f"  (counted by when moto's answers were recorded instead: busiest window {busiest_window(answers)})")
    print(f"  wall time of the whole send (render, quota, ledger, sending): {wall:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="MaxSendRate, messages per second")
    parser.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.9])
    parser.add_argument("--workers", type=int, default=8)
    options = parser.parse_args()
    os.environ.update(BENCH_ENV)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2"):
        os.environ.pop(name, None)
    for share in options.shares:
        run(options.recipients, options.rate, share, options.workers)


if __name__ == "__main__":
    main()
