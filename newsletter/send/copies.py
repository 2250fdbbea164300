"""The dry run (through the outbox transport) and test copies (--to): a plain loop over the
recipients through one transport, recording nothing in the ledger."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..errors import MessageError, SendError
from ..model import Subscriber
from ..transports.base import AccountStoppedError, Transport
from ..transports.outbox import OutboxTransport
from .plan import Failure, SendPlan, SendSummary, Stop


def send_copies(
    plan: SendPlan,
    summary: SendSummary,
    transport: Transport,
    on_result: Callable[[str, Failure | None], None] | None = None,
) -> None:
    """Send the plan's issue to each recipient in turn through `transport` (closed afterwards),
    filling `summary` in; an account stop ends the loop."""
    try:
        # closing(): a stop ends the store's stream (and its connection) now, not at garbage collection.
        with contextlib.closing(plan.recipients()) as recipients:
            for recipient in recipients:
                failure = _send_one(plan, transport, recipient, summary)
                if summary.stopped:
                    break
                if on_result is not None:
                    on_result(recipient.address, failure)
    finally:
        transport.close()
    if isinstance(transport, OutboxTransport):
        summary.sample_files = [str(path) for path in transport.sample_paths]
        summary.manifest = str(transport.manifest_path)


def _send_one(plan: SendPlan, transport: Transport, recipient: Subscriber, summary: SendSummary) -> Failure | None:
    """Compose and send one recipient's message; their failure is recorded, not raised."""
    try:
        message = plan.message_for(recipient.address, recipient.name, recipient.edition)
        transport.send(message)
    except AccountStoppedError as error:
        summary.note_stop(Stop.account(error))
        return None
    except (SendError, MessageError) as error:  # this recipient only: the others still get theirs
        code, text = getattr(error, "code", None), getattr(error, "message", str(error))
        failure = Failure(recipient.address, type(error).__name__, code, text)
        summary.failures.append(failure)
        return failure
    summary.note_sent(recipient.address, len(message.raw))
    return None
