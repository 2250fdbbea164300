"""Our own events onto the SQS queue (`put_event`), against moto's SQS over HTTP."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conftest import add_events_table, write_config
from newsletter.config import load_config
from newsletter.errors import AwsError, ConfigError
from newsletter.events import EventQueue, SubscribeConfirmed, Unsubscribe, put_event


def test_put_event_puts_our_json_on_the_queue(tmp_path, moto_events):
    config = load_config(add_events_table(write_config(tmp_path / "newsletter.toml"), queue="q-own"))
    url = moto_events.client("sqs").create_queue(QueueName="q-own")["QueueUrl"]
    confirmed_at = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
    put_event(config, SubscribeConfirmed("독자@example.com", "김독자", confirmed_at, id="e1"))
    put_event(config, Unsubscribe("leaver@example.com", at=confirmed_at, id="e2"))
    bodies = [json.loads(m["Body"]) for m in moto_events.client("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert sorted(bodies, key=lambda b: b["id"]) == [
        {"type": "subscribe_confirmed", "id": "e1", "address": "독자@example.com", "name": "김독자",
         "confirmed_at": "2026-11-20T09:30:00+00:00", "requested_at": None, "edition": None},
        {"type": "unsubscribe", "id": "e2", "address": "leaver@example.com",
         "reason": "one-click (List-Unsubscribe-Post)", "at": "2026-11-20T09:30:00+00:00"},
    ]


def test_put_event_to_a_missing_queue_says_so_in_one_line(tmp_path, moto_events):
    config = load_config(add_events_table(write_config(tmp_path / "newsletter.toml"), queue="nowhere"))
    with pytest.raises(AwsError) as caught:
        put_event(config, Unsubscribe("a@example.com"))
    assert caught.value.code == "QueueDoesNotExist"
    assert "does not exist in us-east-1" in str(caught.value) and "\n" not in str(caught.value)


def test_event_queue_needs_an_events_table(tmp_path):
    with pytest.raises(ConfigError, match=r"no \[events\] table"):
        EventQueue.from_config(load_config(write_config(tmp_path / "newsletter.toml")))


def test_the_send_uses_the_events_configuration_set_and_a_different_one_is_refused(tmp_path):
    path = write_config(tmp_path / "newsletter.toml")
    path.write_text(path.read_text(encoding="utf-8").replace('configuration_set = "newsletter"\n', ""), encoding="utf-8")
    assert load_config(path).ses.configuration_set is None
    add_events_table(path, configuration_set="feedback")
    assert load_config(path).ses.configuration_set == "feedback"  # what the SES transport sends with
    clash = add_events_table(write_config(tmp_path / "clash.toml"), configuration_set="other")
    with pytest.raises(ConfigError, match="events.configuration_set: 'other' differs from transport.ses"):
        load_config(clash)
