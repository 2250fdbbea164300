"""Prints how fast `newsletter sync` applies queued events, against moto's SQS, and its memory.

    python bench/sync.py                       # 100,000 events, fed in rounds of 20
    python bench/sync.py --events 5000 --round 100

moto runs in its own process (on 127.0.0.1). The bench makes a list of N subscribers and a sent
ledger row for each (with the MessageId SES would have returned), then feeds N SES events in SNS
envelopes (the documented Delivery record, with a transient bounce every 20th and a hard bounce
every 100th) into the queue a round at a time, and runs `sync` after each round. It prints:

- events applied per second, counting `sync`'s wall time only (not the feeding). Target: >= 500.
- the same for our part alone: parse, apply and commit of the same bodies with no queue, to show
  which side bounds the first figure;
- what moto's SQS takes per ReceiveMessage of 10 at the round's depth;
- peak resident memory (ru_maxrss) after each tenth of the events. Target: flat.

Why rounds: moto 5.2.5's ReceiveMessage is O(queue depth) with a large constant (every message in
the queue is examined, and each returned one deep-copied, with the queue's attributes recomputed
per message); with 100,000 messages queued at once a single receive takes minutes. Real SQS does
not slow with depth, so the bench keeps the depth at the round size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from send import BENCH_ENV, start_moto  # noqa: E402  (the bench scripts' shared moto starter)

ROOT = Path(__file__).resolve().parents[1]
DELIVERY = json.loads((ROOT / "tests" / "data" / "events" / "event-delivery.json").read_text(encoding="utf-8"))
BOUNCE = json.loads((ROOT / "tests" / "data" / "events" / "event-bounce.json").read_text(encoding="utf-8"))


def body(n: int) -> str:
    """The n-th event: an SES record about reader n's message, in SNS's envelope."""
    address, message_id = f"reader{n}@example.com", f"ses-{n}"
    if n % 20 == 0:
        payload = json.loads(json.dumps(BOUNCE))
        payload["bounce"]["bounceType"] = "Permanent" if n % 100 == 0 else "Transient"
        payload["bounce"]["bouncedRecipients"][0]["emailAddress"] = address
    else:
        payload = json.loads(json.dumps(DELIVERY))
        payload["delivery"]["recipients"] = [address]
    payload["mail"].update(messageId=message_id, destination=[address])
    return json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": json.dumps(payload),
                       "TopicArn": "arn:aws:sns:us-east-1:123456789012:newsletter-events"})


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def apply_only(config, bodies: list[str]) -> float:
    """Events/s for parse + apply + commit with no queue (a copy of the list, same bodies)."""
    from newsletter.events.apply import Applier
    from newsletter.events.parse import parse_message
    from newsletter.store import Store
    from newsletter.store import events as event_table

    started = time.perf_counter()
    with Store.open(config.database) as store:
        applier = Applier(store, config.events)
        for n, text in enumerate(bodies):
            event = parse_message(text, f"sqs-{n}")
            with store.transaction():
                if not event_table.is_applied(store.connection, event.event_id):
                    outcome = applier.apply(event)
                    event_table.mark_applied(store.connection, event.event_id, outcome.kind, dt.datetime.now(dt.UTC))
    return len(bodies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--round", type=int, default=20, help="events queued before each sync")
    arguments = parser.parse_args()
    os.environ.update(BENCH_ENV)
    server, url = start_moto()
    for service in ("SQS", "SNS", "SES", "SESV2"):
        os.environ[f"AWS_ENDPOINT_URL_{service}"] = url
    import boto3

    from newsletter.aws.setup import setup_aws
    from newsletter.config import load_config
    from newsletter.events.queue import EventQueue
    from newsletter.events.sync import sync

    try:
        with tempfile.TemporaryDirectory() as folder:
            config_path = Path(folder) / "newsletter.toml"
            config_path.write_text((ROOT / "newsletter.toml").read_text(encoding="utf-8")
                                   + "\n[events]\nwait_seconds = 0\nvisibility_timeout = 600\n"
                                   + "transient_bounce_limit = 1000\n", encoding="utf-8")
            config = load_config(config_path)
            make_list(config.database, arguments.events)
            queue_url = setup_aws(config.events).queue_url
            sqs = boto3.client("sqs", region_name="us-east-1")
            queue = EventQueue(config.events)
            print(f"moto {url}; {arguments.events:,} events in rounds of {arguments.round}; list and ledger of "
                  f"{arguments.events:,}; peak RSS before: {rss_mib():.0f} MiB")
            sync_seconds, applied, fed, checkpoints = 0.0, 0, 0, []
            receive_times: list[float] = []
            while fed < arguments.events:
                size = min(arguments.round, arguments.events - fed)
                for start in range(fed, fed + size, 10):
                    sqs.send_message_batch(QueueUrl=queue_url, Entries=[
                        {"Id": str(n), "MessageBody": body(n)} for n in range(start, min(start + 10, fed + size))])
                fed += size
                if len(receive_times) < 20:  # moto's own cost at this depth, measured on a copy
                    t = time.perf_counter()
                    sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
                    receive_times.append(time.perf_counter() - t)
                started = time.perf_counter()
                summary = sync(config, queue=queue)  # one client for the run, as a long sync has
                sync_seconds += time.perf_counter() - started
                applied += sum(summary.applied.values()) + summary.duplicates
                if fed * 10 // arguments.events > len(checkpoints):
                    checkpoints.append((fed, rss_mib()))
                    print(f"  {fed:>7,} fed, {applied:>7,} applied, {applied / sync_seconds:7.0f} events/s so far, "
                          f"peak RSS {rss_mib():.0f} MiB", flush=True)
            print(f"sync: {applied:,} events applied in {sync_seconds:.1f} s of sync: "
                  f"{applied / sync_seconds:.0f} events/s (target >= 500)")
            print(f"moto: ReceiveMessage of 10 at depth {arguments.round}: "
                  f"{1000 * sorted(receive_times)[len(receive_times) // 2]:.1f} ms (median)")
            print("peak RSS by events fed: " + ", ".join(f"{n:,}: {m:.0f} MiB" for n, m in checkpoints))

            bodies = [body(n) for n in range(min(arguments.events, 20_000))]
            rate = apply_only(config, bodies)
            print(f"our part alone (parse, apply, commit; no queue), {len(bodies):,} events: {rate:.0f} events/s")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
