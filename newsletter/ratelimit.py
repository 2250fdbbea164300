"""How fast a send may call the provider: one shared rate limiter, and the backoff between retries.

SES counts recipients per second against the account's MaxSendRate and answers 429 "Maximum
sending rate exceeded" past it. The limiter runs at a share of that rate (default 0.9) and counts
grants in a sliding one-second window capped at its own rate, so no one-second window of turns
passes the rate it was set to, whatever the threads' timing. What SES counts is the calls'
arrivals, later than their turns by a varying few milliseconds (the claim's commit, signing, the
GIL, the network; tens of milliseconds on a busy machine), so a second of arrivals can hold the
turns of a little more than a second. The headroom between the rate and MaxSendRate is for that:
half of it (at least one message) is the burst that lets late workers catch up within the cap,
the other half is left for the spread between turn and arrival. While throttling or 5xx answers
last it halves its rate (at most once a second) and climbs back gradually after they stop (AIMD).
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import random
import threading
import time
from dataclasses import dataclass

WINDOW_SECONDS = 1.0
# Grants in the window are compared on the monotonic clock, the recorded start times on the wall
# clock; the margin keeps a window counted from the recorded times within the cap as well.
_WINDOW_MARGIN = 0.002


# Where a limiter's state lives: slots of one array of floats, so the same code runs on a list
# (threads of one process) or on shared memory (worker processes of one send).
_RATE, _TOKENS, _UPDATED, _LAST_SLOW_DOWN, _SLOW_DOWNS, _GRANTS, _RING_HEAD = range(7)
_RING_START = 7  # then the monotonic times of the last `window_cap` grants, oldest at _RING_HEAD


class RateLimiter:
    """Thread-safe: every worker calls `acquire()` before each network call.

    `RateLimiter.shared(...)` makes one whose state lives in shared memory, guarded by a
    multiprocessing lock: the worker processes of one send (forked after it is made) take their
    turns from the same budget, so the rate and the one-second cap hold across all of them. The
    monotonic clock is the system's, the same in every process."""

    def __init__(
        self,
        account_rate: float,
        share: float = 0.9,
        *,
        decrease: float = 0.5,
        lowest_share: float = 0.05,  # of the target rate: the floor while throttled
        recovery_per_second: float = 0.1,  # of the target rate regained per calm second
        calm_seconds: float = 1.0,  # no second slow-down, and no recovery, sooner than this
        context=None,  # a multiprocessing context: keep the state in its shared memory
    ):
        if account_rate <= 0 or not math.isfinite(account_rate):
            raise ValueError(f"account rate must be a positive number, got {account_rate!r}")
        self.account_rate = account_rate
        self.target_rate = account_rate * share
        self.burst = max(1, math.floor((account_rate - self.target_rate) / 2))
        self.window_cap = max(1, math.floor(self.target_rate))
        self._decrease = decrease
        self._lowest_rate = self.target_rate * lowest_share
        self._recovery = self.target_rate * recovery_per_second
        self._calm_seconds = calm_seconds
        # A grant's time is reported on the wall clock but read from the monotonic one, so that
        # the reported times keep the window's cap even if the process is preempted between the
        # two readings (seen at 55 grants in a window capped at 54 on a loaded machine).
        self._wall_offset = time.time() - time.monotonic()
        initial = [self.target_rate, float(self.burst), time.monotonic(), -math.inf, 0.0, 0.0, 0.0]
        initial += [-math.inf] * self.window_cap  # no grants yet
        if context is None:
            self._lock = threading.Lock()
            self._state = initial
        else:
            self._lock = context.Lock()
            self._state = context.RawArray("d", initial)

    @classmethod
    def shared(cls, account_rate: float, share: float = 0.9, *, context=None, **options) -> RateLimiter:
        """A limiter for several processes (default context: fork, so children inherit it)."""
        return cls(account_rate, share, context=context or multiprocessing.get_context("fork"), **options)

    @property
    def rate(self) -> float:
        """The rate in force now (below the target while slowed down)."""
        with self._lock:
            return self._state[_RATE]

    @property
    def slow_downs(self) -> int:
        with self._lock:
            return int(self._state[_SLOW_DOWNS])

    @property
    def grants(self) -> int:
        """Turns given so far, in every process that shares the limiter."""
        with self._lock:
            return int(self._state[_GRANTS])

    def acquire(self, stop=None) -> dt.datetime | None:
        """Wait for a turn; return when it was granted (UTC), or None if `stop` (a threading or
        multiprocessing Event) was set first."""
        state = self._state
        while True:
            with self._lock:
                now = time.monotonic()
                self._refill(now)
                wait = self._wait(now)
                if wait <= 0:
                    state[_TOKENS] -= 1
                    state[_GRANTS] += 1
                    head = int(state[_RING_HEAD])
                    state[_RING_START + head] = now
                    state[_RING_HEAD] = (head + 1) % self.window_cap
                    return dt.datetime.fromtimestamp(now + self._wall_offset, dt.UTC)
            if stop is None:
                time.sleep(wait)
            elif stop.wait(wait):
                return None

    def slow_down(self) -> None:
        """The provider throttled us or failed (429, 5xx): halve the rate, drop saved tokens."""
        state = self._state
        with self._lock:
            now = time.monotonic()
            if now - state[_LAST_SLOW_DOWN] < self._calm_seconds:
                return  # the workers' answers to one overload arrive together: count it once
            self._refill(now)
            state[_RATE] = max(self._lowest_rate, state[_RATE] * self._decrease)
            state[_TOKENS] = min(state[_TOKENS], 0.0)
            state[_LAST_SLOW_DOWN] = now
            state[_SLOW_DOWNS] += 1

    def _refill(self, now: float) -> None:
        state = self._state
        elapsed = now - state[_UPDATED]
        if state[_RATE] < self.target_rate and now - state[_LAST_SLOW_DOWN] >= self._calm_seconds:
            state[_RATE] = min(self.target_rate, state[_RATE] + self._recovery * elapsed)
        state[_TOKENS] = min(float(self.burst), state[_TOKENS] + state[_RATE] * elapsed)
        state[_UPDATED] = now

    def _wait(self, now: float) -> float:
        state = self._state
        tokens = state[_TOKENS]
        token_wait = (1 - tokens) / state[_RATE] if tokens < 1 else 0.0
        # The oldest of the last `window_cap` grants: until it is a second old, the cap is full.
        oldest = state[_RING_START + int(state[_RING_HEAD])]
        window_wait = oldest + WINDOW_SECONDS + _WINDOW_MARGIN - now
        return max(token_wait, window_wait)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter between retries of a call that surely sent nothing."""

    attempts: int = 6  # calls per message in one run, the first included
    base: float = 0.5  # seconds
    cap: float = 20.0  # seconds

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1, 2, ...): uniform in [0, base * 2^(retry-1)],
        capped; the jitter keeps workers that were throttled together from returning together."""
        ceiling = min(self.cap, self.base * 2 ** (retry - 1))
        return (rng or random).uniform(0, ceiling)


def busiest_window(times: list[dt.datetime], seconds: float = WINDOW_SECONDS) -> int:
    """The most events in any window [t, t + seconds) that starts at an event: the check that a
    send kept to the account's per-second rate, made from the ledger's start times."""
    ordered = sorted(times)
    width = dt.timedelta(seconds=seconds)
    end, best = 0, 0
    for start, first in enumerate(ordered):
        while end < len(ordered) and ordered[end] - first < width:
            end += 1
        best = max(best, end - start)
    return best
