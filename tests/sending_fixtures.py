"""Helpers for the reliable-sending tests: a config with the rate and workers set, a list in the
store, SES faults injected through botocore's event system on the real client, a TCP proxy that
keeps calls in flight long enough to kill a send mid-call or cuts the network, an SMTP server
with scripted answers, and reading what moto got.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner

from conftest import _free_port, write_config
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.model import Subscriber
from newsletter.ratelimit import Backoff
from newsletter.send import prepare_send, send_issue
from newsletter.store import Store, utc_now
from newsletter.transports.ses import SesTransport

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "issues" / "2023-10-16.md"
ISSUE_ID = "2023-10-16"
SECRET = "a-test-secret-that-is-long-enough-0123456789"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def sending_config(
    path: Path,
    *,
    max_send_rate: float = 500,
    workers: int = 4,
    max_24h_send: int = 50_000,
    outage_budget_seconds: float | None = None,
    **write_options,
) -> Path:
    """conftest's config with the account rate (the GetAccount fallback), daily quota, workers
    and (if given) the outage budget."""
    write_config(path, **write_options)
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "[transport.ses]\n", f"[transport.ses]\nmax_send_rate = {max_send_rate}\nmax_24h_send = {max_24h_send}\n"
    )
    text = text.replace("[transport.smtp]\n", f"[transport.smtp]\nmax_send_rate = {max_send_rate}\n")
    text = text.replace("[sending]\n", f"[sending]\nworkers = {workers}\n")
    if outage_budget_seconds is not None:
        text = text.replace("[sending]\n", f"[sending]\noutage_budget_seconds = {outage_budget_seconds}\n")
    path.write_text(text, encoding="utf-8")
    return path


FAST_RETRIES = Backoff(attempts=6, base=0.01, cap=0.05)


def send_in_process(config_path, *, issue=ISSUE, transport_factory=None, backoff=FAST_RETRIES, **options):
    """prepare_send + send_issue as the CLI does, with the test's transports (a function of the
    config) and backoff."""
    config = load_config(config_path)
    factory = transport_factory(config) if transport_factory else None
    plan = prepare_send(issue, config, dry_run=False, transport_factory=factory, **options)
    return send_issue(plan, transport_factory=factory, backoff=backoff)


def readers(count: int, start: int = 0) -> list[str]:
    return [f"reader{number:03d}@example.org" for number in range(start, start + count)]


def subscribe(config_path: Path, addresses: list[str]) -> None:
    now = utc_now()
    with Store.open(load_config(config_path).database) as store:
        store.insert(Subscriber(address, None, "subscribed", "test", now, now) for address in addresses)


def cli(config_path: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config_path), *args])


def status_json(config_path: Path) -> dict:
    result = cli(config_path, "status", "--json", str(ISSUE))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def ledger_states(config_path: Path) -> dict[str, str]:
    """address -> state, read with plain sqlite3 (also while another process is sending)."""
    connection = sqlite3.connect(load_config(config_path).database, timeout=10)
    try:
        return dict(connection.execute("SELECT address, state FROM delivery WHERE issue_id = ?", (ISSUE_ID,)))
    finally:
        connection.close()


def delivered(moto_ses) -> Counter:
    """How many messages moto accepted per recipient."""
    # moto lists a Raw message's recipients from both the envelope and the To: header
    return Counter(address for item in moto_ses.raw_messages() for address in set(item["destinations"]))


# --- SES faults, injected on the real client ----------------------------------------------------


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


def ses_answer(request, status: int, body: bytes, headers: dict[str, str] | None = None) -> AWSResponse:
    """An answer that a botocore `before-send` hook returns in place of the network's."""
    return AWSResponse(request.url, status, {"Content-Type": "application/json", **(headers or {})}, _Body(body))


def ses_error(request, status: int, code: str, text: str) -> AWSResponse:
    return ses_answer(request, status, json.dumps({"message": text}).encode(), {"x-amzn-ErrorType": code})


def ses_with_hooks(hooks: dict[str, Callable]) -> Callable:
    """config -> a factory of real SES transports (one per worker) with botocore event `hooks`
    registered on each client, e.g. {"before-send.sesv2.SendEmail": handler}."""

    def for_config(config) -> Callable[[], SesTransport]:
        def make() -> SesTransport:
            transport = SesTransport(config.ses)
            for event, handler in hooks.items():
                transport.client.meta.events.register(event, handler)
            return transport

        return make

    return for_config


class SesFaults:
    """Decides, for each SendEmail call of every worker, whether SES answers with an error.

    `rule(call_number, recipient)` returns (status, code, text) to answer with, or None to let
    the call through to moto. Calls are counted across all workers."""

    def __init__(self, rule: Callable[[int, str], tuple[int, str, str] | None]):
        self.rule = rule
        self.calls = 0
        self.injected = Counter()
        self._lock = threading.Lock()

    def before_send(self, request, **_):
        recipient = json.loads(request.body)["Destination"]["ToAddresses"][0]
        with self._lock:
            self.calls += 1
            answer = self.rule(self.calls, recipient)
            if answer is not None:
                self.injected[answer[1]] += 1
        return ses_error(request, *answer) if answer is not None else None

    def transport_factory(self, config) -> Callable[[], SesTransport]:
        return ses_with_hooks({"before-send.sesv2.SendEmail": self.before_send})(config)


# --- an SMTP server whose answers at each step the test sets ------------------------------------


class ScriptedSmtp:
    """A real aiosmtpd server on 127.0.0.1 that answers MAIL FROM with `mail_reply`, RCPT with
    `rcpt_replies[address]` and the end of DATA with `data_reply` when they are set (else as a
    server that accepts everything), keeping what it accepted in `.messages`."""

    def __init__(self):
        self.mail_reply: str | None = None
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self.messages: list = []
        self.host, self.port = "127.0.0.1", _free_port()
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.messages.append(envelope)
        return f"250 2.0.0 queued as scripted-{len(self.messages)}"

    def close(self) -> None:
        self._controller.stop()


@pytest.fixture
def scripted_smtp():
    server = ScriptedSmtp()
    yield server
    server.close()


# --- a TCP proxy on 127.0.0.1 that can hold answers back and be cut -----------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to `upstream`, holding each chunk of the answers back `delay`
    seconds (requests reach the server at once, their answers come late, so a send killed at any
    moment has calls in flight whose messages were in fact delivered).

    `cut()` is a network outage: the port refuses new connections and every open one is closed
    under the client; `restore()` listens on the same port again."""

    def __init__(self, upstream_url: str, *, delay: float = 0.0):
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname, parts.port)
        self.delay = delay
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        listener.settimeout(0.05)  # so the accept loop sees a cut (close() does not wake accept())
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            _drop(connection)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._open |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.delay), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.cut()


def _drop(connection: socket.socket) -> None:
    """Close a connection under its peer (a reset where the kernel allows it)."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv()
    except OSError:
        pass
    connection.close()


# --- the CLI in a child process -----------------------------------------------------------------


def start_send(config_path: Path, *extra: str, endpoint_url: str | None = None) -> subprocess.Popen:
    """`newsletter send --yes ISSUE` as a child process (environment inherited: dummy AWS
    credentials, the moto endpoint, the signing key), so it can be killed or interrupted."""
    env = dict(os.environ)
    if endpoint_url:
        env["AWS_ENDPOINT_URL_SESV2"] = endpoint_url
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(config_path), "send", "--yes", *extra, str(ISSUE)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(condition: Callable[[], bool], *, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def run_threads(function: Callable, argument_tuples: list[tuple]) -> list[BaseException]:
    """Run `function(*arguments)` in one thread per tuple, all at once; the errors they raised."""
    errors: list[BaseException] = []

    def guarded(*arguments):
        try:
            function(*arguments)
        except BaseException as error:  # noqa: BLE001  (returned to the test)
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=arguments) for arguments in argument_tuples]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
