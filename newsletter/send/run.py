"""`send_issue`: a real send to the list goes through the ledger-driven engine; a dry run and
test copies through the plain loop that records nothing."""

from __future__ import annotations

from collections.abc import Callable

from ..ratelimit import Backoff
from ..transports.base import Transport
from .copies import send_copies
from .engine import send_to_list
from .plan import Failure, SendPlan, SendSummary


def send_issue(
    plan: SendPlan,
    *,
    transport: Transport | None = None,
    transport_factory: Callable[[], Transport] | None = None,
    backoff: Backoff | None = None,
    on_result: Callable[[str, Failure | None], None] | None = None,
) -> SendSummary:
    """Send the plan's issue. Per-recipient failures are collected and the send goes on; an
    account-level stop ends it. `on_result(address, failure_or_None)` is called after each
    recipient (the CLI's progress bar), from the worker threads in a list send.

    A list send runs the engine with one transport per worker from `transport_factory` (default:
    the plan's kind) and `backoff` between retries; a dry run or test copies go through
    `transport` in a plain loop."""
    summary = SendSummary.for_plan(plan)
    if plan.list_send:
        send_to_list(plan, summary, transport_factory=transport_factory, backoff=backoff or Backoff(), on_result=on_result)
    else:
        send_copies(plan, summary, transport or plan.new_transport(), on_result)
    return summary
