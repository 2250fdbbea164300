"""`newsletter sync`: drain the queue into the database.

Each message is parsed, then applied in one transaction together with the record of its id, and
only after that commit deleted from the queue. So a crash (even kill -9) at any point loses
nothing (an undeleted message comes back after the visibility timeout) and applies nothing twice
(a message that comes back is recognised by its id and only deleted). A message that cannot be
parsed or applied is logged with its SQS id and left alone: SQS moves it to the dead-letter queue
after `max_receive_count` receives, and it never holds up the others.

Several receivers call ReceiveMessage at once (SQS answers in 20-50 ms, and hands out at most 10
messages a call); one thread applies what they bring, one SQLite transaction per message, and
each receiver deletes its batch in one DeleteMessageBatch once applied. Apply order does not
matter: the order rule (`apply.py`) gives the same list in any order, as if every event had been
applied at its own time.

A sync is done when the queue has nothing visible and nothing in flight elsewhere: messages that
another sync (or one that was killed, or cut off) received and did not delete are hidden for the
visibility timeout. Ending before they come back would hide those events from whoever relies on
this sync (a send), so it waits them out, up to the visibility timeout, and says how many are
still in flight if they outlast that.

With a backup (`before_delete`, the CLI's wait for S3), a message is deleted only once the change
that applied it is safe there: deleted earlier, a machine lost within the replication lag would
take the change with it while the queue no longer has the message, and the restored list would
mail a reader who bounced, complained or unsubscribed. Applied batches wait for the next call of
`before_delete()`, which covers every batch committed before it, so one wait (a fraction of a
second) serves hundreds of messages and the receivers never stop for it. A message whose delete
waits longer than its visibility timeout comes back, is recognised as applied, and is deleted
then.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue as queues
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..config import Config, EventSettings
from ..errors import ConfigError, NewsletterError, SendError
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
# Receivers at once. Each receives (one call, up to 10 messages), waits for them to be applied and
# deletes them (a second call, made while others receive).
RECEIVERS = 16
# Batches received and not yet applied, at most: at 30 ms a call, 8 bring about 2,200 messages a
# second, more than the sync's CPU carries on one core (bench/sync.py). The bound keeps a received
# message from waiting for the applying thread longer than its visibility timeout, which would
# hand it out again and count it toward the dead-letter queue.
BATCHES_WAITING = 8
# While waiting for messages in flight elsewhere: how often to look again.
IN_FLIGHT_POLL_SECONDS = 0.5


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
    edition_changes: Counter = field(default_factory=Counter)  # readers whose edition changed, by the new one
    notes: list[str] = field(default_factory=list)  # why ignored messages were ignored
    not_deleted: int = 0  # applied, but SQS did not delete them (they come back as duplicates)
    in_flight: int = 0  # still hidden by another reader when the wait for them ended
    waited_seconds: float = 0.0  # how long it waited for messages in flight elsewhere

    def to_dict(self) -> dict:
        return {
            "received": self.received, "applied": dict(sorted(self.applied.items())),
            "duplicates": self.duplicates, "unmatched": self.unmatched,
            "malformed": [{"sqs_id": m.sqs_id, "receive_count": m.receive_count, "reason": m.reason}
                          for m in self.malformed],
            "list_changes": dict(sorted(self.list_changes.items())),
            "edition_changes": dict(sorted(self.edition_changes.items())), "not_deleted": self.not_deleted,
            "in_flight": self.in_flight, "waited_seconds": round(self.waited_seconds, 1),
            "notes": self.notes,
        }

    def count(self, outcome: Outcome) -> None:
        self.applied[outcome.kind] += 1
        self.unmatched += not outcome.matched
        for change in outcome.changes:
            self.list_changes[change.after] += 1
        if outcome.edition:
            self.edition_changes[outcome.edition] += 1
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
    receivers: int = RECEIVERS,
    on_wait: Callable[[int, int], None] | None = None,
    before_delete: Callable[[], object] | None = None,
) -> SyncSummary:
    """Receive, apply and delete until the queue has nothing new and nothing in flight elsewhere
    (waited for up to the visibility timeout); `on_wait(messages, seconds)` when it starts waiting.
    `before_delete()`, if given, must return only once every change committed before it was called
    is safe (the backup holds it), and raise otherwise: no message is deleted before it has
    returned after that message's commit, and the sync stops with its error."""
    settings = settings_of(config)
    own_queue = queue is None
    queue = queue or EventQueue(settings)
    summary = SyncSummary()
    try:
        with Store.open(config.database) as store:
            run = _Run(queue, store, Applier(store, settings, inbound_signer(config)), summary, receivers,
                       before_delete)
            try:
                run.until_nothing_in_flight(settings, on_wait)
            finally:
                run.release_left_alone()
            with store.transaction():
                now = dt.datetime.now(dt.UTC)
                event_table.record_sync(store.connection, now, sum(summary.applied.values()))
                event_table.forget_applied_before(store.connection, now - APPLIED_IDS_KEPT)
    finally:
        if own_queue:
            queue.close()
    return summary


def refuse_if_in_flight(summary: SyncSummary, settings: EventSettings) -> None:
    """The send's gate: no list send while events it may concern are still in flight."""
    if summary.in_flight:
        raise SendError(
            f"not sending: {summary.in_flight} event(s) are still in flight on queue {settings.queue!r} after "
            f"waiting {summary.waited_seconds:.0f} s (another sync holds them, or one that stopped before deleting "
            f"them; they come back when its visibility timeout ends): try again in {settings.visibility_timeout} s, "
            "or send without the feedback with --no-sync"
        )


_DONE = object()  # a receiver's last word on the work queue


class _Reply:
    """What the applying thread says about one batch: the messages to delete (None: stop)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self.deletable: list[Received] | None = None

    def give(self, deletable: list[Received] | None) -> None:
        self.deletable = deletable
        self._ready.set()

    def wait(self) -> list[Received] | None:
        self._ready.wait()
        return self.deletable


class _Run:
    """One sync: receiver threads hand batches to the calling thread, which applies them (its
    SQLite connection stays in that thread) and hands back what may be deleted."""

    def __init__(self, queue: EventQueue, store: Store, applier: Applier, summary: SyncSummary, receivers: int,
                 before_delete: Callable[[], object] | None = None):
        self.queue, self.store, self.applier, self.summary = queue, store, applier, summary
        self.receivers = max(1, receivers)
        self.before_delete = before_delete
        self.deferred: _DeleteAfterBarrier | None = None  # while draining with a barrier
        self.work: queues.Queue = queues.Queue()
        self.stop = threading.Event()
        self.waiting = threading.BoundedSemaphore(BATCHES_WAITING)  # received, not yet applied
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.left_alone: dict[str, Received] = {}  # malformed, by SQS id: the latest receipt of each
        self.hidden_until: dict[str, float] = {}  # our own undeleted messages -> when SQS shows them again
        queue.url  # noqa: B018 - look the queue up (and make its client) before the threads share it

    def until_nothing_in_flight(self, settings: EventSettings, on_wait: Callable[[int, int], None] | None) -> None:
        started = deadline = None
        while True:
            # While waiting, one receiver looks for what comes back (it drains all of it).
            self.drain(1 if deadline else self.receivers)
            elsewhere = self.in_flight_elsewhere()
            now = time.monotonic()
            if elsewhere == 0:
                break
            if deadline is None:
                started, deadline = now, now + settings.visibility_timeout + IN_FLIGHT_POLL_SECONDS
                if on_wait is not None:
                    on_wait(elsewhere, settings.visibility_timeout)
            if now >= deadline:
                self.summary.in_flight = elsewhere
                break
            time.sleep(min(IN_FLIGHT_POLL_SECONDS, deadline - now))
        if started is not None:
            self.summary.waited_seconds = time.monotonic() - started

    def in_flight_elsewhere(self) -> int:
        """Messages hidden by other readers: SQS's count of messages in flight, less our own
        undeleted ones (SQS's count is approximate: never below zero)."""
        now = time.monotonic()
        with self.lock:
            ours = sum(1 for until in self.hidden_until.values() if until > now)
        return max(0, self.queue.in_flight() - ours)

    def drain(self, receivers: int) -> None:
        """Receive until every receiver has met an empty queue; apply in this thread."""
        threads = [threading.Thread(target=self._receive, name=f"sync-receiver-{n}", daemon=True)
                   for n in range(receivers)]
        if self.before_delete is not None:
            self.deferred = _DeleteAfterBarrier(self.before_delete, self._delete, self._fail, receivers)
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                item = self.work.get()
                if item is _DONE:
                    running -= 1
                    continue
                batch, reply = item
                if self.stop.is_set():
                    reply.give(None)
                    continue
                try:
                    # One commit for the batch, each message a part that stands or falls alone.
                    with self.store.transaction():
                        deletable = [m for m in batch if self._apply_one(m)]
                    reply.give(deletable)
                except BaseException:
                    reply.give(None)
                    raise
        except BaseException:
            self._stop_receivers(running)
            if self.deferred is not None:
                self.deferred.finish(delete=False)  # what waits comes back, recognised as applied
            raise
        for thread in threads:
            thread.join()
        if self.deferred is not None:
            # The last group: deleted before anyone counts what is still in flight.
            self.deferred.finish(delete=not self.errors)
            self.deferred = None
        if self.errors:
            raise self.errors[0]

    def _stop_receivers(self, running: int) -> None:
        """Tell every receiver to stop and answer what they still bring, until each has ended
        (what they received and did not apply comes back after the visibility timeout)."""
        self.stop.set()
        while running:
            item = self.work.get()
            if item is _DONE:
                running -= 1
            else:
                item[1].give(None)

    def _receive(self) -> None:
        try:
            while not self.stop.is_set():
                with self.waiting:
                    batch = self.queue.receive()
                    hidden_until = time.monotonic() + self.queue.settings.visibility_timeout
                    with self.lock:
                        for message in batch:
                            if message.sqs_id in self.left_alone:
                                self.left_alone[message.sqs_id] = message
                                self.hidden_until[message.sqs_id] = hidden_until
                        fresh = [m for m in batch if m.sqs_id not in self.left_alone]
                    if not fresh:
                        return
                    reply = _Reply()
                    self.work.put((fresh, reply))
                    deletable = reply.wait()
                if deletable is None:
                    return
                if deletable and self.deferred is not None:
                    self.deferred.add(deletable, hidden_until)
                elif deletable:
                    self._delete(deletable, hidden_until)
        except BaseException as error:
            self._fail(error)
        finally:
            self.work.put(_DONE)

    def _delete(self, messages: list[Received], hidden_until: float) -> None:
        failed = self.queue.delete(messages)
        with self.lock:
            self.summary.not_deleted += len(failed)
            self.hidden_until.update(dict.fromkeys(failed, hidden_until))

    def _fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.stop.set()

    def _apply_one(self, message: Received) -> bool:
        """Apply one message (a part of the batch's transaction); True if it may be deleted once
        that commits."""
        summary = self.summary
        summary.received += 1
        try:
            outcome = apply_once(self.store, self.applier, parse_message(message.body, message.sqs_id))
        except MalformedMessage as error:
            self._leave_alone(message, str(error))
            return False
        except NewsletterError:
            raise  # the database (locked, read-only, full): no message can be applied now
        except Exception as error:  # noqa: BLE001 - one message's surprise must not stop the others
            self._leave_alone(message, f"cannot be applied ({type(error).__name__}: {error})")
            return False
        if outcome is None:
            summary.duplicates += 1
        else:
            summary.count(outcome)
        return True

    def _leave_alone(self, message: Received, reason: str) -> None:
        with self.lock:
            self.left_alone[message.sqs_id] = message
            self.hidden_until[message.sqs_id] = time.monotonic() + self.queue.settings.visibility_timeout
        self.summary.malformed.append(Malformed(message.sqs_id, message.receive_count, reason))
        log.warning("message %s (received %d times) left for the dead-letter queue: %s",
                    message.sqs_id, message.receive_count, reason)

    def release_left_alone(self) -> None:
        """Make the messages left alone visible again now: they are not in flight (a send after
        this sync need not wait for them); the next sync receives them again, counting toward the
        dead-letter queue."""
        if self.left_alone:
            self.queue.release(list(self.left_alone.values()))


class _DeleteAfterBarrier:
    """Applied batches wait here for the barrier (the backup's wait), then are deleted. One thread
    takes every batch waiting, calls the barrier once for all of them (they were committed before
    it was called) and deletes them, several DeleteMessageBatch calls at once; batches applied in
    the meantime wait for the next call. A barrier that raises stops the sync and deletes nothing
    more."""

    def __init__(self, barrier: Callable[[], object], delete: Callable[[list[Received], float], None],
                 fail: Callable[[BaseException], None], deleters: int):
        self.barrier, self.delete, self.fail = barrier, delete, fail
        self.waiting: list[tuple[list[Received], float]] = []
        self.condition = threading.Condition()
        self.ending = False
        self.deleting = True
        self.pool = ThreadPoolExecutor(max(1, deleters), thread_name_prefix="sync-deleter")
        self.thread = threading.Thread(target=self._loop, name="sync-barrier", daemon=True)
        self.thread.start()

    def add(self, messages: list[Received], hidden_until: float) -> None:
        """Messages whose applying transaction has committed."""
        with self.condition:
            self.waiting.append((messages, hidden_until))
            self.condition.notify()

    def finish(self, *, delete: bool) -> None:
        """Delete what waits (after one more barrier), or with `delete=False` leave it to come back;
        return once the thread has ended."""
        with self.condition:
            self.ending, self.deleting = True, self.deleting and delete
            self.condition.notify()
        self.thread.join()
        self.pool.shutdown()

    def _loop(self) -> None:
        while True:
            with self.condition:
                while not self.waiting and not self.ending:
                    self.condition.wait()
                if not self.waiting or not self.deleting:
                    return
                group, self.waiting = self.waiting, []
            try:
                self.barrier()
                # Each item is at most one receive's batch: one DeleteMessageBatch call each.
                for done in [self.pool.submit(self.delete, *item) for item in group]:
                    done.result()
            except BaseException as error:  # noqa: BLE001 - handed to the sync, which raises it
                with self.condition:
                    self.deleting = False
                self.fail(error)
                return
