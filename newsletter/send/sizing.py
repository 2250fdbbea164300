"""How many worker processes and threads a list send runs: enough concurrent calls to keep to its
rate, and no more.

A worker thread makes one call at a time, so keeping to `rate` calls a second takes, by Little's
law, rate x latency calls in flight; HEADROOM more absorbs the calls that take longer than the
mean. The latency is not known before the first call: a run starts from ASSUMED_LATENCY and the
engine grows the pool as it measures the calls' mean (`workers_for`), up to the most the config or
`--workers` allows. A process spends about 2 ms of CPU per message (compose, sign, JSON and base64
of a 186 KB body, two ledger commits) under one GIL, so past PROCESS_RATE a send runs several
worker processes, at most one per core, sharing one rate budget.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

HEADROOM = 1.5  # calls in flight over rate x mean latency
ASSUMED_LATENCY = 0.05  # seconds: the first guess, until calls are measured
AUTO_MAX_WORKERS = 64  # threads per process when the config says "auto"
# Messages a second one process keeps to steadily (measured with bench/send.py on 2 cores: one
# process tops out near 400/s, its CPU then spent on the GIL's hand-offs as much as on the calls).
PROCESS_RATE = 300.0
# A worker process pays for its start (its own clients and connections) and a short send gains
# little from it: a further process only for each this many recipients.
RECIPIENTS_PER_PROCESS = 1000


@dataclass(frozen=True)
class Sizing:
    """The plan for a run's concurrency: `processes` x `workers` threads to start with, each
    process growing to `max_workers` threads as the measured latency asks (none when fixed)."""

    processes: int
    workers: int
    max_workers: int
    reason: str

    def describe(self) -> str:
        processes = f"{self.processes} processes x " if self.processes > 1 else ""
        grows = f", up to {self.max_workers} as the measured latency asks" if self.max_workers > self.workers else ""
        return f"{processes}{_workers(self.workers)}{grows}"


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def workers_for(rate: float, latency: float, *, ceiling: int) -> int:
    """Threads one process needs to make `rate` calls a second that take `latency` seconds each."""
    return max(1, min(ceiling, math.ceil(rate * latency * HEADROOM)))


def processes_for(rate: float, *, ceiling: int) -> int:
    """Worker processes that keep to `rate` (each at most PROCESS_RATE), at most `ceiling`."""
    return max(1, min(ceiling, math.ceil(rate / PROCESS_RATE)))


def size_send(
    rate: float,
    recipients: int,
    *,
    cpu_count: int,
    max_workers: int | None = None,
    max_processes: int | None = None,
    workers: int | None = None,
    processes: int | None = None,
) -> Sizing:
    """The concurrency for a send at `rate` messages a second to `recipients`.

    `max_workers` / `max_processes` are the config's bounds (None: "auto"); `workers` /
    `processes` the command line's fixed numbers, which override the rule."""
    recipients = max(1, recipients)
    why: list[str] = []
    if processes is not None:
        process_count = processes
        why.append(f"{processes} process(es) as asked")
    else:
        process_ceiling = min(cpu_count, max_processes or cpu_count)
        needed = processes_for(rate, ceiling=10**6)
        process_count = min(needed, process_ceiling, max(1, recipients // RECIPIENTS_PER_PROCESS))
        if process_count > 1:
            why.append(f"{process_count} processes: {rate:.4g}/s is more than one process keeps to (~{PROCESS_RATE:g}/s)")
        elif needed > 1:
            short = recipients < 2 * RECIPIENTS_PER_PROCESS
            why.append(f"1 process: {rate:.4g}/s would need {needed} (~{PROCESS_RATE:g}/s each) but "
                       + (f"{recipients} recipients are too few to split" if short else f"only {process_ceiling} may run"))
    per_process_rate = rate / process_count
    per_process_recipients = math.ceil(recipients / process_count)
    if workers is not None:
        start = ceiling = workers
        why.append(f"{workers} workers as asked")
    else:
        ceiling = min(max_workers or AUTO_MAX_WORKERS, per_process_recipients)
        start = workers_for(per_process_rate, ASSUMED_LATENCY, ceiling=ceiling)
        why.append(
            f"{_workers(start)}{' each' if process_count > 1 else ''} for {per_process_rate:.4g}/s x "
            f"{ASSUMED_LATENCY:g} s latency (assumed until measured) x {HEADROOM:g}, at most {ceiling}"
        )
    return Sizing(processes=process_count, workers=start, max_workers=ceiling, reason="; ".join(why))


class CallLatency:
    """The mean latency of a process's calls, weighted to the recent ones, and their number
    (thread-safe)."""

    WEIGHT = 0.1  # of each new call: the mean follows a change within a few dozen calls

    def __init__(self) -> None:
        self._mean: float | None = None
        self.calls = 0  # how many were measured
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._mean = seconds if self._mean is None else self._mean + self.WEIGHT * (seconds - self._mean)
            self.calls += 1

    def mean(self) -> float | None:
        with self._lock:
            return self._mean
