"""Events in flight: messages another reader received and has not deleted (a sync killed, cut off
or still busy) are hidden for the visibility timeout. A sync waits them out, and a list send does
not start while any remain. Two real processes against moto's SNS and SQS over HTTP."""

from __future__ import annotations

import signal

from events_fixtures import (
    cli,
    cli_json,
    events_config,
    hold_in_another_process,
    publish,
    query,
    queue_depth,
    ses_event,
    start_cli,
    statuses,
)
from newsletter.config import load_config
from newsletter.events import Unsubscribe, put_event
from sending_fixtures import ISSUE, wait_until
from test_feedback_loop import queue_transient_bounces, recipients, secret, subscribe  # noqa: F401

READERS = ["angry@example.com", "leaver@example.com", "stays@example.com"]


def queue_a_complaint_and_an_unsubscribe(config_path, moto_events) -> None:
    publish(moto_events, ses_event("event-complaint.json", "angry@example.com", "sent-elsewhere"))
    put_event(load_config(config_path), Unsubscribe("leaver@example.com"))


def test_a_send_waits_out_events_another_process_holds_and_mails_none_of_those_readers(
        tmp_path, moto_events, secret):
    config_path = events_config(tmp_path, visibility_timeout=3)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, READERS)
    queue_a_complaint_and_an_unsubscribe(config_path, moto_events)
    assert hold_in_another_process(moto_events, visibility_timeout=3) == 2  # a sync that received, then died

    sent = cli(config_path, "send", "--yes", str(ISSUE))
    assert sent.exit_code == 0, sent.output + sent.stderr
    assert "sync: 2 message(s) in flight (received by another sync, or by one that stopped before deleting them): " \
           "waiting up to 3 s" in sent.stderr
    assert statuses(config_path) == {"angry@example.com": "complained", "leaver@example.com": "unsubscribed",
                                     "stays@example.com": "subscribed"}
    assert recipients(moto_events.ses.messages()) == ["stays@example.com"]


def test_a_send_refuses_while_events_stay_in_flight_and_says_when_to_try_again(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path, visibility_timeout=1)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, READERS)
    queue_a_complaint_and_an_unsubscribe(config_path, moto_events)
    hold_in_another_process(moto_events, visibility_timeout=120)  # a reader configured for longer

    refused = cli(config_path, "send", "--yes", str(ISSUE))
    assert refused.exit_code == 1
    assert "waiting up to 1 s" in refused.stderr
    assert "not sending: 2 event(s) are still in flight on queue 'newsletter-events' after waiting" in refused.stderr
    assert "try again in 1 s, or send without the feedback with --no-sync" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert moto_events.ses.messages() == []


def test_a_sync_started_while_another_holds_messages_applies_them_before_it_ends(tmp_path, moto_events):
    config_path = events_config(tmp_path, visibility_timeout=2)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, READERS)
    queue_a_complaint_and_an_unsubscribe(config_path, moto_events)
    hold_in_another_process(moto_events, visibility_timeout=2)

    summary = cli_json(config_path, "sync")
    assert summary["applied"] == {"complaint": 1, "unsubscribe": 1} and summary["in_flight"] == 0
    assert summary["waited_seconds"] > 0
    assert queue_depth(moto_events) == 0


def test_kill_9_of_one_of_two_concurrent_syncs_leaves_the_other_to_apply_everything_exactly_once(
        tmp_path, moto_events):
    # What the victim held stays hidden 8 s: longer than the survivor needs for the rest.
    config_path = events_config(tmp_path, transient_bounce_limit=1000, visibility_timeout=8)
    assert cli(config_path, "setup", "aws").exit_code == 0
    total = 300
    queue_transient_bounces(moto_events, total)
    query(config_path, "SELECT 1")  # create the database before the children write to it
    applied = lambda: query(config_path, "SELECT count(*) FROM applied_event")[0][0]  # noqa: E731

    victim, survivor = start_cli(config_path, "sync"), start_cli(config_path, "sync")
    # Killed near the end, holding its last batches: the survivor soon finds nothing visible.
    wait_until(lambda: applied() >= total - 40 or victim.poll() is not None, timeout=180,
               what="the syncs applying events")
    assert victim.poll() is None, "the sync finished before it could be killed; queue more messages"
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    out, err = survivor.communicate(timeout=180)
    assert survivor.returncode == 0, err

    # Once the survivor has ended, everything is applied: it waited for what the victim held.
    assert applied() == total
    assert query(config_path, "SELECT count(*), count(DISTINCT address_key) FROM transient_bounce")[0] == (total, total)
    assert queue_depth(moto_events) == 0
