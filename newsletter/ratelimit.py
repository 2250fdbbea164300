"""How fast a send may call the provider: one shared rate limiter, and the backoff between retries.

SES counts recipients per second against the account's MaxSendRate and answers 429 "Maximum
sending rate exceeded" past it. The limiter runs at a share of that rate (default 0.9) and lets a
burst of only the headroom left (MaxSendRate minus its own rate, at least one message), and it also
counts grants in a sliding one-second window capped at its own rate, so no one-second window passes
the rate it was set to (nor, so, the account's) whatever the threads' timing; the burst only lets a
late worker catch up within that cap. While throttling or 5xx answers last it
halves its rate (at most once a second) and climbs back gradually after they stop (AIMD).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 1.0
# Grants in the window are compared on the monotonic clock, the recorded start times on the wall
# clock; the margin keeps a window counted from the recorded times within the cap as well.
_WINDOW_MARGIN = 0.002


class RateLimiter:
    """Thread-safe: every worker calls `acquire()` before each network call."""

    def __init__(
        self,
        account_rate: float,
        share: float = 0.9,
        *,
        decrease: float = 0.5,
        lowest_share: float = 0.05,  # of the target rate: the floor while throttled
        recovery_per_second: float = 0.1,  # of the target rate regained per calm second
        calm_seconds: float = 1.0,  # no second slow-down, and no recovery, sooner than this
    ):
        if account_rate <= 0 or not math.isfinite(account_rate):
            raise ValueError(f"account rate must be a positive number, got {account_rate!r}")
        self.account_rate = account_rate
        self.target_rate = account_rate * share
        self.burst = max(1, math.floor(account_rate - self.target_rate))
        self.window_cap = max(1, math.floor(self.target_rate))
        self._decrease = decrease
        self._lowest_rate = self.target_rate * lowest_share
        self._recovery = self.target_rate * recovery_per_second
        self._calm_seconds = calm_seconds
        self._lock = threading.Lock()
        self._rate = self.target_rate
        self._tokens = float(self.burst)
        self._updated = time.monotonic()
        self._last_slow_down = -math.inf
        self._recent: deque[float] = deque(maxlen=self.window_cap)  # monotonic grant times
        self.slow_downs = 0

    @property
    def rate(self) -> float:
        """The rate in force now (below the target while slowed down)."""
        with self._lock:
            return self._rate

    def acquire(self, stop: threading.Event | None = None) -> dt.datetime | None:
        """Wait for a turn; return when it was granted (UTC), or None if `stop` was set first."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._refill(now)
                wait = self._wait(now)
                if wait <= 0:
                    self._tokens -= 1
                    self._recent.append(now)
                    return dt.datetime.now(dt.UTC)
            if stop is None:
                time.sleep(wait)
            elif stop.wait(wait):
                return None

    def slow_down(self) -> None:
        """The provider throttled us or failed (429, 5xx): halve the rate, drop saved tokens."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_slow_down < self._calm_seconds:
                return  # the workers' answers to one overload arrive together: count it once
            self._refill(now)
            self._rate = max(self._lowest_rate, self._rate * self._decrease)
            self._tokens = min(self._tokens, 0.0)
            self._last_slow_down = now
            self.slow_downs += 1

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if self._rate < self.target_rate and now - self._last_slow_down >= self._calm_seconds:
            self._rate = min(self.target_rate, self._rate + self._recovery * elapsed)
        self._tokens = min(float(self.burst), self._tokens + self._rate * elapsed)
        self._updated = now

    def _wait(self, now: float) -> float:
        token_wait = (1 - self._tokens) / self._rate if self._tokens < 1 else 0.0
        window_wait = 0.0
        if len(self._recent) == self.window_cap:
            window_wait = self._recent[0] + WINDOW_SECONDS + _WINDOW_MARGIN - now
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
