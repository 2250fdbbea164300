"""A list send over several worker processes: when one process cannot keep to the rate (its
calls' CPU under one GIL), the send forks `processes` workers that share its queue of rows, its
stop flag and one rate limiter kept in shared memory.

    parent:  holds the send lock, feeds pending rows into one queue, reads the outcomes back
             (summary, progress bar), tells everyone to stop (an account stop, an outage, Ctrl-C,
             SIGTERM, a worker process that died)
    workers: forked copies of the run (plan, composer, transports) whose threads take rows from
             the queue: limiter turn -> claim (`sending`, committed) -> call -> outcome (committed)

No row is taken twice: each is fed once, and the claim only moves a `pending` row. The forked
workers inherit the send lock's open file, so the lock holds until the last of them ends, even
if the parent is killed; a worker whose parent is gone stops after its calls in flight. A SIGKILL
of the whole group leaves at most (processes x workers) rows `sending`, which the next run makes
`unknown`, as with threads.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from typing import TYPE_CHECKING

from ..errors import SendError

if TYPE_CHECKING:  # engine.py runs this module; the name is for annotations only
    from .engine import BulkSend

# fork: the workers start at once with the parent's plan and rendered issue (nothing to pickle or
# re-render), and inherit the send lock. The parent forks before it starts any thread of its own.
WORKER_PROCESS_CONTEXT = multiprocessing.get_context("fork")
_POLL_SECONDS = 0.1


class WorkerProcesses:
    """The worker processes of one run, started at construction; `wait()` returns once all have
    ended and every outcome they sent has been passed to the run."""

    def __init__(self, run: BulkSend):
        self.run = run
        self._results = WORKER_PROCESS_CONTEXT.Queue()
        parent = os.getpid()
        self._processes = [
            WORKER_PROCESS_CONTEXT.Process(target=_work_in_child, args=(run, self._results, parent), name=f"send-process-{n}")
            for n in range(run.processes)
        ]
        for process in self._processes:
            process.start()
        self._finished: set[int] = set()  # pids that reported their end
        self._peak_workers = 0
        self._all_ended = threading.Event()
        self._reader = threading.Thread(target=self._read, name="send-outcomes")
        self._reader.start()

    def wait(self) -> None:
        for process in self._processes:
            while process.is_alive():  # a timed join lets the signal handler run
                process.join(_POLL_SECONDS)
        self._all_ended.set()
        self._reader.join()
        self.run._jobs.cancel_join_thread()  # rows fed but never taken stay `pending`: drop them
        self.run.workers_per_process = self._peak_workers

    def _read(self) -> None:
        while True:
            self.run.halt.follow_shared()
            try:
                kind, payload = self._results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._all_ended.is_set():
                    return  # every writer has ended, so everything it wrote has been read
                self._watch()
                continue
            self._take(kind, payload)

    def _take(self, kind: str, payload) -> None:
        run = self.run
        if kind == "outcome":
            run._record(payload)
        elif kind == "stop":
            run.halt.stop_for(payload)
        elif kind == "interrupted":
            run.halt.interrupt(payload)
        elif kind == "ended":
            self._finished.add(payload["pid"])
            self._peak_workers = max(self._peak_workers, payload["workers"])
            run.retries += payload["retries"]
            if payload["crash"] and run._crash is None:
                run._crash = SendError(f"a worker process stopped with an error: {payload['crash']}")

    def _watch(self) -> None:
        """A worker process that ended without saying so was killed: stop the others too."""
        for process in self._processes:
            if process.exitcode not in (None, 0) and process.pid not in self._finished:
                self._finished.add(process.pid)
                self.run.halt.interrupt(
                    f"worker process {process.pid} ended unexpectedly (exit code {process.exitcode}); "
                    "its calls in flight are `unknown` at the next run"
                )


def _work_in_child(run: BulkSend, results, parent_pid: int) -> None:
    run.parent_pid = parent_pid
    run.on_outcome = lambda outcome: results.put(("outcome", outcome))
    run.halt.report = lambda kind, reason: results.put((kind, reason))
    try:
        run.work()
    finally:
        crash = f"{type(run._crash).__name__}: {run._crash}" if run._crash is not None else None
        results.put(("ended", {"pid": os.getpid(), "workers": run.workers, "retries": run.retries, "crash": crash}))
