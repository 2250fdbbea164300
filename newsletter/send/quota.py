"""The account's daily quota, and the issue's ledger as a send will find it.

Both the plan (a preview that writes nothing) and the engine (which commits the same changes under
the send lock) go through `prepare_ledger`, so what the editor is shown is what the run does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..errors import QuotaError
from ..store import Store
from ..store.ledger import IssueVersion, Preparation
from ..transports.base import SendQuota, Transport


def daily_allowance(quota: SendQuota) -> int | None:
    """How many more messages the account may send in the next 24 hours; None: no limit."""
    if quota.max_24h_send < 0:
        return None
    return max(0, quota.max_24h_send - quota.sent_last_24h)


def check_daily_quota(quota: SendQuota, to_send: int) -> None:
    allowance = daily_allowance(quota)
    if allowance is not None and to_send > allowance:
        raise QuotaError(
            f"this send needs {to_send} messages but the daily quota allows {allowance} more now "
            f"(Max24HourSend {quota.max_24h_send}, sent in the last 24 hours {quota.sent_last_24h}, "
            f"from {quota.source}); send {allowance} now with --limit {allowance} and the rest "
            "later, or wait for the quota",
            allowance=allowance,
        )


def read_quota(new_transport: Callable[[], Transport], store: Store) -> SendQuota:
    """The account's limits from the provider; where it cannot tell, the config's limits with
    the ledger's own count of what was sent in the last 24 hours."""
    transport = new_transport()
    try:
        quota = transport.quota()
    finally:
        transport.close()
    if quota.source == "config":
        quota = dataclasses.replace(quota, sent_last_24h=store.sent_in_last_24h(), source="config and the ledger")
    return quota


@dataclasses.dataclass(frozen=True)
class LedgerRequest:
    """What the editor asked of the ledger for this run."""

    issue_id: str
    version: IssueVersion  # what is about to be sent
    resend_unknown: bool = False  # send `unknown` rows again (they may get a second copy)
    retry_failed: bool = False  # send `failed` rows again
    limit: int | None = None  # send at most this many now; the rest stay pending
    send_changed_version: bool = False  # rows were sent another version: send this one to the rest


def prepare_ledger(store: Store, request: LedgerRequest, quota: SendQuota, *, commit: bool) -> tuple[Preparation, int]:
    """Bring the issue's ledger up to date (or see what that would do, commit=False) and check
    that what is to be sent now fits the daily quota. Returns the preparation and that number."""
    preparation = store.prepare_issue(
        request.issue_id,
        resend_unknown=request.resend_unknown,
        retry_failed=request.retry_failed,
        version=request.version,
        allow_changed_version=request.send_changed_version,
        commit=commit,
    )
    to_send = preparation.pending if request.limit is None else min(request.limit, preparation.pending)
    check_daily_quota(quota, to_send)
    return preparation, to_send
