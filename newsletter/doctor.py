"""`newsletter doctor`: what a send relies on, checked before the week's send instead of during it.

It only reads: the config, SES (through the `aws/` clients), the feedback loop's AWS parts (the
look-ups `setup aws --dry-run` makes), the backup in S3 (`replica_status`), DNS, and one GET each
of the archive and the unsubscribe endpoint. It changes nothing.

Each check is one function registered with `@check("name")`: it gets the `Doctor` (the config,
and AWS clients and DNS made once) and yields `Finding`s, one line each: ok; warn (it cannot tell,
or it is worth knowing); fail (a send would fail or misbehave), with the fix. A check that raises
a `NewsletterError` fails with that error's line. Adding a check is adding one function here.

SES v2 `GetAccount` (production access, sending enabled, the quota) falls back to SES v1
`GetSendQuota` where it is not answered (moto, or an IAM policy without ses:GetAccount); the
identity and DKIM checks use SES v1's identity calls, which real SES and moto both answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property

from botocore.exceptions import ClientError

from . import addresses, probe
from .aws.clients import Clients, error_code, failures_as
from .aws.setup import setup_aws
from .config import Config
from .errors import NewsletterError, SendError
from .transports.base import AccountStoppedError
from .unsubscribe import UnsubscribeLinks, load_signing_key

SANDBOX_QUOTA = (200, 1.0)  # Max24HourSend, MaxSendRate of an account in the SES sandbox
DNS_TIMEOUT_SECONDS = 4.0
PROBE_ADDRESS = "newsletter-doctor@example.invalid"  # whose unsubscribe page the check opens (a GET changes nothing)


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked: "From identity", "SQS queue", ...
    status: str  # ok | warn | fail
    detail: str  # what was found
    fix: str = ""  # what to do about it (warn, fail)

    def to_dict(self) -> dict:
        return asdict(self)


def ok(check: str, detail: str) -> Finding:
    return Finding(check, "ok", detail)


def warn(check: str, detail: str, fix: str = "") -> Finding:
    return Finding(check, "warn", detail, fix)


def fail(check: str, detail: str, fix: str = "") -> Finding:
    return Finding(check, "fail", detail, fix)


CheckFunction = Callable[["Doctor"], Iterable[Finding]]
CHECKS: list[tuple[str, CheckFunction]] = []


def check(name: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check, run in the order of registration."""
    def register(function: CheckFunction) -> CheckFunction:
        CHECKS.append((name, function))
        return function
    return register


class _CannotLookUp(Exception):
    """DNS could not be asked (no network, no answer in time): a warning, not a failure."""


def resolver_for(nameserver: str) -> object:
    """A DNS resolver that asks only `nameserver` ("192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53"):
    the domain's own server, to check records before they have spread (or a local one in tests)."""
    import dns.resolver

    host, port = nameserver, 53
    if nameserver.startswith("["):
        host, _, rest = nameserver[1:].partition("]")
        port = int(rest.removeprefix(":") or 53)
    elif nameserver.count(":") == 1:
        host, _, number = nameserver.partition(":")
        port = int(number)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = [host], port, DNS_TIMEOUT_SECONDS
    return resolver


class Doctor:
    """What the checks share: the config, SES clients in the transport's region, DNS."""

    def __init__(self, config: Config, resolver=None):
        self.config = config
        self._resolver = resolver  # a dns.resolver.Resolver; None: the system's
        self._dns_down: str | None = None  # why DNS could not be asked, once it could not
        self._clients: Clients | None = None

    @property
    def uses_ses(self) -> bool:
        return self.config.transport == "ses"

    @property
    def from_address(self) -> str:
        """The sender's address as SES and DNS know it: a Korean domain in its xn-- form."""
        return addresses.parse(self.config.from_address)[0]

    @property
    def from_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    def aws(self, service: str):
        """A client in the SES transport's region and profile (sesv2 at transport.ses.endpoint_url)."""
        if self._clients is None:
            self._clients = Clients(self.config.ses, profile_key="transport.ses.profile", attempts=2,
                                    connect_timeout=5)
        return self._clients(service, self.config.ses.endpoint_url if service == "sesv2" else None)

    def reading(self, what: str):
        """Turn a boto3 failure while reading `what` into an AwsError line."""
        return failures_as(f"read {what} in SES {self.config.ses.region}", self.config.ses)

    @cached_property
    def dkim(self) -> dict:
        """SES v1's DKIM attributes of the From domain ({} if it is not an identity)."""
        with self.reading(f"the DKIM settings of {self.from_domain}"):
            found = self.aws("ses").get_identity_dkim_attributes(Identities=[self.from_domain])
        return found.get("DkimAttributes", {}).get(self.from_domain, {})

    def lookup(self, name: str, kind: str) -> list[str]:
        """The records of `kind` at `name` as text ([] if there are none), or _CannotLookUp."""
        import dns.exception
        import dns.resolver

        if self._dns_down:
            raise _CannotLookUp(self._dns_down)
        if self._resolver is None:
            self._resolver = dns.resolver.Resolver()
            self._resolver.lifetime = DNS_TIMEOUT_SECONDS
        try:
            answer = self._resolver.resolve(name, kind)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as error:  # timeout, no nameserver answered, ...
            self._dns_down = str(error) or type(error).__name__
            raise _CannotLookUp(self._dns_down) from None
        if kind == "TXT":
            return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]
        return [record.to_text() for record in answer]

    def close(self) -> None:
        if self._clients is not None:
            self._clients.close()


def run_checks(config: Config, *, resolver=None, checks: Iterable[tuple[str, CheckFunction]] | None = None
               ) -> list[Finding]:
    """Every check's findings, in order; one check's failure does not stop the others."""
    doctor = Doctor(config, resolver)
    findings: list[Finding] = []
    try:
        for name, function in CHECKS if checks is None else checks:
            try:
                findings.extend(function(doctor))
            except NewsletterError as error:
                findings.append(fail(name, str(error)))
    finally:
        doctor.close()
    return findings


# --- the checks, in the order a new editor meets them ---------------------------------------------


@check("signing key")
def signing_key(doctor: Doctor) -> Iterator[Finding]:
    key = load_signing_key(doctor.config, allow_development=False)  # ConfigError: the check fails with it
    yield ok("signing key", f"from {key.source}")


@check("transport")
def transport(doctor: Doctor) -> Iterator[Finding]:
    config = doctor.config
    if config.transport == "outbox":
        yield warn("transport", f'kind = "outbox": every send is written to {config.outbox} and nothing leaves the '
                   "machine", 'set transport.kind = "ses" or "smtp" for the real sends')
    elif config.transport == "smtp":
        from .transports.smtp import SmtpTransport

        settings = config.smtp
        try:
            SmtpTransport(settings, config.from_address).verify()
        except AccountStoppedError as error:
            yield fail("transport", f"SMTP {settings.host}:{settings.port}: {error.message}", error.fix)
        except SendError as error:
            yield fail("transport", f"SMTP {settings.host}:{settings.port}: {error.message}",
                       "check transport.smtp.host, port and security, and that the server is up")
        else:
            login = f", logged in as {settings.username}" if settings.username else ""
            yield ok("transport", f"SMTP {settings.host}:{settings.port} answers ({settings.security}{login})")
    else:
        yield ok("transport", f"SES in {config.ses.region}")


@check("From identity")
def from_identity(doctor: Doctor) -> Iterator[Finding]:
    if not doctor.uses_ses:
        return
    address, domain, region = doctor.from_address, doctor.from_domain, doctor.config.ses.region
    with doctor.reading(f"the verification of {address}"):
        found = doctor.aws("ses").get_identity_verification_attributes(Identities=[domain, address])
    statuses = {name: attributes.get("VerificationStatus") for name, attributes in
                found.get("VerificationAttributes", {}).items()}
    verified = [name for name in (domain, address) if statuses.get(name) == "Success"]
    if verified:
        yield ok("From identity", f"{verified[0]} is verified for sending in SES {region}")
        return
    how = (f"verify the domain: `aws sesv2 create-email-identity --email-identity {domain} --region {region}`, then "
           "add the three DKIM CNAME records it lists (docs/deploy.md)")
    pending = [name for name, status in statuses.items() if status == "Pending"]
    if pending:
        yield fail("From identity", f"{pending[0]} is waiting for verification in SES {region}",
                   "add the DNS records SES lists for it and wait (or click the link SES mailed to the address)")
    else:
        yield fail("From identity", f"neither {address} nor {domain} is a verified identity in SES {region}", how)


@check("DKIM")
def dkim_signing(doctor: Doctor) -> Iterator[Finding]:
    if not doctor.uses_ses:
        return
    domain, attributes = doctor.from_domain, doctor.dkim
    if attributes.get("DkimEnabled") and attributes.get("DkimVerificationStatus") == "Success":
        yield ok("DKIM", f"SES signs mail from {domain} (Easy DKIM)")
    elif not attributes:
        yield fail("DKIM", f"{domain} is not an SES identity, so SES cannot sign its mail",
                   "verify the domain (not only the address) in SES: it turns on Easy DKIM (docs/deploy.md)")
    else:
        status = attributes.get("DkimVerificationStatus", "unknown")
        enabled = "on" if attributes.get("DkimEnabled") else "off"
        yield fail("DKIM", f"DKIM for {domain} is {enabled}, verification {status}",
                   "add the three DKIM CNAME records SES lists for the domain and turn signing on (docs/deploy.md)")


@check("SES account")
def ses_account(doctor: Doctor) -> Iterator[Finding]:
    if not doctor.uses_ses:
        return
    region = doctor.config.ses.region
    with doctor.reading("the account (GetAccount)"):
        try:
            account = doctor.aws("sesv2").get_account()
        except ClientError as error:  # moto has no GetAccount (404); a policy may lack ses:GetAccount
            account, unanswered = None, error_code(error)
    if account is None:
        yield warn("production access", f"cannot tell: SES GetAccount is not answered here ({unanswered})",
                   "allow ses:GetAccount to the credentials in use, or look at the SES console's account dashboard")
        with doctor.reading("the sending quota"):
            quota = doctor.aws("ses").get_send_quota()
        yield _quota(int(quota.get("Max24HourSend", 0)), float(quota.get("MaxSendRate", 0)),
                     int(quota.get("SentLast24Hours", 0)), "SES v1 GetSendQuota")
        return
    if account.get("ProductionAccessEnabled"):
        yield ok("production access", f"the account is out of the SES sandbox in {region}")
    else:
        yield fail("production access", f"the account is in the SES sandbox in {region}: it can mail only verified "
                   "addresses", "request production access (SES console, Account dashboard)")
    if not account.get("SendingEnabled", True):
        yield fail("sending enabled", f"sending is paused for the account in {region}",
                   "see the SES console's reputation page, fix the cause and resume sending")
    quota = account.get("SendQuota", {})
    yield _quota(int(quota.get("Max24HourSend", 0)), float(quota.get("MaxSendRate", 0)),
                 int(quota.get("SentLast24Hours", 0)), "SES GetAccount")


def _quota(daily: int, rate: float, sent: int, source: str) -> Finding:
    shown = f"{'unlimited' if daily < 0 else daily}/24h ({sent} sent in the last 24h), {rate:g}/s, from {source}"
    if (daily, rate) == SANDBOX_QUOTA:
        return warn("quota", f"{shown}: the SES sandbox's limits", "request production access if this account is "
                    "still in the sandbox")
    return ok("quota", shown)


@check("feedback loop")
def feedback_loop(doctor: Doctor) -> Iterator[Finding]:
    config = doctor.config
    if config.events is None:
        yield warn("feedback loop", "no [events] table: bounces, complaints and unsubscribes never reach the list",
                   "add an [events] table and run `newsletter setup aws` (docs/deploy.md)")
        return
    for step in setup_aws(config.events, dry_run=True).steps:
        detail = f"{step.name}" + (f" ({step.detail})" if step.detail else "")
        if step.action == "exists":
            yield ok(step.resource, f"{detail} exists")
        else:
            yield fail(step.resource, f"{detail}: missing or different ({step.action.removeprefix('would ')} it)",
                       "run `newsletter setup aws`")


@check("backup")
def backup(doctor: Doctor) -> Iterator[Finding]:
    """The list's backup ([backup]): S3 in reach and holding everything this copy has."""
    from .backup import replica_status

    status = replica_status(doctor.config)
    if status is None:
        return  # no [backup]: nothing to check
    if status.problem:
        fix = "check backup.to, the AWS credentials (backup.profile) and the network (docs/new-editor.md)"
    elif status.head is None and status.copy != "no database":
        fix = "run a command that writes the list (`newsletter sync`, an import): it uploads this copy first"
    else:
        fix = _BACKUP_FIXES.get(status.copy) if status.head is not None else None
    yield fail("backup", status.describe(), fix) if fix else ok("backup", status.describe())


_BACKUP_FIXES = {  # how this copy stands against a replica that holds a list
    "ahead": "run a command that writes the list (`newsletter sync`) with S3 in reach: it uploads them first; "
             "until then they exist on this machine only",
    "behind": "run `newsletter restore --force` before writing from this machine",
    "unreplicated": "run `newsletter restore` (`--force` replaces the list here)",
    "no database": "run `newsletter restore`",
}


@check("web page")
def web_page(doctor: Doctor) -> Iterator[Finding]:
    url = doctor.config.web_base_url
    answer = probe.get(url)
    if answer.status == 200:
        yield ok("web page", f"{url} answers 200")
    else:
        yield fail("web page", f"the archive {url} {answer.describe()}",
                   "publish with `newsletter publish ISSUE --to s3://BUCKET/PREFIX` and serve that folder at "
                   "newsletter.web_base_url, index.html included (docs/deploy.md)")


@check("unsubscribe endpoint")
def unsubscribe_endpoint(doctor: Doctor) -> Iterator[Finding]:
    config = doctor.config
    try:
        key = load_signing_key(config, allow_development=False)
    except NewsletterError:
        yield warn("unsubscribe endpoint", f"{config.unsubscribe_url} not checked: no signing key here to make a "
                   "link with", "set $NEWSLETTER_SECRET (see the signing key line)")
        return
    # The page a reader's link opens; a GET only shows the button, it unsubscribes no one.
    web_link, _mailto = UnsubscribeLinks(config, key).for_address(PROBE_ADDRESS)  # as a send writes it
    answer = probe.get(web_link)
    if answer.status == 200:
        yield ok("unsubscribe endpoint", f"{config.unsubscribe_url} answers a link signed here with its page")
    elif answer.status == 400:
        yield fail("unsubscribe endpoint", f"{config.unsubscribe_url} refuses a link signed here (400): it has "
                   "another signing key", "give the endpoint the same $NEWSLETTER_SECRET as this machine")
    else:
        yield fail("unsubscribe endpoint", f"{config.unsubscribe_url} {answer.describe()}",
                   "run `newsletter serve` behind the proxy, or the Lambda function, at unsubscribe.url "
                   "(docs/deploy.md)")


@check("DNS")
def dns_records(doctor: Doctor) -> Iterator[Finding]:
    for name, records in (("SPF", _spf), ("DKIM records", _dkim_records), ("DMARC", _dmarc)):
        try:
            yield from records(doctor)
        except _CannotLookUp as why:
            yield warn(name, f"could not look up {doctor.from_domain}'s records ({why})",
                       "check them from a machine with DNS: the `dig` lines in docs/deploy.md")


def _spf(doctor: Doctor) -> Iterator[Finding]:
    domain = doctor.from_domain
    if doctor.uses_ses:
        with doctor.reading(f"the MAIL FROM domain of {domain}"):
            found = doctor.aws("ses").get_identity_mail_from_domain_attributes(Identities=[domain])
        domain = found.get("MailFromDomainAttributes", {}).get(doctor.from_domain, {}).get("MailFromDomain")
        if not domain:
            yield warn("SPF", f"no custom MAIL FROM domain for {doctor.from_domain}: SPF passes for amazonses.com, "
                       "which DMARC does not count for the From domain (DKIM alone carries DMARC)",
                       f"set one, e.g. bounce.{doctor.from_domain}, with its MX and SPF records (docs/deploy.md)")
            return
    spf = [text for text in doctor.lookup(domain, "TXT") if text.lower().startswith("v=spf1")]
    needed = "include:amazonses.com" if doctor.uses_ses else ""
    if len(spf) == 1 and needed in spf[0]:
        yield ok("SPF", f"{domain}: {spf[0]}")
    elif len(spf) > 1:
        yield fail("SPF", f"{domain} has {len(spf)} SPF records (receivers treat that as an error)",
                   "merge them into one TXT record")
    else:
        have = f" ({spf[0]})" if spf else ""
        yield fail("SPF", f"{domain} has no SPF record{' that includes amazonses.com' if spf else ''}{have}",
                   f'add TXT {domain} "v=spf1 {needed + " " if needed else ""}~all"')


def _dkim_records(doctor: Doctor) -> Iterator[Finding]:
    tokens = doctor.dkim.get("DkimTokens", []) if doctor.uses_ses else []
    if not tokens:
        return  # the DKIM check says why there are none
    domain = doctor.from_domain
    missing = []
    for token in tokens:
        name = f"{token}._domainkey.{domain}"
        if f"{token}.dkim.amazonses.com." not in [target.lower() for target in doctor.lookup(name, "CNAME")]:
            missing.append(name)
    if missing:
        yield fail("DKIM records", f"{len(missing)} of {len(tokens)} DKIM CNAME records missing or wrong: "
                   f"{', '.join(missing)}", "add CNAME TOKEN._domainkey.DOMAIN -> TOKEN.dkim.amazonses.com for each")
    else:
        yield ok("DKIM records", f"all {len(tokens)} CNAME records under _domainkey.{domain} point at SES")


def _dmarc(doctor: Doctor) -> Iterator[Finding]:
    name = f"_dmarc.{doctor.from_domain}"
    records = [text for text in doctor.lookup(name, "TXT") if text.upper().startswith("V=DMARC1")]
    if records:
        yield ok("DMARC", f"{name}: {records[0]}")
    else:
        yield fail("DMARC", f"{name} has no DMARC record (Gmail and Yahoo require one of bulk senders)",
                   f'add TXT {name} "v=DMARC1; p=none; rua=mailto:dmarc@{doctor.from_domain}"')
