"""Prints how fast and how evenly a real send goes: against a local load endpoint, or moto.

    python bench/send.py                         # local endpoint: 100, 300, 500/s at 50 ms a call
    python bench/send.py --rates 500 --latency 0.1 --seconds 10 --workers 64 --processes 2
    python bench/send.py --moto                  # moto's SES: 1,000 recipients at 50/s, shares 1.0 and 0.9

The local mode (the default) runs `bench/ses_endpoint.py` in its own process on 127.0.0.1: it
answers SendEmail after `--latency` seconds and GetAccount with MaxSendRate = rate / `--share`, so
that the engine, reading its rate and sizing itself as it would against SES, sets its limiter to
the rate under test (at the default share 0.9, as a real send does: "500/s set" is MaxSendRate
555.6). It is a load fixture that
measures our client and engine (moto itself caps near 135 calls/s); behaviour is tested against
moto. For each rate: a store of rate x `--seconds` subscribers, `prepare_send` + `send_issue`
through the real engine, and it prints

- the plan's line: how the send sized itself before the first message, and whether the CPU
  carries the rate (sizing.py's estimate);
- the achieved rate, N / (last arrival - first arrival + 1/rate), from the endpoint's own arrival
  times, as a ratio of the set rate. Target with automatic sizing at 100, 300 and 500/s and 50 ms:
  at least 0.95;
- the busiest one-second window of arrivals at the endpoint (and of the ledger's start times, when
  the limiter let each call go). Target: under MaxSendRate; the endpoint's count adds the jitter
  between a turn and the request's arrival (printed: turn to arrival), which the share's headroom
  absorbs;
- CPU per message: this process's and its worker processes' CPU time over the send / messages,
  and the load average, since on a shared machine the other work decides how much CPU is left.

It ends with one line per rate, side by side, for docs/scale.md.

`--moto` is the earlier mode: moto's server in its own process, MaxSendRate from the config (moto
has no GetAccount), and whether moto got each recipient exactly once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
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


def wait_for(server: subprocess.Popen, url: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url).close()
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"{what} did not start")
            time.sleep(0.1)


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(server, f"{url}/moto-api/data.json", "moto's server")
    return server, url


def start_endpoint(latency: float, max_send_rate: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "ses_endpoint.py"), "--port", str(port), "--latency", str(latency),
         "--max-send-rate", str(max_send_rate)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(server, f"{url}/bench/arrivals", "the local SES endpoint")
    return server, url


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time of a running process (Linux's /proc), None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait()


def moto_delivered(url: str) -> Counter:
    with urllib.request.urlopen(f"{url}/moto-api/data.json") as answer:
        messages = json.load(answer)["ses"]["RawMessage"]
    return Counter(address for item in messages for address in set(item["destinations"]))


def endpoint_arrivals(url: str):
    import datetime as dt

    with urllib.request.urlopen(f"{url}/bench/arrivals") as answer:
        return [dt.datetime.fromtimestamp(seconds, dt.UTC) for seconds in json.load(answer)]


def bench_config(folder: str, url: str, account_rate: float | None, share: float):
    from newsletter.config import SesSettings, load_config

    example = load_config(ROOT / "newsletter.toml")
    ses = SesSettings(endpoint_url=url) if account_rate is None else SesSettings(endpoint_url=url, max_send_rate=account_rate)
    return dataclasses.replace(
        example, database=Path(folder) / "newsletter.db", outbox=Path(folder) / "outbox", transport="ses",
        ses=ses, rate_share=share,
    )


def fill_list(config, recipients: int) -> list[str]:
    from newsletter.model import Subscriber
    from newsletter.store import Store, utc_now

    now = utc_now()
    addresses = [f"reader{number:07d}@example.org" for number in range(recipients)]
    with Store.open(config.database) as store:
        store.insert(Subscriber(address, None, "subscribed", "bench", now, now) for address in addresses)
    return addresses


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclasses.dataclass
class Send:
    addresses: list[str]
    summary: object  # SendSummary
    plan_line: str  # the plan's sizing, as `newsletter send` prints it
    wall: float  # seconds of the send itself (not the plan)
    cpu: float  # CPU seconds of the send, worker processes included
    starts: list  # the sent rows' start times from the ledger (when the limiter let them go)
    answers: list  # and when their answers were recorded
    message_ids: list  # and the provider's ids

    def outcome(self) -> str:
        summary = self.summary
        return (f"sent {summary.sent} (failed {len(summary.failures)}, unknown {len(summary.unknown)}, "
                f"retries {summary.retries})")


def send_list(url: str, account_rate: float | None, share: float, recipients: int, overrides: dict) -> Send:
    """A fresh store of `recipients` subscribers, then prepare_send + send_issue through the
    engine (with --workers / --processes as the CLI passes them)."""
    from newsletter.send import prepare_send, send_issue
    from newsletter.store import Store

    with tempfile.TemporaryDirectory() as folder:
        config = bench_config(folder, url, account_rate, share)
        addresses = fill_list(config, recipients)
        plan = dataclasses.replace(prepare_send(ISSUE, config, dry_run=False), **overrides)
        sizing = plan.sizing()
        plan_line = f"{sizing.describe()}\n    why: {sizing.reason}"
        cpu, began = cpu_seconds(), time.perf_counter()
        summary = send_issue(plan)
        wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu
        with Store.open(config.database) as store:
            rows = list(store.deliveries(plan.issue_id, ["sent"]))
    return Send(addresses, summary, plan_line, wall, cpu, [row.started_at for row in rows],
                [row.finished_at for row in rows], [row.message_id for row in rows])


def achieved_rate(times, set_rate: float) -> float:
    span = (max(times) - min(times)).total_seconds() + 1 / set_rate
    return len(times) / span


def turn_to_arrival(run: Send, arrivals: list) -> list[float]:
    """Seconds from each call's turn (the ledger's start time) to its arrival at the endpoint,
    whose MessageId bench-N is its N-th arrival."""
    return sorted((arrivals[int(message_id.rpartition("-")[2]) - 1] - started).total_seconds()
                  for message_id, started in zip(run.message_ids, run.starts, strict=True))


def run_local(rate: float, latency: float, seconds: float, share: float, overrides: dict) -> str:
    """One send at `rate`; prints what it did and returns its line for the table at the end."""
    from newsletter.ratelimit import busiest_window

    account_rate = rate / share
    server, url = start_endpoint(latency, account_rate)
    recipients = int(rate * seconds)
    load = os.getloadavg()[0]
    try:
        endpoint_cpu = process_cpu_seconds(server.pid)
        run = send_list(url, None, share, recipients, overrides)
        arrivals = endpoint_arrivals(url)
        if endpoint_cpu is not None:
            endpoint_cpu = process_cpu_seconds(server.pid) - endpoint_cpu
    finally:
        stop(server)

    summary, cpu, wall = run.summary, run.cpu, run.wall
    set_rate = rate
    achieved = achieved_rate(arrivals, set_rate)
    window = busiest_window(arrivals)
    cpu_per_message = cpu / max(1, summary.sent)
    delays = turn_to_arrival(run, arrivals)
    print(f"set {set_rate:g}/s (MaxSendRate {account_rate:.4g} x {share:g}), {latency * 1000:g} ms a call, {recipients} recipients")
    print(f"  plan: {run.plan_line}")
    print(f"  ran {summary.processes} process(es) x up to {summary.workers} workers; {run.outcome()}; "
          f"the endpoint got {len(arrivals)} calls")
    print(f"  achieved {achieved:.1f}/s = {achieved / set_rate:.3f} of the set rate  [target: >= 0.95]")
    verdict = {True: "within", False: "ABOVE"}
    by_start = busiest_window(run.starts)
    print(f"  busiest one-second window: {by_start} turns by the ledger's start times ({verdict[by_start <= set_rate]} "
          f"the set rate {set_rate:g}); {window} arrivals at the endpoint ({verdict[window <= account_rate]} "
          f"MaxSendRate {account_rate:.4g})  [target: within MaxSendRate]")
    print(f"  turn to arrival at the endpoint: median {delays[len(delays) // 2] * 1000:.1f} ms, "
          f"99th percentile {delays[int(len(delays) * 0.99)] * 1000:.1f} ms, most {delays[-1] * 1000:.1f} ms")
    print(f"  CPU {cpu:.1f} s over {wall:.1f} s of sending: {cpu_per_message * 1000:.2f} ms per message, "
          f"{cpu / wall:.2f} cores busy (of {os.cpu_count()}); load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f}")
    if endpoint_cpu is not None:
        print(f"  the endpoint's own CPU, on the same cores: {endpoint_cpu * 1000 / max(1, len(arrivals)):.2f} ms per call, "
              f"{endpoint_cpu / wall:.2f} cores")
    met = achieved >= 0.95 * set_rate and window < account_rate
    return (f"{set_rate:>5g}/s  {summary.processes} x {summary.workers:>3} workers  achieved/set {achieved / set_rate:.3f}  "
            f"busiest second {window} of MaxSendRate {account_rate:.4g}  CPU {cpu_per_message * 1000:.2f} ms/message  "
            f"load {load:.2f}  {'ok' if met else 'SHORT'}")


def run_moto(recipients: int, account_rate: float, share: float, overrides: dict) -> None:
    from newsletter.ratelimit import busiest_window

    import boto3

    server, url = start_moto()
    try:
        boto3.client("sesv2", endpoint_url=url, region_name="us-east-1").create_email_identity(EmailIdentity=SENDER_DOMAIN)
        run = send_list(url, account_rate, share, recipients, overrides)
        copies = moto_delivered(url)
    finally:
        stop(server)

    summary = run.summary
    set_rate = account_rate * share
    achieved = achieved_rate(run.starts, set_rate)
    window = busiest_window(run.starts)
    once = sorted(copies) == run.addresses and set(copies.values()) == {1}
    print(f"MaxSendRate {account_rate:g}/s, share {share:g}: limiter set to {set_rate:g}/s, "
          f"{summary.processes} process(es) x {summary.workers} workers, {recipients} recipients")
    print(f"  {run.outcome()}; moto got each recipient exactly once: {once}")
    print(f"  achieved {achieved:.2f}/s = {achieved / set_rate:.3f} of the set rate "
          f"({achieved / account_rate:.3f} of MaxSendRate)  [target >= 0.9]")
    verdict = {True: "within", False: "ABOVE"}
    print(f"  busiest one-second window: {window} calls; MaxSendRate {account_rate:g}: "
          f"{verdict[window <= account_rate]}; set rate {set_rate:g}: {verdict[window <= set_rate]}  "
          "[target: no window above the rate]")
    print(f"  (counted by when moto's answers were recorded instead: busiest window {busiest_window(run.answers)})")
    print(f"  wall time of the send: {run.wall:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moto", action="store_true", help="against moto's SES instead of the local endpoint")
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 300.0, 500.0],
                        help="local: the rates to set the limiter to (MaxSendRate = rate / share)")
    parser.add_argument("--latency", type=float, default=0.05, help="local: seconds before each answer")
    parser.add_argument("--seconds", type=float, default=8.0, help="local: recipients = rate x seconds")
    parser.add_argument("--share", type=float, default=0.9, help="local: sending.rate_share")
    parser.add_argument("--recipients", type=int, default=1000, help="moto: list size")
    parser.add_argument("--rate", type=float, default=50.0, help="moto: MaxSendRate, messages per second")
    parser.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.9], help="moto: rate shares")
    parser.add_argument("--workers", type=int, help="worker threads per process (default: the engine's sizing)")
    parser.add_argument("--processes", type=int, help="worker processes (default: the engine's sizing)")
    options = parser.parse_args()
    os.environ.update(BENCH_ENV)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2"):
        os.environ.pop(name, None)
    overrides = {key: value for key in ("workers", "processes") if (value := getattr(options, key)) is not None}
    print(f"load average (1, 5, 15 min): {' '.join(f'{load:.2f}' for load in os.getloadavg())}; {os.cpu_count()} cores")
    if options.moto:
        for share in options.shares:
            run_moto(options.recipients, options.rate, share, overrides)
    else:
        lines = [run_local(rate, options.latency, options.seconds, options.share, overrides) for rate in options.rates]
        print(f"\nside by side ({options.latency * 1000:g} ms a call, "
              f"{'sized by the send' if not overrides else overrides}):")
        print("\n".join(lines))
        print(f"load average after (1, 5, 15 min): {' '.join(f'{load:.2f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
