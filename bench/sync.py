"""Prints how fast `newsletter sync` applies queued events against an SQS that answers each call
after 30 ms (real SQS takes 20-50 ms), and its memory along the way.

    python bench/sync.py                                  # 100,000 events, 30 ms a call
    python bench/sync.py --events 20000 --latency 0.05 --receivers 4

The queue is `bench/sqs_endpoint.py`, in its own process: N documented SES events in SNS
envelopes (a Delivery record, with a transient bounce every 20th and a hard bounce every 100th),
made on demand, each call answered after the latency. moto is not the queue here: its receive
slows with queue depth and it serves about 400 events/s in all (see docs/deploy.md); behaviour is
tested against moto, this measures the sync. The bench makes a list of N subscribers and a sent
ledger row for each (with the MessageId SES would have returned), runs one `sync` over the whole
queue, and prints:

- events applied per second over the sync's wall time, with the latency. Target: >= 1,000.
- the sync's CPU per event (all its threads), and so what one free core could carry: the
  figure to read when the machine is loaded.
- the resident memory (RSS, read from /proc) at each tenth of the events. Target: flat.
- our part alone: parse, apply and commit of the same bodies with no queue, which bounds the
  first figure from above.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from send import BENCH_ENV, stop  # noqa: E402  (the bench scripts' shared environment)
from sqs_endpoint import body  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """The resident memory now (not the peak): pages in /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def make_list(database: Path, count: int) -> None:
    from newsletter.model import Subscriber
    from newsletter.store import Store, utc_now

    now = utc_now()
    with Store.open(database) as store, store.transaction():
        store.insert(Subscriber(f"reader{n}@example.com", None, "subscribed", "bench", now, now) for n in range(count))
        store.connection.execute(
            "INSERT INTO delivery (issue_id, address, address_key, state, attempts, message_id, enqueued_at, "
            "finished_at) SELECT '2023-10-16', address, address_key, 'sent', 1, 'ses-' || substr(address, 7, "
            "instr(address, '@') - 7), ?, ? FROM subscriber", (now.isoformat(), now.isoformat()))


def start_queue(events: int, latency: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sqs_endpoint.py"), "--events", str(events),
                               "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().split()[-1]
    return server, f"http://127.0.0.1:{port}"


class Sampler(threading.Thread):
    """RSS at each tenth of the events applied (counted in the database by its own connection)."""

    def __init__(self, database: Path, total: int):
        super().__init__(daemon=True)
        self.database, self.total = database, total
        self.points: list[tuple[int, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        connection = sqlite3.connect(self.database)
        try:
            while not self.done.wait(0.2):
                applied = connection.execute("SELECT count(*) FROM applied_event").fetchone()[0]
                if applied * 10 // self.total > len(self.points):
                    self.points.append((applied, rss_mib()))
        finally:
            connection.close()


def apply_only(config, bodies: list[str]) -> float:
    """Events/s for parse + apply + commit with no queue (on the same list, new event ids)."""
    from newsletter.events.apply import Applier, apply_once
    from newsletter.events.parse import parse_message
    from newsletter.store import Store

    started = time.perf_counter()
    with Store.open(config.database) as store:
        applier = Applier(store, config.events)
        for n, text in enumerate(bodies):
            apply_once(store, applier, parse_message(text.replace('"sns-', '"again-sns-'), f"sqs-{n}"))
    return len(bodies) / (time.perf_counter() - started)


def main() -> None:
    from newsletter.events.sync import RECEIVERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.03, help="seconds per SQS call")
    parser.add_argument("--receivers", type=int, default=RECEIVERS)
    arguments = parser.parse_args()
    os.environ.update(BENCH_ENV)
    server, url = start_queue(arguments.events, arguments.latency)
    os.environ["AWS_ENDPOINT_URL_SQS"] = url

    from newsletter.config import load_config
    from newsletter.events.sync import sync

    try:
        with tempfile.TemporaryDirectory() as folder:
            config_path = Path(folder) / "newsletter.toml"
            config_path.write_text((ROOT / "newsletter.toml").read_text(encoding="utf-8")
                                   + "\n[events]\nwait_seconds = 0\nvisibility_timeout = 600\n"
                                   + "transient_bounce_limit = 1000\n", encoding="utf-8")
            config = load_config(config_path)
            make_list(config.database, arguments.events)
            print(f"load average (1, 5, 15 min): {' '.join(f'{load:.2f}' for load in os.getloadavg())}; "
                  f"{os.cpu_count()} cores")
            print(f"queue: bench/sqs_endpoint.py, {arguments.latency * 1000:.0f} ms per call, {arguments.events:,} "
                  f"events; list and ledger of {arguments.events:,}; {arguments.receivers} receivers; "
                  f"RSS before: {rss_mib():.0f} MiB", flush=True)
            sampler = Sampler(config.database, arguments.events)
            sampler.start()
            started, cpu_started = time.perf_counter(), time.process_time()
            summary = sync(config, receivers=arguments.receivers)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            sampler.done.set()
            sampler.join()
            applied = sum(summary.applied.values()) + summary.duplicates
            sampler.points.append((applied, rss_mib()))
            print(f"sync: {applied:,} events applied in {seconds:.1f} s: {applied / seconds:,.0f} events/s with "
                  f"{arguments.latency * 1000:.0f} ms per SQS call (target >= 1,000); malformed "
                  f"{len(summary.malformed)}, not deleted {summary.not_deleted}")
            print(f"sync's CPU (all its threads): {1000 * cpu / applied:.2f} ms per event, so one free core carries "
                  f"{applied / cpu:,.0f} events/s (the figure above is lower when the machine is loaded)")
            print("RSS by events applied: " + ", ".join(f"{n:,}: {m:.0f} MiB" for n, m in sampler.points))

            bodies = [body(n) for n in range(min(arguments.events, 20_000))]
            rate = apply_only(config, bodies)
            print(f"our part alone (parse, apply, commit; no queue), {len(bodies):,} events: {rate:,.0f} events/s")
            print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())} "
                  f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")
    finally:
        stop(server)


if __name__ == "__main__":
    main()
