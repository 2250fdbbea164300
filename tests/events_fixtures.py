"""Helpers for the feedback-loop tests: a config with [events], SES-format payloads built from
AWS's documented examples (tests/data/events) for chosen recipients and messages, and the queue."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from click.testing import CliRunner

from conftest import add_events_table, write_config
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.store import Store

DATA = Path(__file__).parent / "data" / "events"
SECRET = "a-test-secret-that-is-long-enough-0123456789"


def events_config(tmp_path: Path, name: str = "newsletter.toml", **settings) -> Path:
    """A config in tmp_path with an [events] table: no long polling, messages back after 1 s."""
    settings = {"wait_seconds": 0, "visibility_timeout": 1, **settings}
    return add_events_table(write_config(tmp_path / name), **settings)


def cli(config_path: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config_path), *args])


def cli_json(config_path: Path, *args: str) -> dict:
    result = cli(config_path, *args, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def example(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _now(at: dt.datetime | None = None) -> str:
    return (at or dt.datetime.now(dt.UTC)).isoformat().replace("+00:00", "Z")


def ses_event(name: str, address: str, message_id: str, at: dt.datetime | None = None, **bounce) -> dict:
    """The documented example `name`, about `address` and SES MessageId `message_id`, happening
    `at` (default now)."""
    payload = copy.deepcopy(example(name))
    payload["mail"].update(messageId=message_id, destination=[address], timestamp=_now(at))
    for key in ("bounce", "complaint", "delivery", "deliveryDelay"):
        if key in payload:
            payload[key]["timestamp"] = _now(at)
    if "bounce" in payload:
        payload["bounce"]["bouncedRecipients"][0]["emailAddress"] = address
        payload["bounce"].update(bounce)
    if "complaint" in payload:
        payload["complaint"]["complainedRecipients"] = [{"emailAddress": address}]
    if "delivery" in payload:
        payload["delivery"]["recipients"] = [address]
    return payload


def inbound_unsubscribe(sender: str, subject: str, recipient: str = "unsubscribe@newsletter.example.com",
                        **verdicts: str) -> dict:
    """Mail to the unsubscribe address from `sender`; `verdicts` set SES's, e.g. dmarcVerdict="FAIL"."""
    payload = copy.deepcopy(example("received-sns-action.json"))
    payload["receipt"].update(recipients=[recipient], timestamp=_now())
    payload["receipt"].update({name: {"status": status} for name, status in verdicts.items()})
    payload["mail"]["commonHeaders"].update({"from": [sender], "subject": subject, "to": [recipient]})
    return payload


def publish(moto_events, *payloads: dict) -> None:
    """Publish SES-format payloads to the events topic (SNS delivers them to the queue)."""
    sns, topic = moto_events.client("sns"), topic_arn(moto_events)
    for payload in payloads:
        sns.publish(TopicArn=topic, Message=json.dumps(payload))


# A second process that receives every message on the queue with its own visibility timeout and
# exits without deleting any: what a sync killed, cut off or still busy leaves in flight.
_HOLDER = """
import sys, boto3
sqs = boto3.client("sqs", endpoint_url=sys.argv[1], region_name="us-east-1")
url = sqs.get_queue_url(QueueName="newsletter-events")["QueueUrl"]
held = 0
while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=int(sys.argv[2])).get("Messages"):
    held += len(got)
print(held)
"""


def hold_in_another_process(moto_events, visibility_timeout: int) -> int:
    """Every queued message received (and left undeleted) by another process; how many."""
    done = subprocess.run([sys.executable, "-c", _HOLDER, moto_events.endpoint_url, str(visibility_timeout)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=120, check=True)
    return int(done.stdout)


def sns_envelope(payload: dict, message_id: str | None = None) -> str:
    """What SQS holds for a message SNS delivered to it (RawMessageDelivery off)."""
    return json.dumps({
        "Type": "Notification", "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:newsletter-events", "Message": json.dumps(payload),
        "Timestamp": _now(), "SignatureVersion": "1", "Signature": "x",
    })


def queue_url(moto_events, name: str = "newsletter-events") -> str:
    return moto_events.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def topic_arn(moto_events, name: str = "newsletter-events") -> str:
    return next(t["TopicArn"] for t in moto_events.client("sns").list_topics()["Topics"] if t["TopicArn"].endswith(":" + name))


def queue_depth(moto_events, name: str = "newsletter-events") -> int:
    attributes = moto_events.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(moto_events, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def query(config_path: Path, sql: str, *parameters) -> list[tuple]:
    with Store.open(load_config(config_path).database) as store:
        return store.connection.execute(sql, parameters).fetchall()


def statuses(config_path: Path) -> dict[str, str]:
    return dict(query(config_path, "SELECT address, status FROM subscriber"))


def message_ids(config_path: Path, issue_id: str) -> dict[str, str]:
    return dict(query(config_path, "SELECT address, message_id FROM delivery WHERE issue_id = ?", issue_id))


def start_cli(config_path: Path, *args: str) -> subprocess.Popen:
    """`newsletter ARGS` in a child process (environment inherited: credentials, endpoints, key)."""
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(config_path), *args],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
