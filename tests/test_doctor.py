"""`newsletter doctor` against moto's server (SES v1/v2, SNS, SQS over HTTP), a real static web
host, the real unsubscribe app and a small real DNS server on 127.0.0.1 (UDP, answers built by
dnspython). What moto cannot show: production access and sending enabled (it has no SES v2
GetAccount: doctor says it cannot tell and reads the quota from SES v1, where moto's are the
sandbox's 200/24h and 1/s)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rrset
import pytest

from conftest import SENDER_DOMAIN
from events_fixtures import SECRET, cli, events_config, queue_depth
from newsletter import doctor as doctor_module
from newsletter.config import load_config
from newsletter.doctor import Finding, check
from newsletter.unsubscribe import SigningKey, TokenSigner
from newsletter.web import UnsubscribeApp, serve_in_thread


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


# --- a DNS server ---------------------------------------------------------------------------------


@dataclass
class DnsServer:
    """Answers from `records` {(name, type): [rdata text]}; NXDOMAIN for any other name."""

    address: str
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, kind = question.name.to_text().rstrip(".").lower(), dns.rdatatype.to_text(question.rdtype)
        self.asked.append(f"{kind} {name}")
        if (name, kind) in self.records:
            response.answer.append(dns.rrset.from_text(question.name, 300, "IN", kind, *self.records[name, kind]))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    server = DnsServer(f"127.0.0.1:{udp.getsockname()[1]}")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, client = udp.recvfrom(4096)
            except TimeoutError:
                continue
            udp.sendto(server.answer(wire), client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join()
    udp.close()


# --- a sender's whole setup, as docs/deploy.md has it -----------------------------------------------


def doctor_config(tmp_path, static_site, endpoint_url: str) -> object:
    config_path = events_config(tmp_path)
    text = config_path.read_text(encoding="utf-8")
    text = text.replace("https://newsletter.example.com/issues/", static_site.url)
    text = text.replace("https://newsletter.example.com/unsubscribe/", endpoint_url)
    config_path.write_text(text, encoding="utf-8")
    return config_path


@pytest.fixture
def unsubscribe_app():
    """`newsletter serve`'s app on 127.0.0.1, signing with `key_secret`; its URL (…/unsubscribe/)."""
    started = []

    def start(folder, key_secret: str = SECRET) -> str:
        folder.mkdir()
        config = load_config(events_config(folder))  # the server's own config and database
        signer = TokenSigner(config.list_id, SigningKey(key_secret.encode(), "test"))
        server = serve_in_thread(UnsubscribeApp(config.database, signer, config.name))
        started.append(server)
        return f"http://127.0.0.1:{server.effective_port}/unsubscribe/"

    yield start
    for server in started:
        server.close()


def whole_setup(tmp_path, static_site, dns_server, moto_events, endpoint: str):
    """Everything docs/deploy.md asks for, in moto and on the local servers."""
    config_path = doctor_config(tmp_path, static_site, endpoint)
    ses = moto_events.client("ses")
    ses.set_identity_mail_from_domain(Identity=SENDER_DOMAIN, MailFromDomain=f"bounce.{SENDER_DOMAIN}")
    tokens = ses.get_identity_dkim_attributes(Identities=[SENDER_DOMAIN])["DkimAttributes"][SENDER_DOMAIN]["DkimTokens"]
    dns_server.records.update({
        (f"bounce.{SENDER_DOMAIN}", "TXT"): ['"v=spf1 include:amazonses.com ~all"'],
        (f"_dmarc.{SENDER_DOMAIN}", "TXT"): [f'"v=DMARC1; p=none; rua=mailto:dmarc@{SENDER_DOMAIN}"'],
        **{(f"{token}._domainkey.{SENDER_DOMAIN}", "CNAME"): [f"{token}.dkim.amazonses.com."] for token in tokens},
    })
    (static_site.root / "index.html").write_text("<!doctype html><title>archive</title>", encoding="utf-8")
    assert cli(config_path, "setup", "aws").exit_code == 0
    return config_path


def lines(result) -> dict[str, str]:
    """check name -> the whole line, for the lines doctor printed (the last one is the summary)."""
    found = {}
    for line in result.output.splitlines()[:-1]:
        status, _, rest = line.partition(" ")
        found[rest.strip().split(":")[0]] = line
    return found


def test_doctor_names_an_unverified_identity_and_passes_that_check_after_verification(
        tmp_path, moto_events, secret, static_site, dns_server, unsubscribe_app):
    endpoint = unsubscribe_app(tmp_path / "app")
    config_path = whole_setup(tmp_path, static_site, dns_server, moto_events, endpoint)
    moto_events.ses.client.delete_email_identity(EmailIdentity=SENDER_DOMAIN)

    before = cli(config_path, "doctor", "--nameserver", dns_server.address)
    assert before.exit_code == 1
    assert lines(before)["From identity"] == (
        f"FAIL  From identity: neither digest@{SENDER_DOMAIN} nor {SENDER_DOMAIN} is a verified identity in SES "
        f"us-east-1; fix: verify the domain: `aws sesv2 create-email-identity --email-identity {SENDER_DOMAIN} "
        "--region us-east-1`, then add the three DKIM CNAME records it lists (docs/deploy.md)")

    moto_events.client("ses").verify_domain_identity(Domain=SENDER_DOMAIN)
    moto_events.client("ses").set_identity_mail_from_domain(Identity=SENDER_DOMAIN,
                                                            MailFromDomain=f"bounce.{SENDER_DOMAIN}")
    after = cli(config_path, "doctor", "--nameserver", dns_server.address)
    assert after.exit_code == 0, after.output
    found = lines(after)
    assert found["From identity"] == f"ok    From identity: {SENDER_DOMAIN} is verified for sending in SES us-east-1"
    assert found["DKIM"].startswith("ok ") and found["DKIM records"].startswith("ok ")
    # What moto cannot show, said as such; its quota is the sandbox's.
    assert found["production access"] == (
        "warn  production access: cannot tell: SES GetAccount is not answered here (404); fix: allow ses:GetAccount "
        "to the credentials in use, or look at the SES console's account dashboard")
    assert found["quota"].startswith("warn  quota: 200/24h (0 sent in the last 24h), 1/s, from SES v1 GetSendQuota")
    for name in ("signing key", "transport", "SNS topic", "SQS queue", "SQS dead-letter queue",
                 "SES configuration set", "SES event destination", "web page", "unsubscribe endpoint", "SPF",
                 "DMARC"):
        assert found[name].startswith("ok "), found[name]
    assert after.output.splitlines()[-1].startswith("doctor: ") and after.output.splitlines()[-1].endswith(" 0 failed")


def test_doctor_changes_nothing_and_says_what_to_run(tmp_path, moto_events, static_site, dns_server, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    config_path = doctor_config(tmp_path, static_site, "http://127.0.0.1:9/unsubscribe/")
    result = cli(config_path, "doctor", "--nameserver", dns_server.address, "--json")
    assert result.exit_code == 1
    findings = {(f["check"], f["status"]) for f in json.loads(result.stdout)}
    assert {("signing key", "fail"), ("SQS queue", "fail"), ("SES configuration set", "fail"), ("web page", "fail"),
            ("unsubscribe endpoint", "warn"), ("DMARC", "fail")} <= findings
    queue = next(f for f in json.loads(result.stdout) if f["check"] == "SQS queue")
    assert queue["fix"] == "run `newsletter setup aws`"
    # Nothing was created: no queue, no topic, no database.
    assert moto_events.client("sqs").list_queues().get("QueueUrls", []) == []
    assert moto_events.client("sns").list_topics()["Topics"] == []
    assert not load_config(config_path).database.exists()


def test_a_dns_lookup_that_cannot_be_made_is_a_warning_not_a_failure(
        tmp_path, moto_events, secret, static_site, dns_server, unsubscribe_app):
    endpoint = unsubscribe_app(tmp_path / "app")
    config_path = whole_setup(tmp_path, static_site, dns_server, moto_events, endpoint)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes the question, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        result = cli(config_path, "doctor", "--nameserver", f"127.0.0.1:{silent.getsockname()[1]}")
    finally:
        silent.close()
    assert result.exit_code == 0, result.output
    found = lines(result)
    for name in ("SPF", "DKIM records", "DMARC"):
        assert found[name].startswith(f"warn  {name}: could not look up {SENDER_DOMAIN}'s records ("), found[name]


def test_an_endpoint_with_another_signing_key_fails_its_check(
        tmp_path, moto_events, secret, static_site, dns_server, unsubscribe_app):
    endpoint = unsubscribe_app(tmp_path / "app", key_secret="another-secret-that-is-long-enough-9876")
    config_path = whole_setup(tmp_path, static_site, dns_server, moto_events, endpoint)
    result = cli(config_path, "doctor", "--nameserver", dns_server.address)
    assert result.exit_code == 1
    assert lines(result)["unsubscribe endpoint"] == (
        f"FAIL  unsubscribe endpoint: {endpoint} refuses a link signed here (400): it has another signing key; "
        "fix: give the endpoint the same $NEWSLETTER_SECRET as this machine")
    assert queue_depth(moto_events) == 0  # the GET unsubscribed no one


def test_missing_dns_records_are_named_with_the_record_to_add(
        tmp_path, moto_events, secret, static_site, dns_server, unsubscribe_app):
    endpoint = unsubscribe_app(tmp_path / "app")
    config_path = whole_setup(tmp_path, static_site, dns_server, moto_events, endpoint)
    dns_server.records.pop((f"_dmarc.{SENDER_DOMAIN}", "TXT"))
    dns_server.records[f"bounce.{SENDER_DOMAIN}", "TXT"] = ['"v=spf1 mx ~all"']
    result = cli(config_path, "doctor", "--nameserver", dns_server.address)
    assert result.exit_code == 1
    found = lines(result)
    assert found["DMARC"] == (
        f"FAIL  DMARC: _dmarc.{SENDER_DOMAIN} has no DMARC record (Gmail and Yahoo require one of bulk senders); "
        f'fix: add TXT _dmarc.{SENDER_DOMAIN} "v=DMARC1; p=none; rua=mailto:dmarc@{SENDER_DOMAIN}"')
    assert found["SPF"] == (
        f"FAIL  SPF: bounce.{SENDER_DOMAIN} has no SPF record that includes amazonses.com (v=spf1 mx ~all); "
        f'fix: add TXT bounce.{SENDER_DOMAIN} "v=spf1 include:amazonses.com ~all"')


def test_a_new_check_is_one_function(tmp_path, monkeypatch, static_site, dns_server):
    """What a later check (say, "replica last caught up") needs: one decorated function."""
    monkeypatch.setattr(doctor_module, "CHECKS", [])

    @check("replica")
    def replica(doctor):
        yield Finding("replica", "ok", f"caught up (database {doctor.config.database.name})")

    config_path = doctor_config(tmp_path, static_site, "http://127.0.0.1:9/unsubscribe/")
    result = cli(config_path, "doctor")
    assert result.exit_code == 0
    assert result.output == "ok    replica: caught up (database newsletter.db)\ndoctor: 1 ok, 0 warning(s), 0 failed\n"


def test_a_korean_from_domain_is_checked_in_the_form_ses_and_dns_know(tmp_path, moto_events, secret):
    from newsletter.doctor import from_identity, run_checks

    config_path = events_config(tmp_path)
    config_path.write_text(config_path.read_text(encoding="utf-8").replace(
        f"from = \"Top ML Papers <digest@{SENDER_DOMAIN}>\"", 'from = "탑 엠엘 <digest@뉴스.example>"'), encoding="utf-8")
    config = load_config(config_path)
    [before] = run_checks(config, checks=[("From identity", from_identity)])
    assert before.status == "fail" and "--email-identity xn--vg1b002a.example " in before.fix
    moto_events.client("sesv2").create_email_identity(EmailIdentity="xn--vg1b002a.example")
    [after] = run_checks(config, checks=[("From identity", from_identity)])
    assert (after.status, after.detail) == ("ok", "xn--vg1b002a.example is verified for sending in SES us-east-1")
