"""The reliable list send: the issue's ledger rows, worker threads, one shared rate limiter.

    main thread: bring the ledger up to date, then feed pending rows into a small queue
    N workers:   compose -> limiter turn -> claim the row (`sending`, committed) -> one call ->
                 record the outcome (committed) -> next row

Each worker has its own transport (its own HTTP or SMTP connection) and its own SQLite connection.
What happens to a row depends only on the error class the transport raised:

    UnreachableError        back to `pending`, retried after a full-jitter backoff for as long as
                            the outage budget allows (counted from the first failure while no call
                            gets through); then the run stops
    RetryableSendError      back to `pending`, limiter slowed, retried after a full-jitter backoff;
                            if the attempts run out the run stops (the provider is in trouble)
    RecipientDeferredError  back to `pending`, retried like the above; if the attempts run out the
                            row waits for the next run and this run goes on
    RecipientRejectedError  `failed`; the run goes on
    OutcomeUnknownError     `unknown`; never sent again unless the editor asks (--resend-unknown)
    AccountStoppedError     back to `pending`; the run stops

A run that stops lets calls in flight finish and be recorded; every other row stays `pending` for
the next run, so nobody is `failed` for a reason that is not about their address. SIGINT and
SIGTERM stop a run the same way, so an interrupted run leaves no row `sending`. A database that
stays locked or becomes unwritable stops the run too (`StoreError`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MessageError, SendError, StoreError
from ..model import Delivery
from ..ratelimit import Backoff, RateLimiter
from ..store import Store
from ..transports import transport_factory as new_transports
from ..transports.base import (
    AccountStoppedError,
    OutcomeUnknownError,
    OutgoingMessage,
    RecipientDeferredError,
    RecipientRejectedError,
    RetryableSendError,
    Transport,
    UnreachableError,
)
from .plan import Failure, SendPlan, SendSummary, Stop
from .processes import ENDED, WORKER_PROCESS_CONTEXT, Report, WorkerProcesses
from .quota import prepare_ledger
from .sizing import CpuWaits, PoolGrowth, RecentMean

PAGE_SIZE = 500  # pending rows read per query while feeding the workers
_POLL_SECONDS = 0.1  # how often a waiting thread looks at the stop flag


# How long a worker keeps trying to record an outcome while the database is locked by another
# program: a row left `sending` would become `unknown` although its outcome is known.
RECORD_PATIENCE_SECONDS = 120


@dataclass(frozen=True)
class Outcome:
    """What became of one row in this run (for the summary and the progress bar)."""

    delivery: Delivery
    state: str  # sent | failed | unknown | skipped | deferred (pending for the next run) | taken (another run's)
    error_kind: str | None = None
    error_code: str | None = None
    error: str | None = None
    message_bytes: int = 0


class _Halt:
    """Why a run ends early; the first reason given wins. `report(kind, reason)`, when set, is
    called with a reason this process gave first (a worker process passes it on to the parent).

    `shared`, a byte in shared memory, is the flag of a run that spans processes. The workers
    wait on `event`, this process's own: a multiprocessing Event takes a lock shared by every
    process at each look (with one, two processes sent 266/s at a set 500/s on a loaded machine;
    without, 450 to 490/s). `follow_shared()` brings a halt given in another process into this
    one; it reads one byte, so a worker calls it before each claim, and the main thread every
    poll (for threads that are waiting)."""

    def __init__(self, shared=None) -> None:
        self.event = threading.Event()
        self.shared = shared
        self.stop: Stop | None = None
        self.interrupted: str | None = None  # which signal, or the error that ended the run
        self.report: Callable[[str, Stop | str], None] | None = None
        self._lock = threading.Lock()

    def stop_for(self, stop: Stop) -> None:
        self._give("stop", stop)

    def interrupt(self, reason: str) -> None:
        self._give("interrupted", reason)

    def _give(self, kind: str, reason: Stop | str) -> None:
        with self._lock:
            first = self.stop is None and self.interrupted is None
            if first:
                setattr(self, kind, reason)
            self.event.set()
        if self.shared is not None:
            self.shared.value = 1
        if first and self.report is not None:
            self.report(kind, reason)

    def follow_shared(self) -> bool:
        """Whether the run is halting, in this process or another."""
        if self.shared is not None and self.shared.value and not self.event.is_set():
            self.event.set()
        return self.event.is_set()


class _Outage:
    """Since when no call has got through to the provider (shared by the workers): a call that
    reaches it, whatever its answer, ends the outage."""

    def __init__(self, budget_seconds: float):
        self.budget_seconds = budget_seconds
        self._since: float | None = None
        self._lock = threading.Lock()

    def failed(self) -> float:
        """Note a call that could not reach the provider; seconds the outage has lasted."""
        with self._lock:
            now = time.monotonic()
            if self._since is None:
                self._since = now
            return now - self._since

    def reached(self) -> None:
        with self._lock:
            self._since = None


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


class _Waits:
    """Seconds one worker spent on its message waiting for a turn or a retry: not part of the
    message's cycle, which is what sizes the pool."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def turn(self, limiter: RateLimiter, stop: threading.Event) -> dt.datetime | None:
        began = time.monotonic()
        try:
            return limiter.acquire(stop)
        finally:
            self.seconds += time.monotonic() - began

    def pause(self, stop: threading.Event, seconds: float) -> bool:
        """Wait `seconds` before a retry; True if the run halted meanwhile."""
        began = time.monotonic()
        try:
            return stop.wait(seconds)
        finally:
            self.seconds += time.monotonic() - began


class BulkSend:
    """One run over an issue's ledger. `run()` returns once every worker has stopped.

    It starts `workers` threads and, from the rate and each message's cycle it measures (compose,
    claim, call, record: all but the waits for a turn), grows to `max_workers`
    (sizing.workers_for); with `processes` > 1 the threads live in that many worker processes
    (processes.py), which take rows from one queue and turns from one shared limiter, and each
    sizes its own pool. Each process keeps its own outage clock; a stop in any of them stops all."""

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
        outage_budget_seconds: float = 300.0,
        version_id: int | None = None,
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
        self.outage = _Outage(outage_budget_seconds)
        self.version_id = version_id
        self.limit = limit
        self.on_outcome = on_outcome
        self.retries = 0
        self.cycle = RecentMean()  # a message's time in this process's workers, waits left out
        self.call_latency = RecentMean()  # the provider call's part of it
        self.parent_pid: int | None = None  # set before forking: a worker process stops if it dies
        sync = WORKER_PROCESS_CONTEXT if processes > 1 else _InThisProcess
        self.halt = _Halt(WORKER_PROCESS_CONTEXT.RawValue("b", 0) if processes > 1 else None)
        self._jobs = sync.Queue(maxsize=2 * self.max_workers * processes)
        self._feeding_done = sync.Event()
        self._initial_workers = workers
        self.workers_per_process = 0  # the most any worker process used, as they report their end
        self._threads: list[threading.Thread] = []
        self._cpu_waits = CpuWaits()  # of this process's worker threads
        self._growth = PoolGrowth(processes=processes, max_workers=self.max_workers, now=time.monotonic(),
                                  cpu=time.process_time(), grants=limiter.grants)
        self._record_lock = threading.Lock()
        self._crash: BaseException | None = None

    @property
    def workers(self) -> int:
        """Worker threads the run used (in each worker process: the most any of them used)."""
        return max(len(self._threads), self.workers_per_process)

    @property
    def stop(self) -> Stop | None:
        return self.halt.stop

    @property
    def interrupted(self) -> str | None:
        return self.halt.interrupted

    def run(self, store: Store) -> None:
        """Send the issue's pending rows; `store` is the main thread's (the caller holds the
        send lock and has brought the ledger up to date)."""
        with _stop_on_signals(self.halt):
            if self.processes > 1:
                self.parent_pid = os.getpid()  # the worker processes stop if this one dies
                group = WorkerProcesses(  # forks now, before this process starts any thread
                    self.processes, self._work_in_process, on_report=self._take_report,
                    on_lost=self._lost_process, poll=self.halt.follow_shared,
                )
                self._feed_then_wait(store, group.wait)
                self._jobs.cancel_join_thread()  # rows fed but never taken stay `pending`: drop them
            else:
                self._add_workers(self._initial_workers)
                self._feed_then_wait(store, self._wait_for_workers)
        if self._crash is not None:
            raise self._crash

    def _work_in_process(self, report: Report) -> dict:
        """A worker process's part: threads that take rows from the shared queue until it is
        empty and fed no more, or the run halts; what they did goes to the parent by `report`."""
        self.on_outcome = lambda outcome: report("outcome", outcome)
        self.halt.report = report
        try:
            with _stop_on_signals(self.halt):
                self._add_workers(self._initial_workers)
                self._wait_for_workers()
        except BaseException as error:
            self._crash = self._crash or error
        crash = f"{type(self._crash).__name__}: {self._crash}" if self._crash is not None else None
        return {"workers": self.workers, "retries": self.retries, "crash": crash, "cycle": (self.cycle.mean(), self.cycle.count),
                "call_latency": (self.call_latency.mean(), self.call_latency.count)}

    def _take_report(self, kind: str, payload) -> None:
        """In the parent: what a worker process reported (processes.py)."""
        if kind == "outcome":
            self._record(payload)
        elif kind == "stop":
            self.halt.stop_for(payload)
        elif kind == "interrupted":
            self.halt.interrupt(payload)
        elif kind == ENDED and payload is not None:
            self.workers_per_process = max(self.workers_per_process, payload["workers"])
            self.retries += payload["retries"]
            self.cycle.merge(*payload["cycle"])
            self.call_latency.merge(*payload["call_latency"])
            if payload["crash"] and self._crash is None:
                self._crash = SendError(f"a worker process stopped with an error: {payload['crash']}")

    def _lost_process(self, pid: int, exit_code: int) -> None:
        """In the parent: a worker process ended without saying so (killed): stop the others."""
        self.halt.interrupt(
            f"worker process {pid} ended unexpectedly (exit code {exit_code}); its calls in flight are `unknown` at the next run"
        )

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
                self.halt.follow_shared()
                self._resize()
            index += 1

    def _add_workers(self, count: int, *, growing: bool = False) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._work, args=(growing,), name=f"send-worker-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()

    def _resize(self) -> None:
        """Start more threads if the messages' measured cycle asks for them (sizing.PoolGrowth)."""
        now = time.monotonic()
        drained = self._feeding_done.is_set() and self._jobs.empty()
        if not self._growth.due(now) or self.halt.event.is_set() or drained:
            return
        more = self._growth.look(now=now, cpu=time.process_time(), cpu_wait=self._cpu_waits.seconds(),
                                 grants=self.limiter.grants, rate=self.limiter.rate, cycle=self.cycle.mean(),
                                 count=len(self._threads))
        if more:
            self._add_workers(more, growing=True)

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

    def _work(self, growing: bool = False) -> None:
        """One worker thread. One added as the pool grows ends quietly if it cannot open the
        database now (say, it has gained a second name since the run checked it): the run goes on
        with the workers it has, whose connections were opened when the run began."""
        try:
            transport = self.transport_factory()
            try:
                try:
                    store = Store.open(self.database)
                except StoreError:
                    if growing:
                        return
                    raise
                with store, self._cpu_waits.counting():
                    while (delivery := self._next_job()) is not None:
                        began, waits = time.monotonic(), _Waits()
                        self._deliver(delivery, transport, store, waits)
                        self.cycle.add(time.monotonic() - began - waits.seconds)
            finally:
                transport.close()
        except BaseException as error:  # a bug or a broken database: stop the others too
            with self._record_lock:
                self._crash = self._crash or error
            self.halt.interrupt(f"stopped by an error: {type(error).__name__}: {error}")

    def _deliver(self, delivery: Delivery, transport: Transport, store: Store, waits: _Waits) -> None:
        """Send one row: claim it, make the call, record the outcome; retry what surely sent
        nothing while the error class allows. A database error stops the run, not the program.
        The waits for a turn and before a retry are counted in `waits`."""
        try:
            message = self.compose(delivery)
        except MessageError as error:
            self._database(store.fail_unsent_delivery, delivery.id, error)
            self._record(Outcome(delivery, "failed", type(error).__name__, None, str(error)))
            return
        refused = unreachable = 0  # calls answered with a retryable refusal; calls that got nowhere
        while True:
            started_at = waits.turn(self.limiter, self.halt.event)
            if started_at is None or self.halt.follow_shared():
                return  # stopped while waiting: the row was never claimed and stays pending
            claim = self._database(store.claim_delivery, delivery.id, started_at, self.version_id)
            if claim is None:
                return  # the database stopped the run before the call: the row stays pending
            if claim != "claimed":  # left the list since it was queued, or another run has it
                self._record(Outcome(delivery, claim))
                return
            try:
                called = time.monotonic()
                try:
                    result = transport.send(message)
                finally:
                    self.call_latency.add(time.monotonic() - called)
            except UnreachableError as error:
                self._finish(store, delivery, "pending", error)
                down_for = self.outage.failed()
                if down_for >= self.outage.budget_seconds:
                    self.halt.stop_for(Stop(
                        f"cannot reach {transport.name} for {down_for:.0f} s (the outage budget, "
                        f"sending.outage_budget_seconds): {error}",
                        "check the network connection (or a proxy or VPN)",
                    ))
                    return
                unreachable += 1
                wait = min(self.backoff.delay(unreachable), self.outage.budget_seconds - down_for)
            except RetryableSendError as error:  # an answer, so not an outage; deferrals included
                self.outage.reached()
                refused += 1
                self._finish(store, delivery, "pending", error)
                if not isinstance(error, RecipientDeferredError):
                    self.limiter.slow_down()
                if refused >= self.backoff.attempts:
                    if isinstance(error, RecipientDeferredError):  # this address only: the run goes on
                        self._record(self._outcome(delivery, "deferred", error, message))
                    else:
                        self.halt.stop_for(Stop(
                            f"{transport.name} refused {refused} calls in a row for one message: {error}",
                            "wait a few minutes for the provider to recover",
                        ))
                    return
                wait = self.backoff.delay(refused)
            except RecipientRejectedError as error:
                self.outage.reached()
                self._finish(store, delivery, "failed", error, message)
                return
            except OutcomeUnknownError as error:
                self._finish(store, delivery, "unknown", error, message)
                return
            except AccountStoppedError as error:
                self.outage.reached()
                self._finish(store, delivery, "pending", error)  # refused: nothing went out
                self.halt.stop_for(Stop.account(error))
                return
            except BaseException as error:
                # Not an answer the transport understood: the request may have gone out.
                self._finish(store, delivery, "unknown", error)
                raise
            else:
                self.outage.reached()
                self._finish(store, delivery, "sent", message=message, message_id=result.message_id)
                return
            with self._record_lock:
                self.retries += 1
            if waits.pause(self.halt.event, wait):
                return

    def _database(self, operation: Callable, *arguments):
        """`operation(*arguments)` on the ledger; None (and the run stopped) if the database
        cannot be written: locked by another program past the busy timeout, or read-only."""
        try:
            return operation(*arguments)
        except StoreError as error:
            self.halt.stop_for(Stop.database(error))
            return None

    def _finish(
        self,
        store: Store,
        delivery: Delivery,
        state: str,
        error: SendError | BaseException | None = None,
        message: OutgoingMessage | None = None,
        *,
        message_id: str | None = None,
    ) -> None:
        """Commit the row's outcome, waiting out another program's lock on the database (the call
        is made: its outcome must not be lost); then report it unless the row goes back to wait."""
        deadline = time.monotonic() + RECORD_PATIENCE_SECONDS
        while True:
            try:
                store.finish_delivery(delivery.id, state, message_id=message_id, error=error)
                break
            except StoreError as store_error:
                self.halt.stop_for(Stop.database(store_error))  # no new calls meanwhile
                if time.monotonic() > deadline:
                    raise
        if state != "pending" and message is not None:
            self._record(self._outcome(delivery, state, error, message))

    @staticmethod
    def _outcome(delivery: Delivery, state: str, error, message: OutgoingMessage) -> Outcome:
        if error is None:
            return Outcome(delivery, state, message_bytes=len(message.raw))
        code, text = getattr(error, "code", None), getattr(error, "message", str(error))
        return Outcome(delivery, state, type(error).__name__, code, text, len(message.raw))

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
        elif outcome.state != "taken":  # a row another run holds is that run's to report
            failure = Failure(outcome.delivery.address, outcome.error_kind or "", outcome.error_code, outcome.error or "")
            summary.problems(outcome.state).append(failure)
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
            compose=lambda delivery: plan.message_for(delivery.address, delivery.name, delivery.edition),
            transport_factory=transport_factory or new_transports(plan.config, plan.transport_kind),
            limiter=limiter,
            workers=sizing.workers,
            max_workers=sizing.max_workers,
            processes=sizing.processes,
            backoff=backoff,
            outage_budget_seconds=config.outage_budget_seconds,
            version_id=preparation.version_id,
            limit=plan.limit,
            on_outcome=on_outcome,
        )
        run.run(store)
        summary.ledger = store.delivery_counts(plan.issue_id)
    summary.quota = dataclasses.asdict(plan.quota)
    summary.rate = run.limiter.target_rate
    summary.workers = run.workers
    summary.processes = sizing.processes
    summary.cycle_seconds, summary.call_seconds = run.cycle.mean(), run.call_latency.mean()
    if run.stop is not None:
        summary.note_stop(run.stop)
    summary.interrupted = run.interrupted
    summary.retries = run.retries
    summary.slow_downs = run.limiter.slow_downs
