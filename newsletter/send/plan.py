"""What a send will do, decided before the first message (`prepare_send` -> `SendPlan`), and what
it did (`SendSummary`). The plan parses the issue once and renders each edition once; for a real
send to the list it also reads the account's quota and the ledger as the send will find it,
changing nothing yet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import addresses
from ..compose import GMAIL_CLIP_BYTES, MessageTemplate, check_address, check_header_value
from ..config import Config
from ..errors import MessageError, StoreError
from ..model import DEFAULT_EDITION, EDITIONS, Issue, RenderedIssue, Subscriber
from ..parse import parse_issue
from ..preferences import PreferenceLinks
from ..render import render_editions
from ..store import Store
from ..store.ledger import IssueVersion
from ..transports import make_transport
from ..transports.base import AccountStoppedError, OutgoingMessage, SendQuota, Transport
from ..unsubscribe import UnsubscribeLinks, load_signing_key
from .quota import LedgerRequest, prepare_ledger, read_quota
from .sizing import Sizing, size_send

FIRST_ADDRESSES_SHOWN = 5


@dataclass(frozen=True)
class IssueToSend:
    """The issue as the checks before a send and the send itself see it: read once, each edition
    rendered once."""

    path: Path
    parsed: Issue
    editions: Mapping[str, RenderedIssue]  # every one of EDITIONS

    @classmethod
    def load(cls, path: str | Path, config: Config, templates_dir: str | Path | None = None) -> IssueToSend:
        issue = parse_issue(path)
        return cls(Path(path), issue, render_editions(issue, config, templates_dir=templates_dir))

    @property
    def rendered(self) -> RenderedIssue:
        """The default (bilingual) edition, with the web page every edition shares."""
        return self.editions[DEFAULT_EDITION]


@dataclass(frozen=True)
class SendPlan:
    """Everything decided before the first message: what, to whom, through which transport."""

    config: Config
    issue_id: str
    subject: str  # the default edition's
    paper_count: int
    templates: Mapping[str, MessageTemplate]  # one per edition, each built once
    links: UnsubscribeLinks
    preference_links: PreferenceLinks
    transport_kind: str  # ses | smtp | outbox
    recipient_count: int
    # The subscribed by edition (empty for test copies): how many get each, for a dry run's reader.
    subscribed_by_edition: Mapping[str, int]
    version: IssueVersion  # the subject and a hash of every edition's rendered content: what everyone gets
    test_addresses: tuple[str, ...] = ()  # --to: these instead of the list, recorded nowhere
    test_editions: tuple[str, ...] = (DEFAULT_EDITION,)  # --edition: each test address gets each
    development_key: bool = False  # links signed with the public key (allowed in a dry run only)
    # A real send to the list only:
    quota: SendQuota | None = None  # the account's limits as read before the send
    ledger: dict[str, int] | None = None  # the issue's ledger rows by state, as the send will find them
    found_interrupted: int = 0  # rows an interrupted run left `sending`: they become `unknown`
    resend_unknown: bool = False  # send `unknown` rows again (they may get a second copy)
    retry_failed: bool = False  # send `failed` rows again
    limit: int | None = None  # send at most this many now; the rest stay pending
    workers: int | None = None  # --workers: threads per worker process, fixed (None: sized)
    processes: int | None = None  # --processes: worker processes, fixed (None: sized)
    send_changed_version: bool = False  # rows were sent another version: send this one to the rest

    @property
    def dry_run(self) -> bool:
        return self.transport_kind == "outbox"

    @property
    def template(self) -> MessageTemplate:
        """The default edition's message template."""
        return self.templates[DEFAULT_EDITION]

    @property
    def list_send(self) -> bool:
        """A real send to the list (recorded in the ledger), not a dry run or test copies."""
        return not self.dry_run and not self.test_addresses

    @property
    def rate(self) -> float | None:
        """Messages per second the send will keep to (a share of the account's rate)."""
        return self.quota.max_send_rate * self.config.rate_share if self.quota else None

    def sizing(self, recipients: int | None = None) -> Sizing:
        """How many worker processes and threads a list send runs, and why (send/sizing.py)."""
        # Every copy is at most about this size (the bilingual edition holds both languages).
        sample = max((self.message_for(self.template.sender_address, None, edition) for edition in self.templates),
                     key=lambda message: len(message.raw))
        return size_send(
            self.rate, self.recipient_count if recipients is None else recipients, cpu_count=os.cpu_count() or 1,
            message_bytes=len(sample.raw), max_workers=self.config.workers, max_processes=self.config.processes,
            workers=self.workers, processes=self.processes,
        )

    @property
    def sender(self) -> str:
        return self.config.from_address

    @property
    def ledger_request(self) -> LedgerRequest:
        return LedgerRequest(
            self.issue_id, self.version, self.resend_unknown, self.retry_failed, self.limit, self.send_changed_version
        )

    def new_transport(self) -> Transport:
        """A new transport of the plan's kind, for one thread's use."""
        return make_transport(self.config, self.transport_kind)

    def message_for(self, address: str, name: str | None, edition: str = DEFAULT_EDITION) -> OutgoingMessage:
        """The recipient's copy of their edition, with their own unsubscribe and preferences links."""
        https_url, mailto_url = self.links.for_address(address)
        return self.templates[edition].message_for(
            address, name=name, unsubscribe_url=https_url, unsubscribe_mailto=mailto_url,
            preferences_url=self.preference_links.for_address(address, edition))

    def recipients(self) -> Iterator[Subscriber]:
        """The test addresses (each in each test edition), or the list's subscribed addresses
        streamed from the store, each with their edition."""
        if self.test_addresses:
            yield from (Subscriber(address, edition=edition)
                        for address in self.test_addresses for edition in self.test_editions)
            return
        with Store.open(self.config.database) as store:
            yield from store.subscribed()


@dataclass(frozen=True)
class Stop:
    """Why a run stopped before the end: the cause, and what to do before running the same send
    again (every row not sent is still `pending`)."""

    cause: str
    fix: str | None = None  # None: the cause says what to do

    @classmethod
    def account(cls, error: AccountStoppedError) -> Stop:
        return cls(f"the account cannot send now: {error}", error.fix)

    @classmethod
    def database(cls, error: StoreError) -> Stop:
        return cls(str(error))


@dataclass(frozen=True)
class Failure:
    address: str
    kind: str  # the SendError subclass: RecipientRejectedError, OutcomeUnknownError, ...
    code: str | None
    message: str


@dataclass
class SendSummary:
    issue_id: str
    transport: str
    dry_run: bool
    recipients: int  # how many the send was meant for
    sent: int = 0
    failures: list[Failure] = field(default_factory=list)
    stopped: str | None = None  # why the run stopped before the end (the account, an outage, ...)
    stop_fix: str | None = None  # what to do about it before running the same send again
    # A real send to the list only:
    unknown: list[Failure] = field(default_factory=list)  # may or may not have been delivered
    deferred: list[Failure] = field(default_factory=list)  # the server asked to try later: still pending
    skipped: int = 0  # left the list after being queued
    interrupted: str | None = None  # the signal that ended the run early
    retries: int = 0  # calls repeated after throttling or a 5xx answer
    slow_downs: int = 0  # times the rate was lowered for them
    found_interrupted: int = 0  # rows an earlier, killed run had left `sending`: now `unknown`
    ledger: dict[str, int] | None = None  # the issue's rows by state after the run
    quota: dict | None = None  # the account's limits as read (SendQuota's fields)
    rate: float | None = None  # messages per second the run kept to
    workers: int = 1  # threads per process
    processes: int = 1
    cycle_seconds: float | None = None  # a message's time in a worker (compose, claim, call, record), measured
    call_seconds: float | None = None  # the provider call's part of it
    largest_message_bytes: int = 0
    html_part_bytes: int = 0  # the largest edition's encoded HTML part, the figure Gmail's clipping goes by
    html_part_bytes_by_edition: dict[str, int] = field(default_factory=dict)
    gmail_clip_bytes: int = GMAIL_CLIP_BYTES
    sample_files: list[str] = field(default_factory=list)  # dry run: the .eml samples
    manifest: str | None = None  # dry run: the CSV of every recipient
    first_addresses: list[str] = field(default_factory=list)

    @classmethod
    def for_plan(cls, plan: SendPlan) -> SendSummary:
        sizes = {edition: template.encoded_html_size() for edition, template in plan.templates.items()}
        return cls(
            issue_id=plan.issue_id,
            transport=plan.transport_kind,
            dry_run=plan.dry_run,
            recipients=plan.recipient_count,
            html_part_bytes=max(sizes.values()),
            html_part_bytes_by_edition=sizes,
        )

    @property
    def complete(self) -> bool:
        """Every recipient was sent (the CLI's exit 0)."""
        left = self.ledger is not None and self.ledger["pending"] > 0
        return self.stopped is None and self.interrupted is None and not self.failures and not self.unknown and not left

    def note_stop(self, stop: Stop) -> None:
        self.stopped, self.stop_fix = stop.cause, stop.fix

    def problems(self, state: str) -> list[Failure]:
        """The list a row's failure goes in, by the state it was left in."""
        return {"failed": self.failures, "unknown": self.unknown, "deferred": self.deferred}[state]

    def note_sent(self, address: str, message_bytes: int) -> None:
        self.sent += 1
        self.largest_message_bytes = max(self.largest_message_bytes, message_bytes)
        if len(self.first_addresses) < FIRST_ADDRESSES_SHOWN:
            self.first_addresses.append(address)

    def to_dict(self) -> dict:
        return {**asdict(self), "complete": self.complete}


def _test_address(value: str) -> str:
    """A --to address in the form the list keeps it (a Korean domain as its xn-- form, which SES
    delivers to), or MessageError saying why not."""
    check_header_value("--to", value)  # a line break is named as such, not as a bad address
    try:
        return check_address("--to", addresses.normalise(value.strip()))
    except addresses.AddressError as error:
        raise MessageError(f"--to {value!r}: {error}") from None


def prepare_send(
    issue: str | Path | IssueToSend,
    config: Config,
    *,
    dry_run: bool,
    test_addresses: Sequence[str] = (),
    test_editions: Sequence[str] = (),
    templates_dir: str | Path | None = None,
    resend_unknown: bool = False,
    retry_failed: bool = False,
    limit: int | None = None,
    send_changed_version: bool = False,
    transport_factory: Callable[[], Transport] | None = None,
) -> SendPlan:
    """Parse and render the issue (unless given read and rendered), build its message template,
    load the signing key and count the recipients. A real send refuses the development signing
    key (kind = "outbox" sends nothing, so it allows it); a real send to the
    list also reads the account's quota (through a transport from `transport_factory`, default
    the plan's kind) and what the ledger holds for the issue (changing nothing yet), and refuses
    one that would pass the daily quota, or one of an issue whose rows were sent another version
    (unless `send_changed_version`). `test_editions`: the editions each test address gets
    (default: the bilingual)."""
    test_addresses = tuple(_test_address(address) for address in test_addresses)
    test_editions = tuple(dict.fromkeys(test_editions)) or (DEFAULT_EDITION,)
    if set(test_editions) - set(EDITIONS):
        raise MessageError(f"--edition: expected one of {', '.join(EDITIONS)}, got {sorted(set(test_editions) - set(EDITIONS))[0]!r}")
    if test_editions != (DEFAULT_EDITION,) and not test_addresses:
        raise MessageError("--edition picks the editions of test copies (--to); the list's readers each get their own")
    if not isinstance(issue, IssueToSend):
        issue = IssueToSend.load(issue, config, templates_dir)
    rendered = issue.rendered
    transport_kind = "outbox" if dry_run else config.transport
    key = load_signing_key(config, allow_development=transport_kind == "outbox")
    subscribed = {} if test_addresses else _count_subscribed_by_edition(config)
    plan = SendPlan(
        config=config,
        issue_id=rendered.issue_id,
        subject=rendered.subject,
        paper_count=len(issue.parsed.papers),
        templates={edition: MessageTemplate(edition_rendered, config) for edition, edition_rendered in issue.editions.items()},
        links=UnsubscribeLinks(config, key),
        preference_links=PreferenceLinks(config, key, dt.datetime.now(dt.UTC)),
        transport_kind=transport_kind,
        recipient_count=len(test_addresses) * len(test_editions) or sum(subscribed.values()),
        subscribed_by_edition=subscribed,
        version=issue_version(issue.editions),
        test_addresses=tuple(test_addresses),
        test_editions=test_editions,
        development_key=key.is_development,
        resend_unknown=resend_unknown,
        retry_failed=retry_failed,
        limit=limit,
        send_changed_version=send_changed_version,
    )
    if plan.list_send:
        plan = _with_ledger_preview(plan, transport_factory or plan.new_transport)
    return plan


def issue_version(editions: Mapping[str, RenderedIssue]) -> IssueVersion:
    """The default edition's subject and a hash of every edition's subject and both rendered parts
    (before anyone's links go in): an edit of the issue file or of the email templates that
    changes any edition changes it."""
    digest = hashlib.sha256()
    for edition in EDITIONS:
        rendered = editions[edition]
        for part in (edition, rendered.subject, rendered.html, rendered.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
    return IssueVersion(editions[DEFAULT_EDITION].subject, digest.hexdigest())


def _count_subscribed_by_edition(config: Config) -> dict[str, int]:
    with Store.open(config.database) as store:
        return store.count_by_edition()


def _with_ledger_preview(plan: SendPlan, new_transport: Callable[[], Transport]) -> SendPlan:
    """`plan` with the account's quota read, and the ledger as the send will find it (nothing is
    written); QuotaError if the send would pass the daily quota. SendError at once if another send
    is running: its rows in flight are not an earlier run's leftovers to report."""
    with Store.open(plan.config.database) as store, store.send_lock():
        quota = read_quota(new_transport, store)
        preparation, to_send = prepare_ledger(store, plan.ledger_request, quota, commit=False)
    return dataclasses.replace(
        plan, quota=quota, ledger=preparation.counts, found_interrupted=preparation.interrupted, recipient_count=to_send
    )
