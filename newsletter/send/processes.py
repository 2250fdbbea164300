"""Forked worker processes for a list send: when one process cannot keep to the rate (its calls'
CPU under one GIL), the send runs its workers in several processes. This module knows nothing of
what they do; it forks them, relays what they report to the parent, and notices one that died.

    parent:  starts `count` processes (fork: each a copy of the parent as it was, with its plan,
             rendered issue, queues and shared memory), then reads their reports in a thread and
             hands each to `on_report(kind, payload)`; a process that ended without saying so
             (killed) goes to `on_lost(pid, exit_code)`
    child:   runs `work(report)`; `report(kind, payload)` reaches the parent; what `work` returns
             comes last, as kind ENDED

The sending engine (engine.py) decides what is reported and what a lost process means.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable

# fork: the workers start at once with the parent's plan and rendered issue (nothing to pickle or
# re-render), and inherit the send lock. The parent forks before it starts any thread of its own.
WORKER_PROCESS_CONTEXT = multiprocessing.get_context("fork")
ENDED = "ended"  # a process's last report: what its `work` returned (None if it raised)
_POLL_SECONDS = 0.1

Report = Callable[[str, object], None]


class WorkerProcesses:
    """`count` worker processes, started at construction; `wait()` returns once all have ended
    and every report they sent has been handed on. `poll()` is called at least every 0.1 s while
    they run (the engine relays a stop given in another process)."""

    def __init__(
        self,
        count: int,
        work: Callable[[Report], object],
        *,
        on_report: Report,
        on_lost: Callable[[int, int], None],
        poll: Callable[[], object] = lambda: None,
    ):
        self._on_report, self._on_lost, self._poll = on_report, on_lost, poll
        self._reports = WORKER_PROCESS_CONTEXT.Queue()
        self._processes = [
            WORKER_PROCESS_CONTEXT.Process(target=_run_child, args=(work, self._reports), name=f"send-process-{n}")
            for n in range(count)
        ]
        for process in self._processes:
            process.start()
        self._ended: set[int] = set()  # pids that reported their end, or were found dead
        self._all_exited = threading.Event()
        self._reader = threading.Thread(target=self._read, name="send-reports")
        self._reader.start()

    def wait(self) -> None:
        for process in self._processes:
            while process.is_alive():  # a timed join lets the signal handler run
                process.join(_POLL_SECONDS)
        self._all_exited.set()
        self._reader.join()

    def _read(self) -> None:
        watched = time.monotonic()
        while True:
            self._poll()
            if time.monotonic() - watched >= _POLL_SECONDS:  # also while reports keep coming
                self._watch()
                watched = time.monotonic()
            try:
                pid, kind, payload = self._reports.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._all_exited.is_set():
                    return  # every writer has exited, so everything it wrote has been read
                continue
            if kind == ENDED:
                self._ended.add(pid)
            self._on_report(kind, payload)

    def _watch(self) -> None:
        """A process that exited without its last report was killed."""
        for process in self._processes:
            if process.exitcode not in (None, 0) and process.pid not in self._ended:
                self._ended.add(process.pid)
                self._on_lost(process.pid, process.exitcode)


def _run_child(work: Callable[[Report], object], reports) -> None:
    pid = os.getpid()
    ending = None
    try:
        ending = work(lambda kind, payload: reports.put((pid, kind, payload)))
    finally:
        reports.put((pid, ENDED, ending))
