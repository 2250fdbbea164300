"""Transports against real local servers: moto's SES over HTTP, aiosmtpd over SMTP, and the outbox.

Failures SES would answer with (throttling, 5xx, a paused account) are injected with a botocore
`before-send` hook that answers instead of the network, since moto never produces them.
"""

from __future__ import annotations

import csv
import email
import email.policy
import socket
import ssl
import threading
from dataclasses import replace

import pytest

from conftest import SMTP_TEST_PASSWORD, SMTP_TEST_USER, write_config
from newsletter.config import SesSettings, SmtpSettings, load_config
from newsletter.errors import ConfigError
from newsletter.transports import make_transport
from newsletter.transports.base import (
    AccountStoppedError,
    OutcomeUnknownError,
    OutgoingMessage,
    RecipientDeferredError,
    RecipientRejectedError,
    RetryableSendError,
    UnreachableError,
)
from newsletter.transports.outbox import OutboxTransport
from newsletter.transports.ses import SesTransport
from newsletter.transports.smtp import SmtpTransport
from sending_fixtures import scripted_smtp, ses_answer, ses_error  # noqa: F401  (fixture)

RAW = (
    "From: Top ML Papers <digest@newsletter.example.com>\r\n"
    "To: reader@example.org\r\n"
    "Subject: =?utf-8?b?7J2067KIIOyjvOydmA==?=\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: text/plain; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\n"
    "7JWI64WV7ZWY7IS47JqUCg==\r\n"
).encode("ascii")


def message(recipient: str = "reader@example.org", raw: bytes = RAW) -> OutgoingMessage:
    return OutgoingMessage(issue_id="2023-10-16", recipient=recipient, raw=raw)


# --- SES ----------------------------------------------------------------------------------------


@pytest.fixture
def ses(moto_ses):
    transport = SesTransport(SesSettings(configuration_set="newsletter"))  # endpoint from the env
    yield transport
    transport.close()


def answer_with(transport: SesTransport, status: int, code: str, text: str) -> list[int]:
    """Make SES's answer to SendEmail `status`/`code`; returns a list counting the HTTP attempts."""
    attempts: list[int] = []

    def respond(request, **_):
        attempts.append(1)
        return ses_error(request, status, code, text)

    transport.client.meta.events.register("before-send.sesv2.SendEmail", respond)
    return attempts


def test_ses_sends_the_raw_message_with_configuration_set_and_issue_tag(moto_ses, ses):
    requests = []
    ses.client.meta.events.register(
        "provide-client-params.sesv2.SendEmail", lambda params, **_: requests.append(dict(params))
    )
    result = ses.send(message())
    stored = moto_ses.raw_messages()
    assert [item["raw_data"].encode() for item in stored] == [RAW]
    assert stored[0]["id"] == result.message_id
    assert requests[0]["ConfigurationSetName"] == "newsletter"
    assert requests[0]["EmailTags"] == [{"Name": "issue", "Value": "2023-10-16"}]
    assert requests[0]["Destination"] == {"ToAddresses": ["reader@example.org"]}


def test_ses_unverified_sender_stops_the_account_naming_the_fix(moto_ses, ses):
    """moto, like SES, refuses a From whose identity is not verified: not the recipient's fault."""
    with pytest.raises(AccountStoppedError) as caught:
        ses.send(message(raw=RAW.replace(b"newsletter.example.com", b"elsewhere.example")))
    assert caught.value.code == "MessageRejected"
    assert "digest@elsewhere.example" in caught.value.message
    assert "verify the From address or its domain in SES in region us-east-1" in caught.value.fix
    assert moto_ses.raw_messages() == []


SANDBOX_RECIPIENT = (
    "Email address is not verified. The following identities failed the check in region US-EAST-1: reader@example.org"
)


@pytest.mark.parametrize(
    ("status", "code", "text", "expected"),
    [
        (429, "TooManyRequestsException", "Maximum sending rate exceeded.", RetryableSendError),
        (503, "ServiceUnavailable", "Service unavailable", RetryableSendError),
        (429, "TooManyRequestsException", "Daily message quota exceeded.", AccountStoppedError),
        (400, "SendingPausedException", "Sending paused for this account", AccountStoppedError),
        (400, "AccountSuspendedException", "Account suspended", AccountStoppedError),
        (400, "MailFromDomainNotVerifiedException", "MAIL FROM not verified", AccountStoppedError),
        (400, "MessageRejected", SANDBOX_RECIPIENT, AccountStoppedError),
        (400, "MessageRejected", "Did not have authority to send from email digest@newsletter.example.com",
         AccountStoppedError),
        (404, "NotFoundException", "Configuration set <newsletter> does not exist.", AccountStoppedError),
        (400, "ConfigurationSetDoesNotExist", "Configuration set <newsletter> does not exist.", AccountStoppedError),
        (403, "AccessDeniedException", "User is not authorized to perform ses:SendEmail", AccountStoppedError),
        (403, "AccessDenied", "User is not authorized to perform ses:SendRawEmail", AccountStoppedError),
        (403, "UnrecognizedClientException", "The security token included in the request is invalid.",
         AccountStoppedError),
        (403, "InvalidClientTokenId", "The security token included in the request is invalid.", AccountStoppedError),
        (403, "SignatureDoesNotMatch", "The request signature we calculated does not match", AccountStoppedError),
        (403, "ExpiredTokenException", "The security token included in the request is expired", AccountStoppedError),
        (403, "ExpiredToken", "The security token included in the request is expired", AccountStoppedError),
        (403, "SomethingNew", "Forbidden", AccountStoppedError),
        (400, "BadRequestException", "Invalid address", RecipientRejectedError),
        (400, "MessageRejected", "Illegal address", RecipientRejectedError),
    ],
)
def test_ses_errors_are_classified_once_without_sdk_retries(moto_ses, ses, status, code, text, expected):
    attempts = answer_with(ses, status, code, text)
    with pytest.raises(expected) as caught:
        ses.send(message())
    assert (caught.value.code, caught.value.message) == (code, text)
    assert len(attempts) == 1  # botocore's retries are off: one HTTP request, one answer
    if expected is AccountStoppedError:
        assert caught.value.fix and "\n" not in caught.value.fix


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ses_endpoint_that_refuses_connections_is_unreachable():
    transport = SesTransport(SesSettings(endpoint_url=f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(UnreachableError) as caught:
        transport.send(message())
    assert caught.value.code == "EndpointConnectionError"


def test_ses_endpoint_whose_name_does_not_resolve_is_unreachable(monkeypatch):
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)  # no DNS here to fail for real
    transport = SesTransport(SesSettings(endpoint_url="https://email.us-east-1.amazonaws.invalid"))
    with pytest.raises(UnreachableError) as caught:
        transport.send(message())
    assert caught.value.code == "EndpointConnectionError"


def test_ses_answer_that_never_comes_is_outcome_unknown():
    """The request went out and the server read it, but no answer came: it may have been sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    received, finished = threading.Event(), threading.Event()

    def swallow():
        connection, _ = listener.accept()
        connection.recv(65536)
        received.set()
        finished.wait(10)  # keep the connection open, answer nothing
        connection.close()

    threading.Thread(target=swallow, daemon=True).start()
    transport = SesTransport(
        SesSettings(endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}"), read_timeout=0.5
    )
    try:
        with pytest.raises(OutcomeUnknownError) as caught:
            transport.send(message())
        assert caught.value.code == "ReadTimeoutError"
        assert received.is_set()
    finally:
        finished.set()
        listener.close()


def test_ses_quota_falls_back_to_config_where_get_account_is_missing(moto_ses):
    transport = SesTransport(SesSettings(max_send_rate=7.0, max_24h_send=1234))
    quota = transport.quota()
    assert (quota.max_send_rate, quota.max_24h_send, quota.source) == (7.0, 1234, "config")


def test_ses_quota_reads_get_account(moto_ses, ses):
    def account(request, **_):
        body = b'{"SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 12.0}}'
        return ses_answer(request, 200, body)

    ses.client.meta.events.register("before-send.sesv2.GetAccount", account)
    quota = ses.quota()
    assert (quota.max_send_rate, quota.max_24h_send, quota.sent_last_24h, quota.source) == (
        1.0, 200, 12, "ses GetAccount"
    )


# --- SMTP ---------------------------------------------------------------------------------------


def smtp_transport(server, **changes) -> SmtpTransport:
    settings = replace(SmtpSettings(host=server.host, port=server.port, security="none", timeout=5), **changes)
    return SmtpTransport(settings, "Top ML Papers <digest@newsletter.example.com>")


def test_smtp_delivers_each_message_on_one_connection(smtp_server):
    transport = smtp_transport(smtp_server)
    transport.send(message("one@example.org"))
    result = transport.send(message("two@example.org"))
    transport.close()
    assert [m.rcpt_tos for m in smtp_server.messages] == [["one@example.org"], ["two@example.org"]]
    assert {m.mail_from for m in smtp_server.messages} == {"digest@newsletter.example.com"}
    assert smtp_server.messages[0].content.replace(b"\r\n", b"\n") == RAW.replace(b"\r\n", b"\n")
    assert "queued as test-2" in result.message_id


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("550 5.1.1 no such user", RecipientRejectedError),
        ("450 4.2.1 mailbox busy", RecipientDeferredError),
        ("421 4.3.2 service shutting down", RetryableSendError),
        ("454 Throttling failure: Maximum sending rate exceeded.", RetryableSendError),
        ("454 Throttling failure: Daily message quota exceeded.", AccountStoppedError),
        ("530 5.7.0 Authentication required", AccountStoppedError),
        ("554 5.7.1 Relay access denied", AccountStoppedError),
    ],
)
def test_smtp_recipient_answers_are_classified_and_the_connection_goes_on(scripted_smtp, reply, expected):
    scripted_smtp.rcpt_replies["refused@example.org"] = reply
    transport = smtp_transport(scripted_smtp)
    with pytest.raises(expected) as caught:
        transport.send(message("refused@example.org"))
    assert caught.value.code == reply[:3]
    assert (expected is RetryableSendError) == (type(caught.value) is RetryableSendError)  # not a subclass
    transport.send(message("fine@example.org"))
    transport.close()
    assert [m.rcpt_tos for m in scripted_smtp.messages] == [["fine@example.org"]]


def test_smtp_sender_refused_at_mail_from_stops_the_account(scripted_smtp):
    scripted_smtp.mail_reply = "554 5.7.1 Sender address rejected: not owned by user"
    with pytest.raises(AccountStoppedError) as caught:
        smtp_transport(scripted_smtp).send(message())
    assert caught.value.code == "554" and "digest@newsletter.example.com" in caught.value.fix


def test_smtp_ses_unverified_answer_after_data_stops_the_account(scripted_smtp):
    """SES's SMTP interface refuses an unverified identity after the message, with a 554."""
    scripted_smtp.data_reply = f"554 Message rejected: {SANDBOX_RECIPIENT}"
    with pytest.raises(AccountStoppedError) as caught:
        smtp_transport(scripted_smtp).send(message())
    assert caught.value.code == "554"


def test_smtp_server_that_is_not_there_is_unreachable():
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=_closed_port(), security="none"), "a@b.example")
    with pytest.raises(UnreachableError):
        transport.send(message())


def test_smtp_connection_lost_after_data_is_outcome_unknown():
    """A server that takes the whole message and hangs up before answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def half_server():
        connection, _ = listener.accept()
        stream = connection.makefile("rb")
        connection.sendall(b"220 test ESMTP\r\n")
        for line in stream:
            if line.upper().startswith((b"EHLO", b"HELO")):
                connection.sendall(b"250 test\r\n")
            elif line.upper().startswith((b"MAIL", b"RCPT")):
                connection.sendall(b"250 OK\r\n")
            elif line.upper().startswith(b"DATA"):
                connection.sendall(b"354 go ahead\r\n")
            elif line == b".\r\n":
                break  # the message is in; hang up without a word
        connection.close()

    threading.Thread(target=half_server, daemon=True).start()
    transport = SmtpTransport(
        SmtpSettings(host="127.0.0.1", port=listener.getsockname()[1], security="none", timeout=5), "a@b.example"
    )
    try:
        with pytest.raises(OutcomeUnknownError):
            transport.send(message())
    finally:
        listener.close()


def test_smtp_starttls_and_login_with_password_from_the_environment(smtp_tls_server, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_TEST_PASSWORD)
    context = ssl.create_default_context()
    smtp_tls_server.ca.configure_trust(context)
    settings = SmtpSettings(
        host="127.0.0.1", port=smtp_tls_server.port, security="starttls",
        username=SMTP_TEST_USER, password_env="TEST_SMTP_PASSWORD", timeout=5,
    )
    transport = SmtpTransport(settings, "digest@newsletter.example.com", ssl_context=context)
    transport.send(message())
    transport.close()
    assert [m.rcpt_tos for m in smtp_tls_server.messages] == [["reader@example.org"]]

    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    wrong = SmtpTransport(settings, "digest@newsletter.example.com", ssl_context=context)
    with pytest.raises(AccountStoppedError):
        wrong.send(message())


def test_smtp_starttls_refuses_a_certificate_it_cannot_verify_and_stops(smtp_tls_server):
    settings = SmtpSettings(host="127.0.0.1", port=smtp_tls_server.port, security="starttls", timeout=5)
    transport = SmtpTransport(settings, "digest@newsletter.example.com")  # the system's CAs only
    with pytest.raises(AccountStoppedError) as caught:  # a setting to fix, not an outage to wait out
        transport.send(message())
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert smtp_tls_server.messages == []


def test_smtp_username_without_password_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="NEWSLETTER_SMTP_PASSWORD"):
        SmtpTransport(SmtpSettings(username="AKIAEXAMPLE"), "a@b.example")


# --- outbox and the factory ---------------------------------------------------------------------


def test_outbox_keeps_samples_and_a_manifest_of_everyone_without_network(tmp_path, no_network):
    outbox = OutboxTransport(tmp_path / "outbox", samples=2)
    for number in range(5):
        outbox.send(message(f"reader{number}@example.org", RAW + b"x" * number))
    outbox.close()
    assert [path.name for path in outbox.sample_paths] == ["0001-reader0@example.org.eml", "0002-reader1@example.org.eml"]
    parsed = email.message_from_bytes(outbox.sample_paths[0].read_bytes(), policy=email.policy.default)
    assert parsed.get_content() == "안녕하세요\n"
    with outbox.manifest_path.open(encoding="utf-8") as manifest:
        rows = list(csv.DictReader(manifest))
    assert [row["recipient"] for row in rows] == [f"reader{n}@example.org" for n in range(5)]
    assert [int(row["bytes"]) for row in rows] == [len(RAW) + n for n in range(5)]


def test_make_transport_builds_each_kind_from_the_config(tmp_path):
    config = load_config(write_config(tmp_path / "newsletter.toml"))
    assert {kind: make_transport(config, kind).name for kind in ("ses", "smtp", "outbox")} == {
        "ses": "ses", "smtp": "smtp", "outbox": "outbox"
    }
    assert make_transport(config).name == "ses"  # the config's kind
    assert make_transport(config, "outbox").folder == tmp_path / "outbox"
    with pytest.raises(ConfigError, match="unknown transport"):
        make_transport(config, "pigeon")
