"""A send that sizes itself to the account: the sizing rule, one rate budget shared by worker
processes, and the ledger's promises with several processes (against moto's server)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.ratelimit import Backoff, RateLimiter, busiest_window
from newsletter.send import prepare_send, send_issue
from newsletter.send.sizing import (
    ASSUMED_CYCLE,
    AUTO_MAX_WORKERS,
    CpuWaits,
    PoolGrowth,
    RecentMean,
    cpu_per_message,
    size_send,
    workers_for,
)
from sending_fixtures import (
    ISSUE,
    cli,
    delivered,
    deliver_then_lose_the_answer,
    ledger_states,
    readers,
    secret,  # noqa: F401  (fixture)
    ses_error,
    ses_with_hooks,
    sending_config,
    start_send,
    subscribe,
    wait_until,
)

SAMPLE_BYTES = 125_000  # about the sample issue's message

# --- the sizing rule ----------------------------------------------------------------------------


def test_workers_follow_littles_law_with_headroom_within_bounds():
    assert workers_for(500, 0.05, ceiling=256) == 38  # 500/s x 50 ms = 25 in hand, x 1.5
    assert workers_for(14, 0.1, ceiling=256) == 3
    assert workers_for(500, 0.05, ceiling=8) == 8
    assert workers_for(0.5, 0.01, ceiling=8) == 1


def test_one_process_while_it_keeps_up_then_one_per_core():
    small = size_send(90, 100_000, cpu_count=2, message_bytes=SAMPLE_BYTES)
    assert (small.processes, small.max_workers) == (1, AUTO_MAX_WORKERS)
    big = size_send(600, 100_000, cpu_count=2, message_bytes=SAMPLE_BYTES)
    assert big.processes == 2  # 600/s x ~2.85 ms = 1.7 cores, at most ~0.6 of one each: 3; 2 cores
    assert big.workers == workers_for(300, ASSUMED_CYCLE, ceiling=AUTO_MAX_WORKERS)  # each process keeps half the rate
    assert "2 processes" in big.reason and "300/s" in big.reason
    assert size_send(600, 100_000, cpu_count=8, message_bytes=SAMPLE_BYTES).processes == 3
    assert size_send(600, 100_000, cpu_count=8, max_processes=2, message_bytes=SAMPLE_BYTES).processes == 2


def test_a_larger_message_takes_more_cpu_so_more_processes_at_the_same_rate():
    assert cpu_per_message(500_000) > cpu_per_message(SAMPLE_BYTES) > cpu_per_message(2_000)
    assert size_send(150, 100_000, cpu_count=8, message_bytes=2_000).processes == 1
    assert size_send(150, 100_000, cpu_count=8, message_bytes=500_000).processes == 2


def test_a_rate_past_what_the_cores_carry_is_said_in_the_plan():
    """The plan says what to expect instead of falling short silently."""
    carried = 2 * 0.85 / cpu_per_message(SAMPLE_BYTES)  # each process at most one core
    past = size_send(1000, 100_000, cpu_count=2, message_bytes=SAMPLE_BYTES)
    assert past.carried == pytest.approx(carried) and past.carried < 1000
    assert f"expect about {carried:.0f}/s" in past.describe()
    assert "the CPU carries about" in past.reason
    one_process = size_send(400, 100_000, cpu_count=8, message_bytes=SAMPLE_BYTES, processes=1)
    assert one_process.carried is not None and "expect about" in one_process.describe()
    within = size_send(300, 100_000, cpu_count=2, message_bytes=SAMPLE_BYTES)
    assert within.carried is None and "expect" not in within.describe()


def test_a_short_list_stays_in_one_process_with_no_idle_workers():
    sizing = size_send(900, 300, cpu_count=8, message_bytes=SAMPLE_BYTES)
    assert sizing.processes == 1 and "too few" in sizing.reason
    assert size_send(900, 5, cpu_count=8, message_bytes=SAMPLE_BYTES).max_workers == 5


def test_the_command_line_fixes_the_numbers_and_the_config_bounds_the_rule():
    fixed = size_send(900, 100_000, cpu_count=2, workers=7, processes=3, message_bytes=SAMPLE_BYTES)
    assert (fixed.processes, fixed.workers, fixed.max_workers) == (3, 7, 7)
    assert "as asked" in fixed.reason
    bounded = size_send(150, 100_000, cpu_count=1, max_workers=4, message_bytes=SAMPLE_BYTES)
    assert (bounded.processes, bounded.workers, bounded.max_workers) == (1, 4, 4)
    assert bounded.describe() == "4 workers"
    assert size_send(900, 100_000, cpu_count=2, message_bytes=SAMPLE_BYTES).describe().startswith("2 processes x ")


def test_the_measured_cycle_follows_the_recent_messages():
    cycle = RecentMean()
    assert cycle.mean() is None
    cycle.add(0.05)
    assert cycle.mean() == pytest.approx(0.05)
    for _ in range(60):
        cycle.add(0.2)
    assert cycle.mean() == pytest.approx(0.2, rel=0.01)
    assert cycle.count == 61


class _Looks:
    """Feeds a PoolGrowth the looks of a process sending at `rate`: each look half a second on,
    with the pace and the share of a core given, and the pool as it has grown so far."""

    def __init__(self, rate: float, workers: int, *, max_workers: int = AUTO_MAX_WORKERS):
        self.rate, self.workers = rate, workers
        self.now, self.cpu, self.waited, self.grants = 0.0, 0.0, 0.0, 0
        self.growth = PoolGrowth(processes=1, max_workers=max_workers, now=0.0, cpu=0.0, grants=0)

    def look(self, *, pace: float, cycle: float, core: float = 0.3, waiting: float = 0.0) -> int:
        self.now += 0.5
        self.cpu += 0.5 * core
        self.waited += 0.5 * waiting
        self.grants += round(0.5 * pace)
        assert self.growth.due(self.now)
        more = self.growth.look(now=self.now, cpu=self.cpu, cpu_wait=self.waited, grants=self.grants, rate=self.rate,
                                cycle=cycle, count=self.workers)
        self.workers += more
        return more


def test_the_pool_grows_by_half_at_a_time_toward_littles_law_then_stops_when_it_keeps_up():
    looks = _Looks(100, 15)
    assert looks.look(pace=60, cycle=0.25) == 8  # Little's law asks 38; at most half again: 23
    assert looks.look(pace=80, cycle=0.25) == 0  # the new threads start; judged at the next look
    assert looks.look(pace=90, cycle=0.25) == 12  # it paid (+30 of +30 expected): on to 35
    assert looks.look(pace=99, cycle=0.25) == 0
    assert looks.look(pace=99, cycle=0.25) == 0  # keeping up: the limiter sets the pace
    assert looks.workers == 35


def test_the_pool_stops_growing_when_a_growth_did_not_pay():
    """The CPU, not the workers, held the pace: more threads would only wait for it."""
    looks = _Looks(300, 45)
    assert looks.look(pace=200, cycle=0.3) == 23
    looks.look(pace=205, cycle=0.35)
    assert looks.look(pace=210, cycle=0.4) == 0  # +10/s of the +100/s a third more threads should add
    assert looks.growth.stopped and not looks.growth.due(looks.now + 10)
    assert looks.workers == 68


def test_a_small_gain_is_not_judged_since_it_cannot_be_counted_in_one_look():
    looks = _Looks(20, 3)
    assert looks.look(pace=5, cycle=0.45) == 2
    looks.look(pace=5, cycle=0.45)
    assert looks.look(pace=5, cycle=0.45) == 3  # +3.3/s expected: one or two messages a look, noise
    assert not looks.growth.stopped


def test_a_process_bound_by_its_cpu_does_not_grow():
    looks = _Looks(400, 30)
    assert looks.look(pace=300, cycle=0.2, core=0.95) == 0  # its GIL
    assert looks.look(pace=300, cycle=0.2, core=0.4, waiting=0.6) == 0  # a machine busy with other work
    assert looks.look(pace=300, cycle=0.2, core=0.5) == 15


@pytest.mark.skipif(not Path("/proc/thread-self/schedstat").exists(), reason="Linux's per-thread scheduler statistics")
def test_a_threads_waits_for_a_core_are_counted_and_kept_after_it_ends():
    waits = CpuWaits()

    def yield_the_core_often():
        with waits.counting():
            for _ in range(300):
                time.sleep(0.0002)  # each wake-up waits on a run queue, if only for microseconds

    thread = threading.Thread(target=yield_the_core_often)
    thread.start()
    thread.join()
    assert waits.seconds() > 0


def test_a_look_waits_for_whole_cycles_and_none_comes_before_a_cycle_is_measured():
    looks = _Looks(100, 15)
    assert looks.look(pace=0, cycle=None) == 0
    looks.growth.look(now=1.5, cpu=0, grants=0, rate=100, cycle=1.2, count=15)
    assert not looks.growth.due(2.6) and looks.growth.due(2.7)  # a 1.2 s cycle: the next look 1.2 s on


# --- the pool sized to a message's whole cycle, measured while sending --------------------------


class _SlowComposer:
    """The plan's real message template, each copy ready `seconds` later: composing is the slow
    part of a worker's cycle, as a slow disk or a loaded machine would make it."""

    def __init__(self, template, seconds: float):
        self._template, self._seconds = template, seconds

    def message_for(self, *arguments, **options):
        time.sleep(self._seconds)
        return self._template.message_for(*arguments, **options)

    def __getattr__(self, name):
        return getattr(self._template, name)


def test_the_pool_grows_past_what_the_call_latency_alone_asks_when_composing_is_slow(tmp_path, moto_ses, secret):
    """Calls to moto take milliseconds, so by the call's latency one or two threads would keep to
    22.5/s; but each message first takes 0.5 s to compose, and 22.5/s x 0.5 s is 11 messages in
    hand at every moment. The send measures the whole cycle while it runs and grows its pool to
    carry it."""
    compose_seconds, account_rate = 0.5, 25  # 22.5/s at the default share
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=account_rate, workers=AUTO_MAX_WORKERS)
    addresses = readers(100)
    subscribe(config_path, addresses)
    plan = prepare_send(ISSUE, load_config(config_path), dry_run=False)
    plan = dataclasses.replace(plan, templates={edition: _SlowComposer(template, compose_seconds)
                                                for edition, template in plan.templates.items()})
    assert plan.sizing().workers < plan.rate * compose_seconds  # the assumed cycle is too short

    summary = send_issue(plan)

    assert summary.sent == len(addresses)
    assert summary.cycle_seconds >= compose_seconds
    assert summary.workers >= plan.rate * compose_seconds  # Little's law for the composing alone
    assert summary.workers > workers_for(plan.rate, summary.call_seconds, ceiling=AUTO_MAX_WORKERS)
    assert delivered(moto_ses) == {address: 1 for address in addresses}


# --- one rate budget for several processes ------------------------------------------------------

_FORK = multiprocessing.get_context("fork")


def _take_turns(limiter: RateLimiter, turns: int, results) -> None:
    results.put([limiter.acquire().timestamp() for _ in range(turns)])


def _grants_from_processes(limiter: RateLimiter, processes: int, turns: int) -> list[dt.datetime]:
    results = _FORK.Queue()
    children = [_FORK.Process(target=_take_turns, args=(limiter, turns, results)) for _ in range(processes)]
    for child in children:
        child.start()
    times = [stamp for _ in children for stamp in results.get(timeout=120)]
    for child in children:
        child.join()
        assert child.exitcode == 0
    return [dt.datetime.fromtimestamp(stamp, dt.UTC) for stamp in times]


@pytest.mark.parametrize("share", [1.0, 0.9])
def test_a_shared_limiter_caps_every_one_second_window_across_processes(share):
    limiter = RateLimiter.shared(60, share)
    times = _grants_from_processes(limiter, processes=3, turns=50)  # 150 turns: 2.5 s at 60/s
    assert len(times) == 150
    assert busiest_window(times) <= 60 * share


def test_a_slow_down_in_one_process_lowers_the_rate_for_all():
    limiter = RateLimiter.shared(100, 1.0)
    child = _FORK.Process(target=limiter.slow_down)
    child.start()
    child.join()
    assert (limiter.rate, limiter.slow_downs) == (pytest.approx(50, rel=0.05), 1)


# --- several processes against moto -------------------------------------------------------------

PROCESSES, WORKERS = 2, 4


def _group_is_gone(process_group: int) -> bool:
    try:
        os.killpg(process_group, 0)
    except ProcessLookupError:
        return True
    return False


MULTI_PROCESS = ("--processes", str(PROCESSES), "--workers", str(WORKERS))


def signal_a_multi_process_send(tmp_path, signal_it, *, until_in_flight: bool = False) -> tuple[Path, list[str], str, int]:
    """A CLI send of 1,000 recipients in 2 processes x 4 workers, in its own process group; once
    200 are sent (and, if asked, a call is in flight) `signal_it(child)`, then wait for every
    process of the group to end. Returns the config, the addresses, the output and exit code."""
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=500)
    addresses = readers(1000)
    subscribe(config_path, addresses)
    child = start_send(config_path, *MULTI_PROCESS, start_new_session=True)

    def mid_way() -> bool:
        states = list(ledger_states(config_path).values())
        return states.count("sent") >= 200 and (not until_in_flight or "sending" in states)

    try:
        wait_until(mid_way, timeout=120, what="a multi-process send mid-way")
        signal_it(child)
        output, _ = child.communicate(timeout=60)
        wait_until(lambda: _group_is_gone(child.pid), what="every process of the send to end")
    finally:
        if not _group_is_gone(child.pid):
            os.killpg(child.pid, signal.SIGKILL)
    return config_path, addresses, output, child.returncode


def resume(config_path) -> str:
    resumed = start_send(config_path, *MULTI_PROCESS)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    return output


def test_a_multi_process_send_killed_mid_way_resumes_with_no_duplicate_and_no_one_missing(tmp_path, moto_ses, secret):
    """SIGKILL to the whole process group (the parent and its worker processes) while calls are in
    flight: the rows caught mid-call become `unknown`, everyone else gets exactly one copy."""
    config_path, addresses, output, _ = signal_a_multi_process_send(
        tmp_path, lambda child: os.killpg(child.pid, signal.SIGKILL), until_in_flight=True
    )
    assert f"{PROCESSES} processes x {WORKERS} workers" in output
    states = ledger_states(config_path)
    cut_off = {address for address, state in states.items() if state == "sending"}
    assert 1 <= len(cut_off) <= PROCESSES * WORKERS
    assert "pending" in states.values()  # it was killed mid-way, not at the end

    assert "an earlier run was cut off mid-send" in resume(config_path)
    states = ledger_states(config_path)
    unknown = {address for address, state in states.items() if state == "unknown"}
    assert unknown == cut_off
    assert all(states[address] == "sent" for address in addresses if address not in unknown)
    copies = delivered(moto_ses)
    assert max(copies.values()) == 1  # no duplicate
    assert set(addresses) - set(copies) <= unknown  # no one missing but the unknown


@pytest.mark.parametrize(
    "signal_it",
    [lambda child: child.kill(), lambda child: child.send_signal(signal.SIGINT), lambda child: child.send_signal(signal.SIGTERM)],
    ids=["SIGKILL", "SIGINT", "SIGTERM"],
)
def test_a_signal_to_the_parent_alone_stops_every_process_cleanly(tmp_path, moto_ses, secret, signal_it):
    """SIGKILL, Ctrl-C or SIGTERM to the sending process alone: its worker processes do not go on
    sending the list; they record their calls in flight and end, leaving no row `sending`; a
    later run finishes the list."""
    config_path, addresses, output, exit_code = signal_a_multi_process_send(tmp_path, signal_it)
    assert exit_code != 0
    states = ledger_states(config_path)
    assert set(states.values()) == {"sent", "pending"}
    assert set(delivered(moto_ses)) == {address for address, state in states.items() if state == "sent"}
    if exit_code > 0:  # the parent lived to say why
        assert "interrupted by SIG" in output and "still to send" in output

    resume(config_path)
    assert delivered(moto_ses) == {address: 1 for address in addresses}


def send_in_processes(config_path, processes: int, transport_factory):
    """prepare_send + send_issue as the CLI does with --processes, with the test's transports."""
    config = load_config(config_path)
    factory = transport_factory(config)
    plan = dataclasses.replace(prepare_send(ISSUE, config, dry_run=False, transport_factory=factory), processes=processes)
    return send_issue(plan, transport_factory=factory, backoff=Backoff(attempts=3, base=0.01, cap=0.05))


def test_an_account_stop_in_one_process_stops_them_all(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=500, workers=WORKERS)
    addresses = readers(1000)
    subscribe(config_path, addresses)
    stopper = addresses[300]

    def pause_the_account_at_one_recipient(request, **_):
        if stopper.encode() in request.body:
            return ses_error(request, 400, "SendingPausedException", "Sending is paused for this account.")
        return None

    hooks = ses_with_hooks({"before-send.sesv2.SendEmail": pause_the_account_at_one_recipient})
    summary = send_in_processes(config_path, PROCESSES, hooks)
    assert summary.processes == PROCESSES
    assert "Sending is paused for this account." in summary.stopped
    states = ledger_states(config_path)
    assert states[stopper] == "pending"
    # Rows are handed out in order from one queue: after the stop, only calls that had their turn
    # already may finish, in either process; the rest of the list stays pending for a later run.
    sent = [address for address, state in states.items() if state == "sent"]
    assert len(sent) <= 300 + PROCESSES * WORKERS
    assert "sending" not in states.values()
    assert set(delivered(moto_ses)) == set(sent)

    result = cli(config_path, "send", "--yes", str(ISSUE))
    assert result.exit_code == 0, result.output
    assert delivered(moto_ses) == {address: 1 for address in addresses}


def test_a_lost_answer_in_a_worker_process_is_unknown_and_not_sent_again(tmp_path, moto_ses, secret):
    config_path = sending_config(tmp_path / "newsletter.toml", max_send_rate=500, workers=WORKERS)
    addresses = readers(300)
    subscribe(config_path, addresses)
    lost = addresses[150]
    hooks = ses_with_hooks({"before-send.sesv2.SendEmail": deliver_then_lose_the_answer(lost)})
    summary = send_in_processes(config_path, PROCESSES, hooks)
    assert summary.processes == PROCESSES
    assert [(f.address, f.kind) for f in summary.unknown] == [(lost, "OutcomeUnknownError")]
    assert summary.sent == len(addresses) - 1
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    assert delivered(moto_ses) == {address: 1 for address in addresses}  # the lost one not sent again
    assert ledger_states(config_path)[lost] == "unknown"
