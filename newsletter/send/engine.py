"""The reliable list send: the issue's ledger rows, worker threads, one shared rate limiter.

    main thread: bring the ledger up to date, then feed pending rows into a small queue
    N workers:   compose -> limiter turn -> claim the row (`sending`, committed) -> one call ->
                 record the outcome (committed) -> next row

Each worker has its own transport (its own HTTP or SMTP connection) and its own SQLite connection.
What happens to a row depends only on the error class the transport raised:

    RetryableSendError      back to `pending`, limiter slowed, retried after a full-jitter backoff;
                            `failed` once the attempts run out
    RecipientRejectedError  `failed`; the run goes on
    OutcomeUnknownError     `unknown`; never sent again unless the editor asks (--resend-unknown)
    AccountStoppedError     back to `pending`; the run stops: calls in flight finish and are
                            recorded, every other row stays `pending` for a later run

SIGINT and SIGTERM stop a run the same way, so an interrupted run leaves no row `sending`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import MessageError
from ..model import Delivery
from ..ratelimit import Backoff, RateLimiter
from ..store import Store
from ..transports.base import (
    AccountStoppedError,
    OutcomeUnknownError,
    OutgoingMessage,
    RecipientRejectedError,
    RetryableSendError,
    Transport,
)
from .plan import Failure, SendPlan, SendSummary
from .quota import prepare_ledger

PAGE_SIZE = 500  # pending rows read per query while feeding the workers
_POLL_SECONDS = 0.1  # how often a waiting thread looks at the stop flag


@dataclass(frozen=True)
class Outcome:
    """What became of one row in this run (for the summary and the progress bar)."""

    delivery: Delivery
    state: str  # sent | failed | unknown | skipped
    error_kind: str | None = None
    error_code: str | None = None
    error: str | None = None
    message_bytes: int = 0


class _Halt:
    """Why a run ends early; the first reason given wins."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.account_stop: str | None = None  # the provider's words
        self.interrupted: str | None = None  # which signal
        self._lock = threading.Lock()

    def account(self, reason: str) -> None:
        with self._lock:
            if not self.event.is_set():
                self.account_stop = reason
            self.event.set()

    def interrupt(self, reason: str) -> None:
        with self._lock:
            if not self.event.is_set():
                self.interrupted = reason
            self.event.set()


@contextlib.contextmanager
def _stop_on_signals(halt: _Halt) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run cleanly instead of killing it mid-call."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(number, _frame):
        halt.interrupt(f"interrupted by {signal.Signals(number).name}")

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class BulkSend:
    """One run over an issue's ledger. `run()` returns once every worker has stopped."""

    def __init__(
        self,
        *,
        database: Path,
        issue_id: str,
        compose: Callable[[Delivery], OutgoingMessage],
        transport_factory: Callable[[], Transport],
        limiter: RateLimiter,
        workers: int,
        backoff: Backoff = Backoff(),
        limit: int | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ):
        self.database = database
        self.issue_id = issue_id
        self.compose = compose
        self.transport_factory = transport_factory
        self.limiter = limiter
        self.workers = workers
        self.backoff = backoff
        self.limit = limit
        self.on_outcome = on_outcome
        self.halt = _Halt()
        self.retries = 0
        self._jobs: queue.Queue[Delivery] = queue.Queue(maxsize=2 * workers)
        self._feeding_done = threading.Event()
        self._record_lock = threading.Lock()
        self._crash: BaseException | None = None

    @property
    def account_stop(self) -> str | None:
        return self.halt.account_stop

    @property
    def interrupted(self) -> str | None:
        return self.halt.interrupted

    def run(self, store: Store) -> None:
        """Send the issue's pending rows; `store` is the main thread's (the caller holds the
        send lock and has brought the ledger up to date)."""
        threads = [threading.Thread(target=self._work, name=f"send-worker-{n}") for n in range(self.workers)]
        with _stop_on_signals(self.halt):
            for thread in threads:
                thread.start()
            try:
                self._feed(store)
            except BaseException as error:
                self.halt.interrupt(f"stopped by an error: {type(error).__name__}: {error}")
                raise
            finally:
                self._feeding_done.set()
                for thread in threads:
                    while thread.is_alive():  # a timed join lets the signal handler run
                        thread.join(_POLL_SECONDS)
        if self._crash is not None:
            raise self._crash

    def _feed(self, store: Store) -> None:
        after, fed = 0, 0
        while not self.halt.event.is_set():
            page = store.pending_deliveries(self.issue_id, after_id=after, limit=PAGE_SIZE)
            if not page:
                return
            for delivery in page:
                if self.limit is not None and fed >= self.limit:
                    return
                while not self.halt.event.is_set():
                    try:
                        self._jobs.put(delivery, timeout=_POLL_SECONDS)
                        break
                    except queue.Full:
                        continue
                else:
                    return
                after, fed = delivery.id, fed + 1

    def _next_job(self) -> Delivery | None:
        while not self.halt.event.is_set():
            try:
                return self._jobs.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._feeding_done.is_set() and self._jobs.empty():
                    return None
        return None  # rows still queued stay `pending` in the ledger

    def _work(self) -> None:
        try:
            transport = self.transport_factory()
            try:
                with Store.open(self.database) as store:
                    while (delivery := self._next_job()) is not None:
                        self._deliver(delivery, transport, store)
            finally:
                transport.close()
        except BaseException as error:  # a bug or a broken database: stop the others too
            with self._record_lock:
                self._crash = self._crash or error
            self.halt.interrupt(f"stopped by an error: {type(error).__name__}: {error}")

    def _deliver(self, delivery: Delivery, transport: Transport, store: Store) -> None:
        try:
            message = self.compose(delivery)
        except MessageError as error:
            store.fail_unsent_delivery(delivery.id, error)
            self._record(Outcome(delivery, "failed", type(error).__name__, None, str(error)))
            return
        for attempt in range(1, self.backoff.attempts + 1):
            started_at = self.limiter.acquire(self.halt.event)
            if started_at is None:
                return  # stopped while waiting: the row was never claimed and stays pending
            state = store.claim_delivery(delivery.id, started_at)
            if state != "sending":  # left the list since it was queued (or another run took it)
                self._record(Outcome(delivery, state))
                return
            try:
                result = transport.send(message)
            except RetryableSendError as error:
                self.limiter.slow_down()
                if attempt == self.backoff.attempts:
                    self._finish(store, delivery, "failed", error, message)
                    return
                store.finish_delivery(delivery.id, "pending", error=error)
                with self._record_lock:
                    self.retries += 1
                if self.halt.event.wait(self.backoff.delay(attempt)):
                    return
            except RecipientRejectedError as error:
                self._finish(store, delivery, "failed", error, message)
                return
            except OutcomeUnknownError as error:
                self._finish(store, delivery, "unknown", error, message)
                return
            except AccountStoppedError as error:
                store.finish_delivery(delivery.id, "pending", error=error)  # SES refused: nothing went out
                self.halt.account(str(error))
                return
            except BaseException as error:
                # Not an answer the transport understood: the request may have gone out.
                store.finish_delivery(delivery.id, "unknown", error=error)
                raise
            else:
                store.finish_delivery(delivery.id, "sent", message_id=result.message_id)
                self._record(Outcome(delivery, "sent", message_bytes=len(message.raw)))
                return

    def _finish(self, store: Store, delivery: Delivery, state: str, error, message: OutgoingMessage) -> None:
        store.finish_delivery(delivery.id, state, error=error)
        self._record(Outcome(delivery, state, type(error).__name__, error.code, error.message, len(message.raw)))

    def _record(self, outcome: Outcome) -> None:
        if self.on_outcome is not None:
            with self._record_lock:  # the callback (a progress bar) need not be thread-safe
                self.on_outcome(outcome)


def worker_count(config: Config, recipients: int) -> int:
    """How many worker threads a run uses: the configured number, but no idle clients for a short
    list."""
    return max(1, min(config.workers, recipients))


def send_to_list(
    plan: SendPlan,
    summary: SendSummary,
    *,
    transport_factory: Callable[[], Transport] | None = None,
    backoff: Backoff = Backoff(),
    on_result: Callable[[str, Failure | None], None] | None = None,
) -> None:
    """The real send of `plan` to the list, filling `summary` in.

    Holds the database's send lock throughout: brings the ledger up to date, checks the daily
    quota against what is pending now, then runs the workers."""
    config = plan.config

    def on_outcome(outcome: Outcome) -> None:
        failure = None
        if outcome.state == "sent":
            summary.note_sent(outcome.delivery.address, outcome.message_bytes)
        elif outcome.state == "skipped":
            summary.skipped += 1
        else:
            failure = Failure(outcome.delivery.address, outcome.error_kind or "", outcome.error_code, outcome.error or "")
            (summary.unknown if outcome.state == "unknown" else summary.failures).append(failure)
        if on_result is not None:
            on_result(outcome.delivery.address, failure)

    with Store.open(config.database) as store, store.send_lock():
        preparation, summary.recipients = prepare_ledger(store, plan.ledger_request, plan.quota, commit=True)
        summary.found_interrupted = preparation.interrupted
        run = BulkSend(
            database=config.database,
            issue_id=plan.issue_id,
            compose=lambda delivery: plan.message_for(delivery.address, delivery.name),
            transport_factory=transport_factory or plan.new_transport,
            limiter=RateLimiter(plan.quota.max_send_rate, config.rate_share),
            workers=worker_count(config, summary.recipients),
            backoff=backoff,
            limit=plan.limit,
            on_outcome=on_outcome,
        )
        run.run(store)
        summary.ledger = store.delivery_counts(plan.issue_id)
    summary.quota = dataclasses.asdict(plan.quota)
    summary.rate = run.limiter.target_rate
    summary.workers = run.workers
    summary.stopped = run.account_stop
    summary.interrupted = run.interrupted
    summary.retries = run.retries
    summary.slow_downs = run.limiter.slow_downs
