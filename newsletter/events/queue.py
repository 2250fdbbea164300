"""The SQS queue that carries every event to `newsletter sync`: writing our own events to it
(the unsubscribe endpoint, the subscribe form) and reading and deleting in batches.

    queue = EventQueue.from_config(config)
    queue.put(Unsubscribe(address))          # returns once SQS has accepted it

or, once: `put_event(config, SubscribeConfirmed(address, name))`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..aws.clients import Clients, failures_as
from ..config import Config, EventSettings
from ..errors import AwsError, ConfigError
from .model import OwnEvent

# SQS hands out at most 10 messages per ReceiveMessage and deletes at most 10 per batch.
BATCH = 10


@dataclass(frozen=True)
class Received:
    """One message as SQS handed it out."""

    sqs_id: str
    receipt_handle: str
    body: str
    receive_count: int  # how often SQS has handed it out, this time included


def settings_of(config: Config) -> EventSettings:
    if config.events is None:
        raise ConfigError("no [events] table: the feedback loop is not set up (see docs/deploy.md)", path=config.path)
    return config.events


class EventQueue:
    def __init__(self, settings: EventSettings, clients: Clients | None = None):
        self.settings = settings
        self.clients = clients or Clients(settings)
        self._url: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> EventQueue:
        return cls(settings_of(config))

    @property
    def sqs(self):
        return self.clients("sqs")

    @property
    def url(self) -> str:
        if self._url is None:
            with failures_as(f"find queue {self.settings.queue!r}", self.settings):
                self._url = self.sqs.get_queue_url(QueueName=self.settings.queue)["QueueUrl"]
        return self._url

    def put(self, event: OwnEvent) -> str:
        """Send one of our own events; returns SQS's MessageId once SQS has accepted it."""
        body = json.dumps(event.to_dict(), ensure_ascii=False)
        with failures_as(f"put a {event.type} event on queue {self.settings.queue!r}", self.settings):
            return self.sqs.send_message(QueueUrl=self.url, MessageBody=body)["MessageId"]

    def receive(self, *, wait_seconds: int | None = None) -> list[Received]:
        """Up to BATCH messages, each hidden from other readers for the visibility timeout."""
        wait = self.settings.wait_seconds if wait_seconds is None else wait_seconds
        with failures_as(f"receive from queue {self.settings.queue!r}", self.settings):
            answer = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=wait,
                VisibilityTimeout=self.settings.visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        return [
            Received(m["MessageId"], m["ReceiptHandle"], m["Body"],
                     int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
            for m in answer.get("Messages", [])
        ]

    def delete(self, messages: list[Received]) -> list[str]:
        """Delete applied messages (BATCH at a time); returns the SQS ids SQS failed to delete
        (they come back later and are recognised as already applied)."""
        failed: list[str] = []
        for start in range(0, len(messages), BATCH):
            batch = messages[start : start + BATCH]
            entries = [{"Id": str(n), "ReceiptHandle": m.receipt_handle} for n, m in enumerate(batch)]
            with failures_as(f"delete from queue {self.settings.queue!r}", self.settings):
                answer = self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
            failed += [batch[int(f["Id"])].sqs_id for f in answer.get("Failed", [])]
        return failed

    def in_flight(self) -> int:
        """How many messages readers hold hidden (received, not yet deleted): SQS's
        ApproximateNumberOfMessagesNotVisible."""
        with failures_as(f"read the attributes of queue {self.settings.queue!r}", self.settings):
            answer = self.sqs.get_queue_attributes(QueueUrl=self.url,
                                                   AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
        return int(answer.get("Attributes", {}).get("ApproximateNumberOfMessagesNotVisible", 0))

    def release(self, messages: list[Received]) -> None:
        """Make messages visible again now (BATCH at a time). Best effort: one that cannot be
        released comes back at the end of its visibility timeout anyway."""
        for start in range(0, len(messages), BATCH):
            batch = messages[start : start + BATCH]
            entries = [{"Id": str(n), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                       for n, m in enumerate(batch)]
            try:
                with failures_as(f"release messages on queue {self.settings.queue!r}", self.settings):
                    self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            except AwsError:
                return

    def close(self) -> None:
        self.clients.close()


def put_event(config: Config, event: OwnEvent) -> str:
    """Put one of our own events on the configured queue (AwsError if SQS does not accept it)."""
    queue = EventQueue.from_config(config)
    try:
        return queue.put(event)
    finally:
        queue.close()
