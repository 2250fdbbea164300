"""The shared rate limiter, the retry backoff and the daily-quota check."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time

import pytest

from newsletter.send.quota import check_daily_quota, daily_allowance
from newsletter.errors import QuotaError
from newsletter.ratelimit import Backoff, RateLimiter, busiest_window
from newsletter.transports.base import SendQuota
from sending_fixtures import run_threads


def grants_from_threads(limiter: RateLimiter, total: int, threads: int = 6) -> list[dt.datetime]:
    times: list[dt.datetime] = []
    per_thread = [total // threads + (n < total % threads) for n in range(threads)]

    def take(count: int) -> None:
        for _ in range(count):
            times.append(limiter.acquire())  # list.append is atomic under the GIL

    assert run_threads(take, [(count,) for count in per_thread]) == []
    return times


def test_the_busiest_window_counts_events_less_than_a_second_apart():
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    at = [base + dt.timedelta(seconds=s) for s in (0, 0.5, 0.99, 1.0, 1.2, 1.3, 3)]
    assert busiest_window(at) == 5  # 0.5 .. 1.3
    assert busiest_window([]) == 0


@pytest.mark.parametrize("share", [0.9, 1.0])
def test_no_one_second_window_passes_the_set_rate(share):
    limiter = RateLimiter(100, share)
    times = grants_from_threads(limiter, 160)
    assert len(times) == 160
    assert busiest_window(times) <= 100 * share


def test_the_burst_is_half_the_headroom_between_the_account_rate_and_the_share():
    """The other half is left for the spread between a call's turn and its arrival at SES, which
    counts arrivals: the calls of a burst reach it bunched with the ones before."""
    assert (RateLimiter(100, 0.9).burst, RateLimiter(100, 0.9).target_rate) == (5, pytest.approx(90))
    assert RateLimiter(50, 0.9).burst == 2
    assert RateLimiter(14, 0.9).burst == 1  # never below one message
    assert RateLimiter(14, 0.9).window_cap == 12  # floor(12.6): the set rate, not the account's


def test_a_fresh_limiter_grants_its_burst_at_once_and_then_waits():
    limiter = RateLimiter(100, 0.5)  # burst 25, then 50/s: a token every 20 ms, far longer than the burst takes
    stop = threading.Event()
    granted = [limiter.acquire(stop) for _ in range(limiter.burst)]
    assert None not in granted
    stop.set()
    assert limiter.acquire(stop) is None  # the bucket is empty: it would have had to wait


def test_throttling_halves_the_rate_once_per_calm_period():
    limiter = RateLimiter(100, 0.9, calm_seconds=0.05, recovery_per_second=0.001)
    limiter.slow_down()
    limiter.slow_down()  # the same overload answered to several workers: counted once
    assert (limiter.rate, limiter.slow_downs) == (pytest.approx(45), 1)
    time.sleep(0.06)
    limiter.slow_down()
    assert (limiter.rate, limiter.slow_downs) == (pytest.approx(22.5, rel=0.01), 2)


def test_the_rate_climbs_back_gradually_once_the_throttling_stops():
    # +90/s per second after half a second of calm: long enough that a loaded machine does not
    # end the calm period between the slow-down and the next turn.
    limiter = RateLimiter(100, 0.9, calm_seconds=0.5, recovery_per_second=1)
    limiter.slow_down()
    limiter.acquire()
    assert limiter.rate == pytest.approx(45, abs=5)  # still within the calm period: no recovery
    time.sleep(1.2)  # calm for longer than the calm period and the full recovery (0.5 s at 90/s per s)
    limiter.acquire()
    assert limiter.rate == pytest.approx(90)


def test_the_rate_never_falls_below_its_floor():
    limiter = RateLimiter(100, 1.0, calm_seconds=0, lowest_share=0.1)
    for _ in range(20):
        limiter.slow_down()
    assert limiter.rate == pytest.approx(10)


def test_a_stop_ends_a_wait_for_a_turn():
    limiter = RateLimiter(0.5, 0.5)  # one message every 4 s
    stop = threading.Event()
    assert limiter.acquire(stop) is not None
    threading.Timer(0.05, stop.set).start()
    assert limiter.acquire(stop) is None


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    backoff = Backoff(attempts=8, base=0.5, cap=4.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 4.0)]:
        delays = [backoff.delay(retry, rng) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread, not fixed


def test_the_daily_quota_check_says_how_many_could_be_sent():
    quota = SendQuota(max_send_rate=14, max_24h_send=200, sent_last_24h=195, source="ses GetAccount")
    assert daily_allowance(quota) == 5
    check_daily_quota(quota, 5)
    with pytest.raises(QuotaError, match="allows 5 more now") as caught:
        check_daily_quota(quota, 6)
    assert caught.value.allowance == 5 and "--limit 5" in str(caught.value)
    unlimited = SendQuota(max_send_rate=14, max_24h_send=-1, sent_last_24h=10**9, source="ses GetAccount")
    assert daily_allowance(unlimited) is None
    check_daily_quota(unlimited, 10**6)
