"""`newsletter sync`: drain the queue into the database.

Each message is parsed, then applied in one transaction together with the record of its id, and
only after that commit deleted from the queue. So a crash (even kill -9) at any point loses
nothing (an undeleted message comes back after the visibility timeout) and applies nothing twice
(a message that comes back is recognised by its id and only deleted). A message that cannot be
parsed is logged with its SQS id and left alone: SQS moves it to the dead-letter queue after
`max_receive_count` receives, and it never holds up the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Config
from ..errors import ConfigError
from ..store import Store
from ..store import events as event_table
from ..unsubscribe import TokenSigner, load_signing_key
from .apply import Applier, Outcome, apply_once
from .parse import MalformedMessage, parse_message
from .queue import EventQueue, Received, settings_of

log = logging.getLogger("newsletter.events")
# A library logs; the CLI prints the same from the summary, so nothing reaches stderr twice.
log.addHandler(logging.NullHandler())

# Applied ids are kept longer than SQS keeps any message (14 days at most).
APPLIED_IDS_KEPT = dt.timedelta(days=30)


@dataclass(frozen=True)
class Malformed:
    sqs_id: str
    receive_count: int
    reason: str


@dataclass
class SyncSummary:
    received: int = 0  # messages handed out by SQS (each counted once per run)
    applied: Counter = field(default_factory=Counter)  # by kind: bounce, complaint, unsubscribe, ...
    duplicates: int = 0  # already applied before (a redelivery, or a kill between commit and delete)
    malformed: list[Malformed] = field(default_factory=list)  # left on the queue for the dead-letter queue
    unmatched: int = 0  # SES reports about messages not in the ledger (test copies, other senders)
    list_changes: Counter = field(default_factory=Counter)  # subscribers moved, by their new status
    notes: list[str] = field(default_factory=list)  # why ignored messages were ignored
    not_deleted: int = 0  # applied, but SQS did not delete them (they come back as duplicates)

    def to_dict(self) -> dict:
        return {
            "received": self.received, "applied": dict(sorted(self.applied.items())),
            "duplicates": self.duplicates, "unmatched": self.unmatched,
            "malformed": [{"sqs_id": m.sqs_id, "receive_count": m.receive_count, "reason": m.reason}
                          for m in self.malformed],
            "list_changes": dict(sorted(self.list_changes.items())), "not_deleted": self.not_deleted,
            "notes": self.notes,
        }

    def count(self, outcome: Outcome) -> None:
        self.applied[outcome.kind] += 1
        self.unmatched += not outcome.matched
        for change in outcome.changes:
            self.list_changes[change.after] += 1
        if outcome.note:
            self.notes.append(outcome.note)


def inbound_signer(config: Config) -> TokenSigner | None:
    """The list's token checker, if this machine has the real key (never the public development
    key: anyone could make tokens with it)."""
    try:
        return TokenSigner(config.list_id, load_signing_key(config, allow_development=False))
    except ConfigError:
        return None


def sync(
    config: Config,
    *,
    queue: EventQueue | None = None,
    on_batch: Callable[[SyncSummary], None] | None = None,
) -> SyncSummary:
    """Receive, apply and delete until the queue has nothing new; `on_batch` after each batch."""
    settings = settings_of(config)
    own_queue = queue is None
    queue = queue or EventQueue(settings)
    summary = SyncSummary()
    left_alone: set[str] = set()  # malformed ones seen this run: do not log them again
    try:
        with Store.open(config.database) as store:
            applier = Applier(store, settings, inbound_signer(config))
            while True:
                batch = [m for m in queue.receive() if m.sqs_id not in left_alone]
                if not batch:
                    break
                done = [m for m in batch if _apply_one(store, applier, m, summary, left_alone)]
                summary.not_deleted += len(queue.delete(done))
                if on_batch is not None:
                    on_batch(summary)
            with store.transaction():
                now = dt.datetime.now(dt.UTC)
                event_table.record_sync(store.connection, now, sum(summary.applied.values()))
                event_table.forget_applied_before(store.connection, now - APPLIED_IDS_KEPT)
    finally:
        if own_queue:
            queue.close()
    return summary


def _apply_one(store: Store, applier: Applier, message: Received, summary: SyncSummary, left_alone: set[str]) -> bool:
    """Apply one message in its own transaction; True if it may now be deleted."""
    summary.received += 1
    try:
        outcome = apply_once(store, applier, parse_message(message.body, message.sqs_id))
        if outcome is None:
            summary.duplicates += 1
            return True
    except MalformedMessage as error:
        left_alone.add(message.sqs_id)
        summary.malformed.append(Malformed(message.sqs_id, message.receive_count, str(error)))
        log.warning("message %s (received %d times) left for the dead-letter queue: %s",
                    message.sqs_id, message.receive_count, error)
        return False
    summary.count(outcome)
    return True
