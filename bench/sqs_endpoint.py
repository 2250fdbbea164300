"""A load fixture for `bench/sync.py`: a minimal SQS endpoint on 127.0.0.1 (the JSON protocol
botocore speaks) that answers every call after a set latency, holding a queue of N SES events made
on demand. moto's ReceiveMessage slows with queue depth (about 250 ms at depth 200) and serves
about 400 events/s in all, so a bench against it measures moto; real SQS answers in 20-50 ms at
any depth. Behaviour is tested against moto, not against this.

    python bench/sqs_endpoint.py --events 100000 --latency 0.03   # prints "port N", then serves

It answers, in its own process (so it does not share the benchmark's GIL), one thread per
connection: GetQueueUrl, ReceiveMessage (up to 10, each hidden for the visibility timeout asked,
expired ones handed out again first), DeleteMessageBatch, ChangeMessageVisibilityBatch and
GetQueueAttributes (ApproximateNumberOfMessages and ...NotVisible). Message n is the documented
SES Delivery record about reader n's message `ses-n` (every 20th a transient bounce, every 100th a
hard bounce), in SNS's envelope.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path

from ses_endpoint import _Handler as JsonHandler  # the same HTTP habits as the SES fixture

EVENTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "events"
DELIVERY = json.loads((EVENTS / "event-delivery.json").read_text(encoding="utf-8"))
BOUNCE = json.loads((EVENTS / "event-bounce.json").read_text(encoding="utf-8"))
QUEUE_NAME = "newsletter-events"


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
    return json.dumps({"Type": "Notification", "MessageId": f"sns-{n}", "Message": json.dumps(payload),
                       "TopicArn": "arn:aws:sns:us-east-1:123456789012:newsletter-events"})


class Queue:
    """N messages, handed out in order; received ones hidden until deleted or their time is up."""

    def __init__(self, events: int):
        self.total = events
        self.next = 0  # the next message never handed out
        self.hidden: dict[str, tuple[int, float]] = {}  # receipt handle -> (message, visible again at)
        self.again: collections.deque[int] = collections.deque()  # visible again, handed out first
        self.receives: collections.Counter = collections.Counter()
        self.lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for handle, (n, until) in list(self.hidden.items()):
            if until <= now:
                del self.hidden[handle]
                self.again.append(n)

    def receive(self, count: int, visibility: float) -> list[dict]:
        now = time.monotonic()
        with self.lock:
            self._expire(now)
            taken = []
            while len(taken) < count and (self.again or self.next < self.total):
                if self.again:
                    taken.append(self.again.popleft())
                else:
                    taken.append(self.next)
                    self.next += 1
            messages = []
            for n in taken:
                handle = uuid.uuid4().hex
                self.hidden[handle] = (n, now + visibility)
                self.receives[n] += 1
                messages.append({"MessageId": f"sqs-{n}", "ReceiptHandle": handle, "Body": body(n),
                                 "Attributes": {"ApproximateReceiveCount": str(self.receives[n])}})
            return messages

    def delete(self, handles: list[str]) -> None:
        with self.lock:
            for handle in handles:
                self.hidden.pop(handle, None)

    def release(self, handles: list[str]) -> None:
        with self.lock:
            for handle in handles:
                if (found := self.hidden.pop(handle, None)) is not None:
                    self.again.append(found[0])

    def attributes(self) -> dict[str, str]:
        with self.lock:
            self._expire(time.monotonic())
            visible = self.total - self.next + len(self.again)
            return {"ApproximateNumberOfMessages": str(visible), "ApproximateNumberOfMessagesNotVisible":
                    str(len(self.hidden))}


class _Endpoint(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, *, latency: float, events: int):
        super().__init__(address, _Handler)
        self.latency = latency
        self.queue = Queue(events)
        self.url = ""


class _Handler(JsonHandler):
    """ses_endpoint's handler (keep-alive, no Nagle, JSON answers), speaking SQS's JSON protocol."""

    server: _Endpoint

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        time.sleep(self.server.latency)
        queue = self.server.queue
        if action == "GetQueueUrl":
            self._answer(200, {"QueueUrl": f"http://{self.headers['Host']}/123456789012/{QUEUE_NAME}"})
        elif action == "ReceiveMessage":
            messages = queue.receive(int(request.get("MaxNumberOfMessages", 1)),
                                     float(request.get("VisibilityTimeout", 30)))
            self._answer(200, {"Messages": messages} if messages else {})
        elif action == "DeleteMessageBatch":
            entries = request.get("Entries", [])
            queue.delete([entry["ReceiptHandle"] for entry in entries])
            self._answer(200, {"Successful": [{"Id": entry["Id"]} for entry in entries], "Failed": []})
        elif action == "ChangeMessageVisibilityBatch":
            entries = request.get("Entries", [])
            queue.release([entry["ReceiptHandle"] for entry in entries if int(entry.get("VisibilityTimeout", 1)) == 0])
            self._answer(200, {"Successful": [{"Id": entry["Id"]} for entry in entries], "Failed": []})
        elif action == "GetQueueAttributes":
            self._answer(200, {"Attributes": queue.attributes()})
        else:
            self._answer(400, {"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": action})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.03, help="seconds before each answer")
    arguments = parser.parse_args()
    server = _Endpoint(("127.0.0.1", arguments.port), latency=arguments.latency, events=arguments.events)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
