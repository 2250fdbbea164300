"""Shared fixtures: real local servers on 127.0.0.1 for the sending path, and a test config.

Reusable fixtures (other test files may use them freely):

- `moto_ses` -> MotoSes: moto's server (started once per session on a free port, reset before
  each test) with the sender's domain identity created, and AWS_ENDPOINT_URL_SESV2 (and _CLOUDWATCH,
  for SES's reputation metrics) pointing boto3 at it, so `newsletter`'s own SES transport talks to it over real HTTP with no code change.
  `moto_ses.raw_messages()` reads back what SES "sent" (`/moto-api/data.json`), `messages()`
  parses them with the stdlib email package, `client` is a boto3 sesv2 client for it.
- `smtp_server` -> SmtpServer: a real aiosmtpd server on 127.0.0.1 (no TLS, no AUTH) that keeps
  every message in `.messages` (Envelope objects: mail_from, rcpt_tos, content bytes). Set
  `.rcpt_replies[address] = "550 5.1.1 no such user"` to make it answer RCPT for that address so.
- `smtp_tls_server` -> SmtpServer that requires STARTTLS and AUTH (user "editor", password
  "s3cret"), with a certificate from a throwaway CA (`.ca`, a trustme CA).
- `moto_events` -> MotoEvents: the same moto server for SNS, SQS and SES v1 too
  (AWS_ENDPOINT_URL_SNS/_SQS/_SES set), so the feedback loop (`setup aws`, `sync`, the endpoint's
  queue) runs against real HTTP; `moto_events.client("sqs")` is a boto3 client for it. Add an
  `[events]` table to a config with `add_events_table(path, wait_seconds=0, ...)`.
- `no_network`: any socket connect or name lookup fails the test (for the dry run).
- `static_site` -> StaticSite: a real HTTP server on 127.0.0.1 serving the files under `.root`
  at `.url` (404 for anything else): where readers open the archive in the send's page check.
- `newsletter_config` -> Path of a newsletter.toml in tmp_path (database and outbox in tmp_path,
  SES transport via moto_ses's endpoint when that fixture is used too); rewrite keys with
  `write_config(path, transport=..., smtp=...)`.

Dummy AWS credentials are set for every test, and the machine's own AWS files are hidden, so no
test can reach a real account.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SENDER_DOMAIN = "newsletter.example.com"

_AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


_EVENT_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SES")
# SES v2 for sending; CloudWatch for SES's reputation metrics, which a list send reads.
_SES_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_CLOUDWATCH")


@pytest.fixture(autouse=True)
def _dummy_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", *_SES_ENDPOINT_VARIABLES, *_EVENT_ENDPOINT_VARIABLES):
        monkeypatch.delenv(name, raising=False)


# --- SES: moto's server -------------------------------------------------------------------------


@dataclass
class MotoSes:
    endpoint_url: str
    client: object  # boto3 sesv2 client

    def raw_messages(self) -> list[dict]:
        """What moto kept of each Raw send: {"raw_data": str, "destinations": [...], ...}."""
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json") as answer:
            data = json.load(answer)
        return data["ses"]["RawMessage"]

    def messages(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_string(item["raw_data"], policy=email.policy.default) for item in self.raw_messages()
        ]

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request).close()


@pytest.fixture(scope="session")
def _moto_server_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_ses(_moto_server_url: str, monkeypatch: pytest.MonkeyPatch) -> MotoSes:
    import boto3

    for name in _SES_ENDPOINT_VARIABLES:
        monkeypatch.setenv(name, _moto_server_url)
    client = boto3.client("sesv2", region_name="us-east-1", endpoint_url=_moto_server_url)
    ses = MotoSes(_moto_server_url, client)
    ses.reset()
    client.create_email_identity(EmailIdentity=SENDER_DOMAIN)  # moto rejects unverified senders
    return ses


@dataclass
class MotoEvents:
    endpoint_url: str
    ses: MotoSes

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name="us-east-1", endpoint_url=self.endpoint_url)


@pytest.fixture
def moto_events(moto_ses: MotoSes, monkeypatch: pytest.MonkeyPatch) -> MotoEvents:
    """moto_ses (reset, sender identity created) plus SNS, SQS and SES v1 on the same server."""
    for name in _EVENT_ENDPOINT_VARIABLES:
        monkeypatch.setenv(name, moto_ses.endpoint_url)
    return MotoEvents(moto_ses.endpoint_url, moto_ses)


def add_events_table(path: Path, **settings) -> Path:
    """Append an [events] table (TOML values from Python ones) to the config at `path`."""
    lines = ["", "[events]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return path


# --- SMTP: aiosmtpd -----------------------------------------------------------------------------


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list = field(default_factory=list)  # aiosmtpd Envelopes, in arrival order
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> "550 ..." answer
    ca: object = None  # trustme.CA for the TLS variant

    def parsed(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(m.content, policy=email.policy.default) for m in self.messages]


class _CollectingHandler:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_RCPT(self, smtp_server, session, envelope, address, rcpt_options):
        reply = self.server.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp_server, session, envelope):
        self.server.messages.append(envelope)
        return "250 2.0.0 queued as test-%d" % len(self.server.messages)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_smtp(server: SmtpServer, **controller_options) -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller

    controller = Controller(_CollectingHandler(server), hostname=server.host, port=server.port, **controller_options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from _run_smtp(SmtpServer("127.0.0.1", _free_port()))


SMTP_TEST_USER, SMTP_TEST_PASSWORD = "editor", "s3cret"


@pytest.fixture
def smtp_tls_server() -> Iterator[SmtpServer]:
    import trustme
    from aiosmtpd.smtp import AuthResult

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == SMTP_TEST_USER.encode() and auth_data.password == SMTP_TEST_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    yield from _run_smtp(
        SmtpServer("127.0.0.1", _free_port(), ca=ca),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )


# --- a working config in tmp_path ---------------------------------------------------------------

_CONFIG_TEMPLATE = """
[newsletter]
name = "이번 주의 주요 ML 논문 · Top ML Papers of the Week"
list_id = "top-ml-papers.newsletter.example.com"
web_base_url = "https://newsletter.example.com/issues/"
postal_address = "Top ML Papers, 123 Example-ro, Gangnam-gu, Seoul 06000, Republic of Korea"

[sender]
from = "Top ML Papers <digest@{domain}>"
reply_to = "editors@{domain}"

[subscribers]
database = "newsletter.db"

[unsubscribe]
url = "https://newsletter.example.com/unsubscribe/"
mailto = "unsubscribe@{domain}"

[transport]
kind = "{transport}"

[transport.ses]
region = "us-east-1"
configuration_set = "newsletter"

[transport.smtp]
{smtp}

[sending]
outbox = "outbox"

[publish]
# Sends in tests are not about the archive; tests/test_publish.py checks the check.
check_before_send = false
"""


def write_config(path: Path, *, transport: str = "ses", smtp: str = 'host = "127.0.0.1"\nsecurity = "none"') -> Path:
    path.write_text(_CONFIG_TEMPLATE.format(domain=SENDER_DOMAIN, transport=transport, smtp=smtp), encoding="utf-8")
    return path


@pytest.fixture
def newsletter_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "newsletter.toml")


# --- Pagefind, for the tests that publish the archive ---------------------------------------------


def require_pagefind() -> None:
    """Skip, saying why, where Pagefind (the archive's search indexer, a dependency of the
    package) is not installed; the README's install and CI have it."""
    from newsletter.errors import PublishError
    from newsletter.site.search import pagefind_binary

    try:
        pagefind_binary()
    except PublishError as error:
        pytest.skip(str(error))


# --- a static web host: where readers open the issue's page ----------------------------------------


@dataclass
class StaticSite:
    """A real HTTP server on 127.0.0.1 serving the files under `root` (404 for the rest), as S3,
    CloudFront or any static host would serve the archive; `url` is its base (ending in /)."""

    root: Path
    url: str


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[StaticSite]:
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def list_directory(self, path):  # a folder without index.html: 404, as S3 answers
            self.send_error(404, "File not found")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticSite(root, f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()


# --- a guard against network use ----------------------------------------------------------------


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to connect a socket or resolve a name fails the test (a guard, not a mock:
    nothing is faked, the call simply is not allowed)."""

    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network use attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket, "gethostbyaddr", refuse)
