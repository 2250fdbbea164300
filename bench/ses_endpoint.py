"""A load fixture for `bench/send.py`: a minimal SES v2 endpoint on 127.0.0.1 that answers after a
set latency, so the benchmark measures our client and engine instead of moto (which tops out near
135 calls/s). It is not a test double for behaviour: behaviour is tested against moto.

    python bench/ses_endpoint.py --latency 0.05 --max-send-rate 500   # prints "port N", then serves

It answers, in its own process (so it does not share the benchmark's GIL), one thread per
connection (botocore keeps one connection per client, the engine one client per worker):

- POST /v2/email/outbound-emails (SendEmail): reads the whole body, notes the arrival time
  (wall clock, taken when the body is in: what SES would count against MaxSendRate), waits the
  latency, answers {"MessageId": ...}; a request cut short (its client killed) did not arrive;
- GET /v2/email/account (GetAccount): the SendQuota with the rate given, so the engine reads its
  rate the way it does from SES;
- GET /bench/arrivals: the arrival times so far, as a JSON list of seconds since the epoch;
- GET /bench/recipients: each call's recipient, in the same order (to count copies per address
  when a send is killed, cut off or run twice at once).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEND_EMAIL_PATH = "/v2/email/outbound-emails"
GET_ACCOUNT_PATH = "/v2/email/account"
ARRIVALS_PATH = "/bench/arrivals"
RECIPIENTS_PATH = "/bench/recipients"
_RECIPIENT = re.compile(rb'"ToAddresses":\s*\["((?:[^"\\]|\\.)*)"')  # the first, the only one we send


class _Endpoint(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many workers connect at once when a send starts

    def handle_error(self, request, client_address) -> None:
        pass  # a client killed mid-call (the attacks on the send): not the endpoint's to report

    def __init__(self, address, *, latency: float, max_send_rate: float):
        super().__init__(address, _Handler)
        self.latency = latency
        self.max_send_rate = max_send_rate
        self.arrivals: list[float] = []
        self.recipients: list[str] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    # Headers and body go out in two writes: with Nagle's algorithm on, the second waits for the
    # client's delayed ACK, 40 ms on Linux, which doubled every call's latency.
    disable_nagle_algorithm = True
    server: _Endpoint

    def log_message(self, *_):  # one line per call would cost more than the call
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away mid-request: nothing arrived
            self.close_connection = True
            return
        if self.path != SEND_EMAIL_PATH:
            self._answer(404, {"message": f"not served here: {self.path}"})
            return
        arrived = time.time()
        recipient = _RECIPIENT.search(body)
        with self.server.lock:
            self.server.arrivals.append(arrived)
            self.server.recipients.append(json.loads(b'"' + recipient.group(1) + b'"') if recipient else "")
            number = len(self.server.arrivals)
        time.sleep(self.server.latency)
        self._answer(200, {"MessageId": f"bench-{number:09d}"})

    def do_GET(self) -> None:
        if self.path == GET_ACCOUNT_PATH:
            quota = {"Max24HourSend": 10_000_000.0, "MaxSendRate": self.server.max_send_rate, "SentLast24Hours": 0.0}
            self._answer(200, {"SendQuota": quota, "SendingEnabled": True, "ProductionAccessEnabled": True})
        elif self.path == ARRIVALS_PATH:
            with self.server.lock:
                self._answer(200, list(self.server.arrivals))
        elif self.path == RECIPIENTS_PATH:
            with self.server.lock:
                self._answer(200, list(self.server.recipients))
        else:
            self._answer(404, {"message": f"not served here: {self.path}"})

    def _answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each SendEmail answer")
    parser.add_argument("--max-send-rate", type=float, default=500.0, help="GetAccount's MaxSendRate")
    options = parser.parse_args()
    server = _Endpoint(("127.0.0.1", options.port), latency=options.latency, max_send_rate=options.max_send_rate)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
