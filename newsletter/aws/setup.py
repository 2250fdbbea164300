"""`newsletter setup aws`: create, or check and repair, the AWS parts of the feedback loop.

    SES configuration set --event destination--> SNS topic --subscription--> SQS queue --> DLQ
    SES receipt rule (unsubscribe address) --SNS action--^

Every step looks first and changes only what is missing or different, so running it again
creates nothing. The SES parts use the SES v1 API (event destinations and receipt rules are the
same resources in v1 and v2; local emulators have only v1 for them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from botocore.exceptions import ClientError

from ..config import EventSettings
from ..errors import AwsError
from .clients import Clients, failures_as, is_missing

# SES v1 names of the event types the configuration set publishes.
EVENT_TYPES = ("send", "reject", "bounce", "complaint", "delivery", "deliveryDelay", "renderingFailure")
TRACKING_EVENT_TYPES = ("open", "click")
EVENT_DESTINATION = "newsletter-sns"
RECEIPT_RULE = "newsletter-unsubscribe"
RECEIPT_RULE_SET = "newsletter"
RETENTION_SECONDS = 14 * 24 * 3600  # SQS's longest: bounces wait for the editor's next sync


@dataclass(frozen=True)
class Step:
    resource: str  # "SNS topic", "SQS queue", ...
    name: str
    action: str  # created | exists | repaired | would create | would repair
    detail: str = ""


@dataclass
class SetupReport:
    dry_run: bool
    topic_arn: str | None = None
    queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    configuration_set: str | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(step.action != "exists" for step in self.steps)

    def to_dict(self) -> dict:
        return {
            "topic_arn": self.topic_arn, "queue_url": self.queue_url,
            "dead_letter_queue_url": self.dead_letter_queue_url, "configuration_set": self.configuration_set,
            "dry_run": self.dry_run, "steps": [asdict(step) for step in self.steps],
        }


def event_types(settings: EventSettings) -> list[str]:
    return [*EVENT_TYPES, *(TRACKING_EVENT_TYPES if settings.tracking else ())]


def queue_policy(queue_arn: str, topic_arn: str) -> dict:
    """Only our topic may send to the queue."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "newsletter-events-from-sns",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    }


class _Setup:
    def __init__(self, settings: EventSettings, clients: Clients, dry_run: bool):
        self.settings = settings
        self.clients = clients
        self.report = SetupReport(dry_run=dry_run, configuration_set=settings.configuration_set)

    def step(self, resource: str, name: str, action: str, detail: str = "") -> None:
        """Record `action` (create, repair or exists) as done, or as what a dry run would do."""
        done = {"create": "created", "repair": "repaired", "exists": "exists"}[action]
        if self.report.dry_run and action != "exists":
            done = f"would {action}"
        self.report.steps.append(Step(resource, name, done, detail))

    def guard(self, doing: str):
        return failures_as(doing, self.settings)

    # --- SNS topic ------------------------------------------------------------------------------

    def topic(self) -> str | None:
        sns, name = self.clients("sns"), self.settings.topic
        with self.guard(f"list SNS topics (looking for {name!r})"):
            for page in sns.get_paginator("list_topics").paginate():
                for topic in page.get("Topics", []):
                    if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                        self.step("SNS topic", name, "exists")
                        return topic["TopicArn"]
        self.step("SNS topic", name, "create")
        if self.report.dry_run:
            return None
        with self.guard(f"create SNS topic {name!r}"):
            return sns.create_topic(Name=name)["TopicArn"]

    # --- SQS queues -----------------------------------------------------------------------------

    def queue(self, name: str, wanted: dict[str, str], resource: str) -> tuple[str | None, str | None]:
        """(url, arn) of queue `name` with `wanted` attributes, created or repaired."""
        sqs = self.clients("sqs")
        try:
            with self.guard(f"look up SQS queue {name!r}"):
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except AwsError as error:
            if error.code != "QueueDoesNotExist":
                raise
            self.step(resource, name, "create")
            if self.report.dry_run:
                return None, None
            with self.guard(f"create SQS queue {name!r}"):
                url = sqs.create_queue(QueueName=name, Attributes=wanted)["QueueUrl"]
            return url, self.queue_arn(url)
        with self.guard(f"read SQS queue {name!r}'s attributes"):
            have = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        different = {key: value for key, value in wanted.items() if not _same_attribute(have.get(key), value)}
        if different:
            self.step(resource, name, "repair", "set " + ", ".join(sorted(different)))
            if not self.report.dry_run:
                with self.guard(f"repair SQS queue {name!r}"):
                    sqs.set_queue_attributes(QueueUrl=url, Attributes=different)
        else:
            self.step(resource, name, "exists")
        return url, have["QueueArn"]

    def queue_arn(self, url: str) -> str:
        with self.guard("read a queue's ARN"):
            return self.clients("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def subscription(self, topic_arn: str | None, queue_arn: str | None) -> None:
        name = f"{self.settings.topic} -> {self.settings.queue}"
        if topic_arn and queue_arn:
            sns = self.clients("sns")
            with self.guard(f"list subscriptions of SNS topic {self.settings.topic!r}"):
                for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
                    if any(s["Protocol"] == "sqs" and s["Endpoint"] == queue_arn for s in page.get("Subscriptions", [])):
                        self.step("SNS subscription", name, "exists")
                        return
        self.step("SNS subscription", name, "create")
        if not self.report.dry_run:
            with self.guard(f"subscribe queue {self.settings.queue!r} to topic {self.settings.topic!r}"):
                self.clients("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    # --- SES ------------------------------------------------------------------------------------

    def configuration_set(self, topic_arn: str | None) -> None:
        ses, name = self.clients("ses"), self.settings.configuration_set
        wanted = {
            "Name": EVENT_DESTINATION, "Enabled": True, "MatchingEventTypes": event_types(self.settings),
            "SNSDestination": {"TopicARN": topic_arn or "(the topic)"},
        }
        try:
            with self.guard(f"read SES configuration set {name!r}"):
                found = ses.describe_configuration_set(
                    ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"])
        except AwsError as error:
            if error.code != "ConfigurationSetDoesNotExist":
                raise
            self.step("SES configuration set", name, "create")
            self.step("SES event destination", f"{name}/{EVENT_DESTINATION}", "create", ", ".join(wanted["MatchingEventTypes"]))
            if not self.report.dry_run:
                with self.guard(f"create SES configuration set {name!r}"):
                    ses.create_configuration_set(ConfigurationSet={"Name": name})
                    ses.create_configuration_set_event_destination(ConfigurationSetName=name, EventDestination=wanted)
            return
        self.step("SES configuration set", name, "exists")
        have = next((d for d in found.get("EventDestinations", []) if d["Name"] == EVENT_DESTINATION), None)
        label = f"{name}/{EVENT_DESTINATION}"
        if have is None:
            self.step("SES event destination", label, "create", ", ".join(wanted["MatchingEventTypes"]))
            if not self.report.dry_run:
                with self.guard(f"add an event destination to SES configuration set {name!r}"):
                    ses.create_configuration_set_event_destination(ConfigurationSetName=name, EventDestination=wanted)
        elif (sorted(have.get("MatchingEventTypes", [])) != sorted(wanted["MatchingEventTypes"])
              or not have.get("Enabled") or have.get("SNSDestination", {}).get("TopicARN") != topic_arn):
            self.step("SES event destination", label, "repair", ", ".join(wanted["MatchingEventTypes"]))
            if not self.report.dry_run:
                with self.guard(f"update the event destination of SES configuration set {name!r}"):
                    ses.update_configuration_set_event_destination(ConfigurationSetName=name, EventDestination=wanted)
        else:
            self.step("SES event destination", label, "exists")

    def receipt_rule(self, topic_arn: str | None) -> None:
        address = self.settings.inbound_address
        if not address:
            return
        ses = self.clients("ses")
        with self.guard("read the active SES receipt rule set"):
            active = ses.describe_active_receipt_rule_set().get("Metadata", {}).get("Name")
        # Only one rule set is active per region: join the one in use rather than replace it.
        rule_set = active or RECEIPT_RULE_SET
        if not active:
            self.step("SES receipt rule set", rule_set, "create", "and made active")
            if not self.report.dry_run:
                with self.guard(f"create SES receipt rule set {rule_set!r}"):
                    try:
                        ses.create_receipt_rule_set(RuleSetName=rule_set)
                    except ClientError as error:
                        if not is_missing(error, "AlreadyExists"):
                            raise
                    ses.set_active_receipt_rule_set(RuleSetName=rule_set)
        wanted = {
            "Name": RECEIPT_RULE, "Enabled": True, "Recipients": [address], "ScanEnabled": True,
            "Actions": [{"SNSAction": {"TopicArn": topic_arn or "(the topic)", "Encoding": "UTF-8"}}],
        }
        have = None
        if active:
            try:
                with self.guard(f"read SES receipt rule {RECEIPT_RULE!r}"):
                    have = ses.describe_receipt_rule(RuleSetName=rule_set, RuleName=RECEIPT_RULE)["Rule"]
            except AwsError as error:
                if error.code != "RuleDoesNotExist":
                    raise
        label = f"{rule_set}/{RECEIPT_RULE}"
        if have is None:
            self.step("SES receipt rule", label, "create", f"mail to {address} -> SNS")
            if not self.report.dry_run:
                with self.guard(f"create SES receipt rule {RECEIPT_RULE!r}"):
                    ses.create_receipt_rule(RuleSetName=rule_set, Rule=wanted)
        elif (have.get("Recipients") != [address] or not have.get("Enabled")
              or [a.get("SNSAction", {}).get("TopicArn") for a in have.get("Actions", [])] != [topic_arn]):
            self.step("SES receipt rule", label, "repair", f"mail to {address} -> SNS")
            if not self.report.dry_run:
                with self.guard(f"update SES receipt rule {RECEIPT_RULE!r}"):
                    ses.update_receipt_rule(RuleSetName=rule_set, Rule=wanted)
        else:
            self.step("SES receipt rule", label, "exists")

    def run(self) -> SetupReport:
        settings, report = self.settings, self.report
        report.topic_arn = topic_arn = self.topic()
        report.dead_letter_queue_url, dlq_arn = self.queue(
            settings.dead_letter_queue, {"MessageRetentionPeriod": str(RETENTION_SECONDS)}, "SQS dead-letter queue")
        wanted = {
            "MessageRetentionPeriod": str(RETENTION_SECONDS),
            "VisibilityTimeout": str(settings.visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn or "(the dead-letter queue)",
                                         "maxReceiveCount": settings.max_receive_count}),
        }
        queue_arn = None
        if topic_arn:
            # The queue's ARN is known before it exists: the policy can be set at creation.
            queue_arn = f"arn:aws:sqs:{topic_arn.split(':')[3]}:{topic_arn.split(':')[4]}:{settings.queue}"
            wanted["Policy"] = json.dumps(queue_policy(queue_arn, topic_arn))
        report.queue_url, queue_arn = self.queue(settings.queue, wanted, "SQS queue")
        self.subscription(topic_arn, queue_arn)
        self.configuration_set(topic_arn)
        self.receipt_rule(topic_arn)
        return report


def _same_attribute(have: str | None, wanted: str) -> bool:
    if have is None:
        return False
    if wanted.startswith("{"):
        try:
            return _normal(json.loads(have)) == _normal(json.loads(wanted))
        except ValueError:
            return False
    return have == wanted


def _normal(value):
    """JSON with numbers as strings (SQS gives maxReceiveCount back as a number or a string)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return str(value)


def setup_aws(settings: EventSettings, *, dry_run: bool = False, clients: Clients | None = None) -> SetupReport:
    own = clients is None
    clients = clients or Clients(settings)
    try:
        return _Setup(settings, clients, dry_run).run()
    finally:
        if own:
            clients.close()
