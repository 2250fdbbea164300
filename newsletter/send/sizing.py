"""How many worker processes and threads a list send runs: enough concurrent messages to keep to
its rate, and no more; and, before it starts, whether this machine's cores can carry that rate.

A worker thread handles one message at a time: it composes it, waits for its turn, claims the
ledger row (a commit), makes the call, records the outcome (a commit). Keeping to `rate` messages
a second takes, by Little's law, rate x cycle messages in hand, where the cycle is all of that but
the wait for a turn; HEADROOM more absorbs the cycles that take longer than the mean. The cycle is
not known before the first messages: a run starts from ASSUMED_CYCLE and each process grows its
pool as it measures the cycles' mean (`PoolGrowth`, `workers_for`), up to the most the config or
`--workers` allows.

The CPU decides the rest. All of a process's threads run under one GIL, so one process is given a
share of a core (PROCESS_CPU_SHARE) before the send forks another, at most one per core; and the
rate the cores carry is about cores / CPU per message. Past that no number of threads keeps to
the rate, so the plan says what to expect instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

HEADROOM = 1.5  # messages in hand over rate x mean cycle
# Seconds a message takes a worker until it is measured: a 50 ms call, two commits, composing,
# and the waits for the GIL among the other threads (measured: 60 to 150 ms at 50 ms a call).
ASSUMED_CYCLE = 0.1
AUTO_MAX_WORKERS = 128  # threads per process when the config says "auto"
# CPU one message costs the process that sends it, estimated from its size before any is sent
# (bench/send.py, SendEmail to a local endpoint; docs/scale.md): botocore's call is about 1 ms
# plus 10 us per KB (JSON, base64 and the SigV4 hash of the body), the rest of the cycle (the
# limiter, the two commits, composing, the hand-over between threads and processes) about 0.6 ms.
CPU_SECONDS_PER_MESSAGE = 0.0016
CPU_SECONDS_PER_BYTE = 1e-8
# Of a core, what one process is given before the send adds another: past about this its threads
# wait for the GIL, and the wait (not the network) sets their cycle.
PROCESS_CPU_SHARE = 0.6
# What a busy process keeps of its core for the messages: the GIL's hand-overs between its
# threads and the parent's share of the work cost the rest.
CORE_EFFICIENCY = 0.85
# A worker process pays for its start (its own clients and connections) and a short send gains
# little from it: a further process only for each this many recipients.
RECIPIENTS_PER_PROCESS = 1000


@dataclass(frozen=True)
class Sizing:
    """The plan for a run's concurrency: `processes` x `workers` threads to start with, each
    process growing to `max_workers` threads as the measured cycle asks (none when fixed);
    `carried`, the rate this machine's cores carry when that is less than the rate asked."""

    processes: int
    workers: int
    max_workers: int
    reason: str
    carried: float | None = None

    def describe(self) -> str:
        processes = f"{self.processes} processes x " if self.processes > 1 else ""
        grows = f", up to {self.max_workers} as the measured cycle asks" if self.max_workers > self.workers else ""
        short = f"; more than the CPU carries: expect about {self.carried:.0f}/s" if self.carried is not None else ""
        return f"{processes}{_workers(self.workers)}{grows}{short}"


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def workers_for(rate: float, cycle: float, *, ceiling: int) -> int:
    """Threads one process needs to handle `rate` messages a second that take `cycle` seconds each."""
    return max(1, min(ceiling, math.ceil(rate * cycle * HEADROOM)))


def cpu_per_message(message_bytes: int) -> float:
    """Estimated CPU seconds a message of this size costs its sending process."""
    return CPU_SECONDS_PER_MESSAGE + CPU_SECONDS_PER_BYTE * message_bytes


def size_send(
    rate: float,
    recipients: int,
    *,
    cpu_count: int,
    message_bytes: int,
    max_workers: int | None = None,
    max_processes: int | None = None,
    workers: int | None = None,
    processes: int | None = None,
) -> Sizing:
    """The concurrency for a send at `rate` messages a second of `message_bytes` each to
    `recipients`, on a machine of `cpu_count` cores.

    `max_workers` / `max_processes` are the config's bounds (None: "auto"); `workers` /
    `processes` the command line's fixed numbers, which override the rule."""
    recipients = max(1, recipients)
    cpu = cpu_per_message(message_bytes)
    cores_needed = rate * cpu
    cost = f"{rate:.4g}/s x ~{cpu * 1000:.1f} ms of CPU a message ({message_bytes / 1024:.0f} KB) = {cores_needed:.2g} cores"
    why: list[str] = []
    if processes is not None:
        process_count = processes
        why.append(f"{processes} process(es) as asked")
    else:
        process_ceiling = min(cpu_count, max_processes or cpu_count)
        needed = max(1, math.ceil(cores_needed / PROCESS_CPU_SHARE))
        process_count = min(needed, process_ceiling, max(1, recipients // RECIPIENTS_PER_PROCESS))
        if process_count > 1:
            why.append(f"{process_count} processes: {cost}, ~{PROCESS_CPU_SHARE:g} of a core each at most")
        elif needed > 1:
            short = recipients < 2 * RECIPIENTS_PER_PROCESS
            why.append(f"1 process: {cost} would take {needed} (~{PROCESS_CPU_SHARE:g} of a core each) but "
                       + (f"{recipients} recipients are too few to split" if short else f"only {process_ceiling} may run"))
    per_process_rate = rate / process_count
    per_process_recipients = math.ceil(recipients / process_count)
    if workers is not None:
        start = ceiling = workers
        why.append(f"{workers} workers as asked")
    else:
        ceiling = min(max_workers or AUTO_MAX_WORKERS, per_process_recipients)
        start = workers_for(per_process_rate, ASSUMED_CYCLE, ceiling=ceiling)
        why.append(
            f"{_workers(start)}{' each' if process_count > 1 else ''} for {per_process_rate:.4g}/s x "
            f"{ASSUMED_CYCLE:g} s a message (compose, claim, call, record; assumed until measured) x {HEADROOM:g}, "
            f"at most {ceiling}"
        )
    # Each process uses at most one core (its GIL), and no more cores than the machine has.
    cores = min(process_count, cpu_count)
    carried = cores * CORE_EFFICIENCY / cpu
    if carried < rate:
        more = "more processes (--processes)" if process_count < cpu_count else "more cores"
        why.append(f"the CPU carries about {carried:.0f}/s ({cores} core(s), one per process, at ~{cpu * 1000:.1f} ms "
                   f"a message): {more} would keep to the rate")
        return Sizing(process_count, start, ceiling, "; ".join(why), carried=carried)
    return Sizing(process_count, start, ceiling, "; ".join(why))


class RecentMean:
    """A mean of seconds that a process's worker threads measure (a message's cycle, less the
    waits for a turn or a retry; a call), weighted to the recent ones, and how many were measured
    (thread-safe)."""

    WEIGHT = 0.1  # of each new message: the mean follows a change within a few dozen messages

    def __init__(self) -> None:
        self._mean: float | None = None
        self.count = 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._mean = seconds if self._mean is None else self._mean + self.WEIGHT * (seconds - self._mean)
            self.count += 1

    def mean(self) -> float | None:
        with self._lock:
            return self._mean

    def merge(self, mean: float | None, count: int) -> None:
        """Take in another process's measure: its mean of `count` messages."""
        if mean is None or not count:
            return
        with self._lock:
            total = self.count + count
            self._mean = mean if self._mean is None else (self._mean * self.count + mean * count) / total
            self.count = total


# How a process's pool grows while it sends (PoolGrowth).
LOOK_SECONDS = 0.5  # how often, at least, the pool is sized to the measured cycle
KEEPING_UP = 0.95  # of the rate: workers that keep this pace are enough
# Of a core: a process that used this much CPU since the last look, or used and waited for (its
# threads ready to run while no core was free), is bound by the CPU (its GIL, or a machine busy
# with other work), and more threads would only wait for it, and send their calls late and
# bunched together.
CPU_BOUND = 0.9
GROWTH_STEP = 1.5  # the most the pool grows at one look (x), so that each step is judged
GROWTH_PAYS = 0.5  # of the pace a growth should have added: a growth that added less did not pay
MEASURABLE_GAIN = 10  # messages: a growth that should add fewer in a look is not judged


@dataclass(frozen=True)
class _Growth:
    pace: float  # messages a second (every process's) when the pool grew
    expected_gain: float  # what the new threads should add, were the threads what held it back
    settled: bool = False  # a look has passed since: the next one judges it


class PoolGrowth:
    """When a process's pool of worker threads grows, and by how much, from what it measures
    while it sends: the pace (the shared limiter's turns, of every process), its own CPU, and the
    messages' cycle (RecentMean).

    The pool grows toward Little's law for the measured cycle (`workers_for`) while the send
    falls short of the rate: then the workers, not the limiter, set the pace. The cycle includes
    the waits for the CPU, and on a process bound by it (its GIL, or a machine busy with other
    work) more threads only wait longer: each costs more CPU per message, and their turns, taken
    on time, reach the provider late and bunched. So the pool grows only while the process has
    CPU to spare and while growing pays: by at most half at a time, each growth judged two looks
    on (the first lets the new threads start), and one that did not raise the pace by half of
    what it should have is the last. A gain too small to count in one look (a slow send, which
    the CPU does not bound) is not judged. A look comes every half second, or every cycle if
    that is longer, so that it sees whole cycles. The pool never shrinks: a thread too many only
    waits for its turn."""

    def __init__(self, *, processes: int, max_workers: int, now: float, cpu: float, grants: int):
        self.processes, self.max_workers = processes, max_workers
        self._looked, self._cpu, self._grants, self._cpu_wait = now, cpu, grants, 0.0  # at the last look
        self._next_look = now + LOOK_SECONDS
        self._growth: _Growth | None = None  # the last growth, until it is judged
        self.stopped = False  # a growth did not pay: the pool stays as it is

    def due(self, now: float) -> bool:
        return now >= self._next_look and not self.stopped

    def look(
        self, *, now: float, cpu: float, grants: int, rate: float, cycle: float | None, count: int, cpu_wait: float = 0.0
    ) -> int:
        """How many threads to add to the `count` running, given the process's CPU seconds, its
        threads' waits for a core (CpuWaits) and the limiter's turns so far, the rate in force and
        the mean cycle (None: none measured)."""
        elapsed, busy = now - self._looked, cpu - self._cpu + cpu_wait - self._cpu_wait
        pace = (grants - self._grants) / elapsed
        self._looked, self._cpu, self._grants, self._cpu_wait = now, cpu, grants, cpu_wait
        self._next_look = now + max(LOOK_SECONDS, cycle or 0.0)
        growth = self._growth
        if growth is not None and not growth.settled:
            self._growth = dataclasses.replace(growth, settled=True)
            return 0
        self._growth = None
        if cycle is None or not count or pace >= KEEPING_UP * rate:
            return 0
        measurable = growth is not None and growth.expected_gain * elapsed >= MEASURABLE_GAIN
        if measurable and pace - growth.pace < GROWTH_PAYS * growth.expected_gain:
            self.stopped = True
            return 0
        if busy >= CPU_BOUND * elapsed:
            return 0
        wanted = min(workers_for(rate / self.processes, cycle, ceiling=self.max_workers), math.ceil(count * GROWTH_STEP))
        if wanted <= count:
            return 0
        self._growth = _Growth(pace, min(rate, pace * wanted / count) - pace)
        return wanted - count


class CpuWaits:
    """How long a process's worker threads have been ready to run while no core was free to run
    them, in seconds, from Linux's per-thread scheduler statistics: the part of a busy machine
    that the process's own CPU time does not show. Stays 0 where the system does not tell."""

    def __init__(self) -> None:
        self._files: set[int] = set()
        self._ended = 0.0  # of threads gone
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count the calling thread's waits while the block runs."""
        try:
            descriptor = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            yield
            return
        with self._lock:
            self._files.add(descriptor)
        try:
            yield
        finally:
            with self._lock:
                self._files.discard(descriptor)
                self._ended += _waited(descriptor)
            os.close(descriptor)

    def seconds(self) -> float:
        with self._lock:
            return self._ended + sum(_waited(descriptor) for descriptor in self._files)


def _waited(descriptor: int) -> float:
    """The second field of a schedstat: nanoseconds spent waiting on a run queue."""
    try:
        return int(os.pread(descriptor, 128, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
