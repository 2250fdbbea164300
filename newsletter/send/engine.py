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
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
from .processes import WORKER_PROCESS_CONTEXT, WorkerProcesses
from .quota import prepare_ledger
from .sizing import CallLatency, workers_for

PAGE_SIZE = 500  # pending rows read per query while feeding the workers
_POLL_SECONDS = 0.1  # how often a waiting thread looks at the stop flag
_RESIZE_SECONDS = 0.5  # how often the pool is sized to the measured latency


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
    """Why a run ends early; the first reason given wins. `event` is a threading.Event, or a
    multiprocessing one shared by a run's worker processes; `report(kind, reason)`, when set, is
    called with a reason this process gave first (a worker process passes it on to the parent)."""

    def __init__(self, event=None) -> None:
        self.event = event if event is not None else threading.Event()
        self.account_stop: str | None = None  # the provider's words
        self.interrupted: str | None = None  # which signal
        self.report: Callable[[str, str], None] | None = None
        self._lock = threading.Lock()

    def account(self, reason: str) -> None:
        self._give("account_stop", reason)

    def interrupt(self, reason: str) -> None:
        self._give("interrupted", reason)

    def _give(self, kind: str, reason: str) -> None:
        with self._lock:
            first = self.account_stop is None and self.interrupted is None
            if first:
                setattr(self, kind, reason)
            self.event.set()
        if first and self.report is not None:
            self.report(kind, reason)


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


class _InThisProcess:
    """The queue and events of a run whose workers are threads of one process (a multiprocessing
    context stands in for this when the run spans processes)."""

    Queue = queue.Queue
    Event = threading.Event


class BulkSend:
    """One run over an issue's ledger. `run()` returns once every worker has stopped.

    It starts `workers` threads and, from the rate and the call latency it measures, grows to
    `max_workers` (sizing.workers_for); with `processes` > 1 the threads live in that many worker
    processes (processes.py), which take rows from one queue and turns from one shared limiter."""

    def __init__(
        self,
        *,
        database: Path,
        issue_id: str,
        compose: Callable[[Delivery], OutgoingMessage],
        transport_factory: Callable[[], Transport],
        limiter: RateLimiter,
        workers: int,
        max_workers: int | None = None,
        processes: int = 1,
        backoff: Backoff = Backoff(),
        limit: int | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ):
        self.database = database
        self.issue_id = issue_id
        self.compose = compose
        self.transport_factory = transport_factory
        self.limiter = limiter
        self.max_workers = max(workers, max_workers or workers)
        self.processes = processes
        self.backoff = backoff
        self.limit = limit
        self.on_outcome = on_outcome
        self.retries = 0
        self.latency = CallLatency()
        self.parent_pid: int | None = None  # set in a worker process: it stops if the parent dies
        sync = WORKER_PROCESS_CONTEXT if processes > 1 else _InThisProcess
        self.halt = _Halt(sync.Event())
        self._jobs = sync.Queue(maxsize=2 * self.max_workers * processes)
        self._feeding_done = sync.Event()
        self._initial_workers = workers
        self.workers_per_process = 0  # set by WorkerProcesses when the run ends
        self._threads: list[threading.Thread] = []
        self._resized = 0.0
        self._record_lock = threading.Lock()
        self._crash: BaseException | None = None

    @property
    def workers(self) -> int:
        """Worker threads the run used (in each worker process: the most any of them used)."""
        return max(len(self._threads), self.workers_per_process)

    @property
    def account_stop(self) -> str | None:
        return self.halt.account_stop

    @property
    def interrupted(self) -> str | None:
        return self.halt.interrupted

    def run(self, store: Store) -> None:
        """Send the issue's pending rows; `store` is the main thread's (the caller holds the
        send lock and has brought the ledger up to date)."""
        with _stop_on_signals(self.halt):
            if self.processes > 1:
                group = WorkerProcesses(self)  # forks now, before this process starts any thread
                self._feed_then_wait(store, group.wait)
            else:
                self._add_workers(self._initial_workers)
                self._feed_then_wait(store, self._wait_for_workers)
        if self._crash is not None:
            raise self._crash

    def work(self) -> None:
        """A worker process's part: threads that take rows from the shared queue until it is
        empty and fed no more, or the run halts."""
        with _stop_on_signals(self.halt):
            self._add_workers(self._initial_workers)
            self._wait_for_workers()

    def _feed_then_wait(self, store: Store, wait: Callable[[], None]) -> None:
        try:
            self._feed(store)
        except BaseException as error:
            self.halt.interrupt(f"stopped by an error: {type(error).__name__}: {error}")
            raise
        finally:
            self._feeding_done.set()
            wait()

    def _wait_for_workers(self) -> None:
        index = 0
        while index < len(self._threads):  # the list may grow meanwhile
            thread = self._threads[index]
            while thread.is_alive():  # a timed join lets the signal handler run
                thread.join(_POLL_SECONDS)
                self._resize()
            index += 1

    def _add_workers(self, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._work, name=f"send-worker-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()

    def _resize(self) -> None:
        """Start more threads when the calls' measured latency asks for more in flight (Little's
        law); a thread too many only waits for the limiter, so the pool never shrinks."""
        now = time.monotonic()
        if now - self._resized < _RESIZE_SECONDS or self.halt.event.is_set() or self._feeding_done.is_set() and self._jobs.empty():
            return
        self._resized = now
        latency = self.latency.mean()
        if latency is not None and self._threads:
            wanted = workers_for(self.limiter.target_rate / self.processes, latency, ceiling=self.max_workers)
            self._add_workers(wanted - len(self._threads))

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
                        if self.processes == 1:
                            self._resize()
                        continue
                else:
                    return
                after, fed = delivery.id, fed + 1

    def _next_job(self) -> Delivery | None:
        while not self.halt.event.is_set():
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                self.halt.interrupt("the sending process ended; this worker process stops with it")
                break
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
                called = time.monotonic()
                try:
                    result = transport.send(message)
                finally:
                    self.latency.add(time.monotonic() - called)
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
        sizing = plan.sizing(summary.recipients)
        limiter = (RateLimiter.shared(plan.quota.max_send_rate, config.rate_share, context=WORKER_PROCESS_CONTEXT)
                   if sizing.processes > 1 else RateLimiter(plan.quota.max_send_rate, config.rate_share))
        run = BulkSend(
            database=config.database,
            issue_id=plan.issue_id,
            compose=lambda delivery: plan.message_for(delivery.address, delivery.name),
            transport_factory=transport_factory or plan.new_transport,
            limiter=limiter,
            workers=sizing.workers,
            max_workers=sizing.max_workers,
            processes=sizing.processes,
            backoff=backoff,
            limit=plan.limit,
            on_outcome=on_outcome,
        )
        run.run(store)
        summary.ledger = store.delivery_counts(plan.issue_id)
    summary.quota = dataclasses.asdict(plan.quota)
    summary.rate = run.limiter.target_rate
    summary.workers = run.workers
    summary.processes = sizing.processes
    summary.stopped = run.account_stop
    summary.interrupted = run.interrupted
    summary.retries = run.retries
    summary.slow_downs = run.limiter.slow_downs
