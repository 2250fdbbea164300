"""What a send will do, decided before the first message (`prepare_send` -> `SendPlan`), and what
it did (`SendSummary`). The plan parses and renders the issue once; for a real send to the list it
also reads the account's quota and the ledger as the send will find it, changing nothing yet.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..compose import GMAIL_CLIP_BYTES, MessageTemplate, check_address
from ..config import Config
from ..model import Subscriber
from ..parse import parse_issue
from ..render import render_issue
from ..store import Store
from ..transports import make_transport
from ..transports.base import OutgoingMessage, SendQuota, Transport
from ..unsubscribe import UnsubscribeLinks, load_signing_key
from .quota import LedgerRequest, prepare_ledger, read_quota
from .sizing import Sizing, size_send

FIRST_ADDRESSES_SHOWN = 5


@dataclass(frozen=True)
class SendPlan:
    """Everything decided before the first message: what, to whom, through which transport."""

    config: Config
    issue_id: str
    subject: str
    paper_count: int
    template: MessageTemplate
    links: UnsubscribeLinks
    transport_kind: str  # ses | smtp | outbox
    recipient_count: int
    test_addresses: tuple[str, ...] = ()  # --to: these instead of the list, recorded nowhere
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

    @property
    def dry_run(self) -> bool:
        return self.transport_kind == "outbox"

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
        return size_send(
            self.rate, self.recipient_count if recipients is None else recipients, cpu_count=os.cpu_count() or 1,
            max_workers=self.config.workers, max_processes=self.config.processes,
            workers=self.workers, processes=self.processes,
        )

    @property
    def sender(self) -> str:
        return self.config.from_address

    @property
    def ledger_request(self) -> LedgerRequest:
        return LedgerRequest(self.issue_id, self.resend_unknown, self.retry_failed, self.limit)

    def new_transport(self) -> Transport:
        """A new transport of the plan's kind, for one thread's use."""
        return make_transport(self.config, self.transport_kind)

    def message_for(self, address: str, name: str | None) -> OutgoingMessage:
        https_url, mailto_url = self.links.for_address(address)
        return self.template.message_for(address, name=name, unsubscribe_url=https_url, unsubscribe_mailto=mailto_url)

    def recipients(self) -> Iterator[Subscriber]:
        """The test addresses, or the list's subscribed addresses streamed from the store."""
        if self.test_addresses:
            yield from (Subscriber(address) for address in self.test_addresses)
            return
        with Store.open(self.config.database) as store:
            yield from store.subscribed()


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
    stopped: str | None = None  # why the account stopped the run, if it did
    # A real send to the list only:
    unknown: list[Failure] = field(default_factory=list)  # may or may not have been delivered
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
    largest_message_bytes: int = 0
    html_part_bytes: int = 0  # the encoded HTML part, the figure Gmail's clipping goes by
    gmail_clip_bytes: int = GMAIL_CLIP_BYTES
    sample_files: list[str] = field(default_factory=list)  # dry run: the .eml samples
    manifest: str | None = None  # dry run: the CSV of every recipient
    first_addresses: list[str] = field(default_factory=list)

    @classmethod
    def for_plan(cls, plan: SendPlan) -> SendSummary:
        return cls(
            issue_id=plan.issue_id,
            transport=plan.transport_kind,
            dry_run=plan.dry_run,
            recipients=plan.recipient_count,
            html_part_bytes=plan.template.encoded_html_size(),
        )

    @property
    def complete(self) -> bool:
        """Every recipient was sent (the CLI's exit 0)."""
        left = self.ledger is not None and self.ledger["pending"] > 0
        return self.stopped is None and self.interrupted is None and not self.failures and not self.unknown and not left

    def note_sent(self, address: str, message_bytes: int) -> None:
        self.sent += 1
        self.largest_message_bytes = max(self.largest_message_bytes, message_bytes)
        if len(self.first_addresses) < FIRST_ADDRESSES_SHOWN:
            self.first_addresses.append(address)

    def to_dict(self) -> dict:
        return {**asdict(self), "complete": self.complete}


def prepare_send(
    issue_path: str | Path,
    config: Config,
    *,
    dry_run: bool,
    test_addresses: Sequence[str] = (),
    templates_dir: str | Path | None = None,
    resend_unknown: bool = False,
    retry_failed: bool = False,
    limit: int | None = None,
    transport_factory: Callable[[], Transport] | None = None,
) -> SendPlan:
    """Parse and render the issue once, build its message template, load the signing key and
    count the recipients. A real send refuses the development signing key; a real send to the
    list also reads the account's quota (through a transport from `transport_factory`, default
    the plan's kind) and what the ledger holds for the issue (changing nothing yet), and refuses
    one that would pass the daily quota."""
    for address in test_addresses:
        check_address("--to", address)
    issue = parse_issue(issue_path)
    rendered = render_issue(issue, config, templates_dir=templates_dir)
    key = load_signing_key(config, allow_development=dry_run)
    plan = SendPlan(
        config=config,
        issue_id=rendered.issue_id,
        subject=rendered.subject,
        paper_count=len(issue.papers),
        template=MessageTemplate(rendered, config),
        links=UnsubscribeLinks(config, key),
        transport_kind="outbox" if dry_run else config.transport,
        recipient_count=len(test_addresses) or _count_subscribed(config),
        test_addresses=tuple(test_addresses),
        development_key=key.is_development,
        resend_unknown=resend_unknown,
        retry_failed=retry_failed,
        limit=limit,
    )
    if plan.list_send:
        plan = _with_ledger_preview(plan, transport_factory or plan.new_transport)
    return plan


def _count_subscribed(config: Config) -> int:
    with Store.open(config.database) as store:
        return store.count_subscribed()


def _with_ledger_preview(plan: SendPlan, new_transport: Callable[[], Transport]) -> SendPlan:
    """`plan` with the account's quota read, and the ledger as the send will find it (nothing is
    written); QuotaError if the send would pass the daily quota."""
    with Store.open(plan.config.database) as store:
        quota = read_quota(new_transport, store)
        preparation, to_send = prepare_ledger(store, plan.ledger_request, quota, commit=False)
    return dataclasses.replace(
        plan, quota=quota, ledger=preparation.counts, found_interrupted=preparation.interrupted, recipient_count=to_send
    )
