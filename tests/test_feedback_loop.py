"""The feedback loop end to end against moto's server on 127.0.0.1 (SES, SNS and SQS real in it):
`setup aws`, a send, SES-format events published to the topic, `sync`, the next send."""

from __future__ import annotations

import json
import re
import signal

import pytest

from events_fixtures import (
    SECRET,
    cli,
    cli_json,
    events_config,
    inbound_unsubscribe,
    message_ids,
    query,
    queue_depth,
    queue_url,
    ses_event,
    sns_envelope,
    start_cli,
    statuses,
    topic_arn,
)
from sending_fixtures import ISSUE, wait_until
from newsletter.config import load_config
from newsletter.unsubscribe import SigningKey, TokenSigner

LIST = ["hard@example.com", "angry@example.com", "fine@example.com", "mailer@example.com", "soft@example.com",
        "keep@example.com"]


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def subscribe(config_path, addresses) -> None:
    for address in addresses:
        assert cli(config_path, "subscribers", "add", address).exit_code == 0


def second_issue(tmp_path):
    """The sample issue a week later (another issue id)."""
    path = tmp_path / "2023-10-23.md"
    path.write_text(ISSUE.read_text(encoding="utf-8").replace("date: 2023-10-16", "date: 2023-10-23"), encoding="utf-8")
    return path


def recipients(messages) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in messages)


def test_setup_aws_twice_creates_everything_then_nothing(tmp_path, moto_events):
    config_path = events_config(tmp_path, inbound_address="unsubscribe@newsletter.example.com")
    dry = cli_json(config_path, "setup", "aws", "--dry-run")
    assert {step["action"] for step in dry["steps"]} == {"would create"}
    assert moto_events.client("sqs").list_queues().get("QueueUrls", []) == []  # the dry run changed nothing

    first = cli_json(config_path, "setup", "aws")
    assert {step["action"] for step in first["steps"]} == {"created"}
    assert [step["resource"] for step in first["steps"]] == [
        "SNS topic", "SQS dead-letter queue", "SQS queue", "SNS subscription", "SES configuration set",
        "SES event destination", "SES receipt rule set", "SES receipt rule"]
    sqs, sns, ses = (moto_events.client(name) for name in ("sqs", "sns", "ses"))
    attributes = sqs.get_queue_attributes(QueueUrl=first["queue_url"], AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=first["dead_letter_queue_url"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    policy = json.loads(attributes["Policy"])["Statement"][0]
    assert policy["Condition"] == {"ArnEquals": {"aws:SourceArn": first["topic_arn"]}}
    assert [s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=first["topic_arn"])["Subscriptions"]] == [
        attributes["QueueArn"]]
    destination = ses.describe_configuration_set(
        ConfigurationSetName="newsletter", ConfigurationSetAttributeNames=["eventDestinations"])["EventDestinations"][0]
    assert sorted(destination["MatchingEventTypes"]) == sorted(
        ["send", "reject", "bounce", "complaint", "delivery", "deliveryDelay", "renderingFailure"])
    assert destination["SNSDestination"]["TopicARN"] == first["topic_arn"]
    rule = ses.describe_receipt_rule(RuleSetName="newsletter", RuleName="newsletter-unsubscribe")["Rule"]
    assert rule["Recipients"] == ["unsubscribe@newsletter.example.com"]
    assert rule["Actions"][0]["SNSAction"]["TopicArn"] == first["topic_arn"]

    second = cli(config_path, "setup", "aws")
    assert second.exit_code == 0
    assert "created" not in second.stdout and "would" not in second.stdout
    assert "nothing to do" in second.stdout
    again = cli_json(config_path, "setup", "aws")
    assert {step["action"] for step in again["steps"]} == {"exists"}
    assert {k: again[k] for k in ("topic_arn", "queue_url", "dead_letter_queue_url")} == {
        k: first[k] for k in ("topic_arn", "queue_url", "dead_letter_queue_url")}
    assert len(sqs.list_queues()["QueueUrls"]) == 2


def test_setup_aws_repairs_a_changed_queue_and_a_lost_subscription(tmp_path, moto_events):
    config_path = events_config(tmp_path)
    first = cli_json(config_path, "setup", "aws")
    sqs, sns = moto_events.client("sqs"), moto_events.client("sns")
    # Someone changed the queue by hand and dropped its policy (moto 5.2.5 also drops the Policy
    # whenever another attribute is set, so both are changed here on purpose).
    sqs.set_queue_attributes(QueueUrl=first["queue_url"], Attributes={"VisibilityTimeout": "5", "Policy": ""})
    subscription = sns.list_subscriptions_by_topic(TopicArn=first["topic_arn"])["Subscriptions"][0]
    sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])

    dry = cli_json(config_path, "setup", "aws", "--dry-run")
    assert {(s["resource"], s["action"]) for s in dry["steps"] if s["action"] != "exists"} == {
        ("SQS queue", "would repair"), ("SNS subscription", "would create")}
    assert sqs.get_queue_attributes(QueueUrl=first["queue_url"], AttributeNames=["VisibilityTimeout"])[
        "Attributes"]["VisibilityTimeout"] == "5"

    repaired = cli_json(config_path, "setup", "aws")
    changed = {(s["resource"], s["action"], s["detail"]) for s in repaired["steps"] if s["action"] != "exists"}
    assert changed == {("SQS queue", "repaired", "set Policy, VisibilityTimeout"), ("SNS subscription", "created", "")}
    assert sqs.get_queue_attributes(QueueUrl=first["queue_url"], AttributeNames=["VisibilityTimeout"])[
        "Attributes"]["VisibilityTimeout"] == "1"
    assert len(sns.list_subscriptions_by_topic(TopicArn=first["topic_arn"])["Subscriptions"]) == 1
    assert {s["action"] for s in cli_json(config_path, "setup", "aws")["steps"]} == {"exists"}


def test_bounces_complaints_and_unsubscribe_mail_reach_the_list_before_the_next_send(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path, inbound_address="unsubscribe@newsletter.example.com")
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, LIST)
    first_send = cli(config_path, "send", "--yes", str(ISSUE))
    assert first_send.exit_code == 0, first_send.output + first_send.stderr
    assert "sync: 0 message(s)" in first_send.stderr
    sent = message_ids(config_path, "2023-10-16")
    assert sorted(sent) == sorted(LIST) and all(sent.values())

    sns, sqs = moto_events.client("sns"), moto_events.client("sqs")
    topic, url = topic_arn(moto_events), queue_url(moto_events)
    token = TokenSigner(load_config(config_path).list_id, SigningKey(SECRET.encode(), "test")).token("mailer@example.com")
    for payload in (
        ses_event("event-bounce.json", "hard@example.com", sent["hard@example.com"]),
        ses_event("event-complaint.json", "angry@example.com", sent["angry@example.com"]),
        ses_event("event-delivery.json", "fine@example.com", sent["fine@example.com"]),
        ses_event("event-delivery.json", "keep@example.com", sent["keep@example.com"]),
        ses_event("event-bounce.json", "soft@example.com", sent["soft@example.com"], bounceType="Transient",
                  bounceSubType="MailboxFull"),
        inbound_unsubscribe("Someone Else <other@example.net>", f"unsubscribe-{token}"),
    ):
        sns.publish(TopicArn=topic, Message=json.dumps(payload))
    # SQS delivers at least once: the same SNS message twice. And one that is not JSON at all.
    copy = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=0)["Messages"][0]
    sqs.send_message(QueueUrl=url, MessageBody=copy["Body"])
    malformed_id = sqs.send_message(QueueUrl=url, MessageBody="{this is not json")["MessageId"]

    summary = cli_json(config_path, "sync")
    assert summary["applied"] == {"bounce": 1, "complaint": 1, "delivery": 2, "soft_bounce": 1, "unsubscribe_mail": 1}
    assert summary["duplicates"] == 1
    assert [m["sqs_id"] for m in summary["malformed"]] == [malformed_id]
    assert summary["list_changes"] == {"bounced": 1, "complained": 1, "unsubscribed": 1}
    assert statuses(config_path) == {
        "hard@example.com": "bounced", "angry@example.com": "complained", "mailer@example.com": "unsubscribed",
        "fine@example.com": "subscribed", "soft@example.com": "subscribed", "keep@example.com": "subscribed"}
    assert dict(query(config_path, "SELECT address, feedback FROM delivery")) == {
        "hard@example.com": "bounce", "angry@example.com": "complaint", "fine@example.com": "delivery",
        "keep@example.com": "delivery", "soft@example.com": "soft_bounce", "mailer@example.com": None}

    # Syncing again applies nothing twice; the malformed message stays until the DLQ takes it.
    assert cli_json(config_path, "sync")["applied"] == {}
    status = cli_json(config_path, "status", str(ISSUE))["feedback"]
    assert status["sent"] == 6
    assert status["recipients"] == {"delivered": 2, "bounced_hard": 1, "bounced_soft": 1, "complained": 1,
                                    "rejected": 0, "delayed": 0, "rendering_failed": 0, "opened": 0, "clicked": 0}
    assert status["rates"]["bounced_hard"] == pytest.approx(1 / 6, abs=1e-6)

    # The last issue bounced 1 of 6 (16.7%): far too few messages to be a rate SES would judge the
    # account by, so the next send warns (saying `sync` took them off) and skips the bounced, the
    # complained and the unsubscribed.
    issue2 = second_issue(tmp_path)
    before = len(moto_events.ses.messages())
    second = cli(config_path, "send", "--yes", str(issue2))
    assert second.exit_code == 0, second.output + second.stderr
    assert ("warning: our numbers over 2023-10-16: bounce rate 16.7% (1 of 6); complaint rate 16.67% (1 of 6), over "
            "SES's review threshold (5% / 0.1%); `sync` has already taken those addresses off the list (1 bounced, "
            "1 complained), so this send does not mail them. 6 messages are too few to judge a rate by") in second.stderr
    assert recipients(moto_events.ses.messages()[before:]) == ["fine@example.com", "keep@example.com",
                                                               "soft@example.com"]


def test_a_malformed_message_goes_to_the_dead_letter_queue_and_blocks_nothing(tmp_path, moto_events):
    config_path = events_config(tmp_path, max_receive_count=2)
    assert cli(config_path, "setup", "aws").exit_code == 0
    sqs = moto_events.client("sqs")
    url, dlq = queue_url(moto_events), queue_url(moto_events, "newsletter-events-dlq")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"eventType": "Bounce", "mail": {}}))
    sqs.send_message(QueueUrl=url, MessageBody=sns_envelope(
        ses_event("event-complaint.json", "angry@example.com", "not-in-the-ledger")))
    first = cli_json(config_path, "sync")
    assert first["applied"] == {"complaint": 1} and first["unmatched"] == 1
    assert [m["reason"] for m in first["malformed"]] == ["SES event: no 'mail' dict"]
    assert statuses(config_path) == {"angry@example.com": "complained"}  # recorded: never mailed later

    def moved_to_dlq() -> bool:
        cli(config_path, "sync")
        return queue_depth(moto_events, "newsletter-events-dlq") == 1

    wait_until(moved_to_dlq, what="the malformed message in the dead-letter queue")
    assert queue_depth(moto_events) == 0
    body = sqs.receive_message(QueueUrl=dlq)["Messages"][0]["Body"]
    assert json.loads(body)["eventType"] == "Bounce"


def queue_transient_bounces(moto_events, total: int) -> None:
    """`total` transient bounces of distinct readers: applying one twice would leave an extra row."""
    sqs, url = moto_events.client("sqs"), queue_url(moto_events)
    for start in range(0, total, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "MessageBody": sns_envelope(ses_event(
                "event-bounce.json", f"reader{start + n}@example.com", f"m-{start + n}", bounceType="Transient"))}
            for n in range(10)])


def drain(config_path, moto_events) -> None:
    def drained() -> bool:
        cli(config_path, "sync")
        return queue_depth(moto_events) == 0

    wait_until(drained, timeout=120, what="the queue to drain")


def test_kill_9_during_sync_loses_nothing_and_applies_nothing_twice(tmp_path, moto_events):
    config_path = events_config(tmp_path, transient_bounce_limit=1000)
    assert cli(config_path, "setup", "aws").exit_code == 0
    total = 300  # moto's receive slows with queue depth: enough to be mid-sync for seconds
    queue_transient_bounces(moto_events, total)
    query(config_path, "SELECT 1")  # create the database before the child writes to it

    child = start_cli(config_path, "sync")
    applied = lambda: query(config_path, "SELECT count(*) FROM applied_event")[0][0]  # noqa: E731
    wait_until(lambda: applied() >= 30 or child.poll() is not None, what="the child applying events")
    assert child.poll() is None, "sync finished before it could be killed; queue more messages"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    child.stderr.close()
    assert applied() < total

    drain(config_path, moto_events)
    assert applied() == total
    assert query(config_path, "SELECT count(*), count(DISTINCT address_key) FROM transient_bounce")[0] == (total, total)


def test_two_syncs_at_once_apply_each_event_once(tmp_path, moto_events):
    config_path = events_config(tmp_path, transient_bounce_limit=1000)
    assert cli(config_path, "setup", "aws").exit_code == 0
    total = 200
    queue_transient_bounces(moto_events, total)
    query(config_path, "SELECT 1")
    children = [start_cli(config_path, "sync") for _ in range(2)]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    drain(config_path, moto_events)
    assert query(config_path, "SELECT count(*) FROM applied_event")[0][0] == total
    assert query(config_path, "SELECT count(*), count(DISTINCT address_key) FROM transient_bounce")[0] == (total, total)


def test_an_unsubscribe_posted_to_serve_reaches_the_queue_and_then_the_list(tmp_path, moto_events, secret):
    import urllib.error
    import urllib.request

    editor = events_config(tmp_path)
    assert cli(editor, "setup", "aws").exit_code == 0
    subscribe(editor, ["leaver@example.com", "stayer@example.com"])
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server_config = events_config(server_dir)  # the public server: its own database, same queue
    server = start_cli(server_config, "serve", "--port", "0")
    try:
        banner = server.stderr.readline()
        assert "each unsubscribe also goes to queue 'newsletter-events'" in banner
        port = int(banner.split("http://127.0.0.1:")[1].split("/")[0])
        signer = TokenSigner(load_config(editor).list_id, SigningKey(SECRET.encode(), "test"))

        def post(address: str):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/unsubscribe/{signer.token(address)}",
                                             data=b"List-Unsubscribe=One-Click", method="POST")
            try:
                with urllib.request.urlopen(request) as answer:
                    return answer.status, dict(answer.headers)
            except urllib.error.HTTPError as error:
                return error.code, dict(error.headers)

        assert post("leaver@example.com")[0] == 200
        assert queue_depth(moto_events) == 1
        assert statuses(server_config) == {"leaver@example.com": "unsubscribed"}  # applied locally too
        assert statuses(editor)["leaver@example.com"] == "subscribed"  # not yet on the sender's list

        summary = cli_json(editor, "sync")
        assert summary["applied"] == {"unsubscribe": 1}
        assert statuses(editor) == {"leaver@example.com": "unsubscribed", "stayer@example.com": "subscribed"}

        # With the queue gone, the endpoint cannot promise it reached the list: 503, try again.
        moto_events.client("sqs").delete_queue(QueueUrl=queue_url(moto_events))
        status, headers = post("stayer@example.com")
        assert status == 503 and headers["Retry-After"] == "60"
    finally:
        server.terminate()
        server.wait()
        server.stdout.close()
        server.stderr.close()


def test_a_send_to_ses_s_mailbox_simulator_feeds_back_through_moto_s_emulation(tmp_path, moto_events, secret):
    """moto publishes canned feedback for mail to bounce@/complaint@/success@simulator.amazonses.com
    when the sending identity has a notification topic; it names moto's fixed example addresses
    (recipient1@ and recipient2@example.com), not the simulator address mailed."""
    config_path = events_config(tmp_path)
    topic = cli_json(config_path, "setup", "aws")["topic_arn"]
    ses = moto_events.client("ses")
    for kind in ("Bounce", "Complaint", "Delivery"):
        ses.set_identity_notification_topic(Identity="newsletter.example.com", NotificationType=kind, SnsTopic=topic)
    simulator = ["bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com",
                 "success@simulator.amazonses.com"]
    subscribe(config_path, [*simulator, "recipient1@example.com"])
    sent = cli(config_path, "send", "--yes", str(ISSUE))
    assert sent.exit_code == 0, sent.output + sent.stderr

    summary = cli_json(config_path, "sync")
    assert summary["applied"] == {"bounce": 1, "complaint": 1, "delivery": 1}
    assert summary["unmatched"] == 3  # moto's canned messageId is not one SES returned for our sends
    found = statuses(config_path)
    # The canned bounce and complaint are dated 2012, before recipient1@ was added: adding is no
    # re-join, so the complaint counts (only a confirmation or an editor's resubscribe shields
    # from older events). recipient2@ was not on the list: a hard bounce records it, so no later
    # import can subscribe it.
    assert found["recipient1@example.com"] == "complained"
    assert found["recipient2@example.com"] == "bounced"
    assert {found[address] for address in simulator} == {"subscribed"}


def test_lambda_handler_answers_a_documented_function_url_event_and_queues_the_unsubscribe(
        tmp_path, moto_events, secret, monkeypatch):
    import copy

    from events_fixtures import example
    from newsletter import web

    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(config_path))
    token = TokenSigner(load_config(config_path).list_id, SigningKey(SECRET.encode(), "test")).token("r@example.com")
    event = copy.deepcopy(example("lambda-function-url-request.json"))
    event.update(rawPath=f"/unsubscribe/{token}", rawQueryString="", body="List-Unsubscribe=One-Click")
    event["headers"] = {"content-type": "application/x-www-form-urlencoded", "host": "abc.lambda-url.us-east-1.on.aws"}

    answer = web.lambda_handler(event, None)
    assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is False
    assert answer["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert "구독이 취소되었습니다" in answer["body"]
    bodies = [json.loads(m["Body"]) for m in moto_events.client("sqs").receive_message(
        QueueUrl=queue_url(moto_events), MaxNumberOfMessages=10)["Messages"]]
    assert [(b["type"], b["address"]) for b in bodies] == [("unsubscribe", "r@example.com")]

    get = {**event, "requestContext": {**event["requestContext"], "http": {**event["requestContext"]["http"],
                                                                           "method": "GET"}}, "body": None}
    assert web.lambda_handler(get, None)["statusCode"] == 200  # the confirm page; nothing queued
    forged = {**event, "rawPath": "/unsubscribe/" + token[:-2] + "xx"}
    assert web.lambda_handler(forged, None)["statusCode"] == 400
    encoded = {**event, "body": "TGlzdC1VbnN1YnNjcmliZT1PbmUtQ2xpY2s=", "isBase64Encoded": True}
    assert web.lambda_handler(encoded, None)["statusCode"] == 200
    assert queue_depth(moto_events) == 2


def test_our_own_subscribe_confirmed_event_subscribes_through_sync(tmp_path, moto_events):
    from newsletter.events import SubscribeConfirmed, put_event

    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    config = load_config(config_path)
    put_event(config, SubscribeConfirmed("New.Reader@Example.com", "새 독자"))
    put_event(config, SubscribeConfirmed("not an address", None))
    summary = cli_json(config_path, "sync")
    assert summary["applied"] == {"subscribe_confirmed": 1} and len(summary["malformed"]) == 1
    assert query(config_path, "SELECT address, name, status, source FROM subscriber") == [
        ("New.Reader@example.com", "새 독자", "subscribed", "web")]


@pytest.mark.parametrize("command", [("sync",), ("setup", "aws")])
def test_sync_and_setup_without_credentials_fail_in_one_line(tmp_path, moto_events, monkeypatch, command):
    config_path = events_config(tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    result = cli(config_path, *command)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot ") and "no AWS credentials" in result.stderr
    assert result.stderr.count("\n") == 1


def test_sync_before_setup_says_the_queue_is_missing_in_that_region(tmp_path, moto_events):
    result = cli(events_config(tmp_path, region="eu-west-3"), "sync")
    assert result.exit_code == 1
    assert result.stderr == ("error: cannot find queue 'newsletter-events': the queue does not exist in eu-west-3; "
                             "run `newsletter setup aws` (or check events.region and events.queue)\n")


def test_sync_without_an_events_table_says_how_to_set_it_up(tmp_path):
    from conftest import write_config

    result = cli(write_config(tmp_path / "newsletter.toml"), "sync")
    assert result.exit_code == 1 and "no [events] table" in result.stderr


def test_sync_with_a_policy_that_lacks_receive_says_access_denied(tmp_path, moto_events, monkeypatch):
    """moto checks IAM policies once told to (POST /moto-api/reset-auth); the server is shared, so
    the check is switched off again however the test ends."""
    import urllib.request

    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    iam = moto_events.client("iam")
    iam.create_user(UserName="sync-without-receive")
    iam.put_user_policy(UserName="sync-without-receive", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sqs:GetQueueUrl"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName="sync-without-receive")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN")

    def reset_auth(count: str) -> None:
        request = urllib.request.Request(f"{moto_events.endpoint_url}/moto-api/reset-auth", data=count.encode(),
                                         headers={"Content-Type": "text/plain"}, method="POST")
        urllib.request.urlopen(request).close()

    reset_auth("0")
    try:
        result = cli(config_path, "sync")
    finally:
        reset_auth("inf")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot receive from queue 'newsletter-events': access denied (")
    assert "see docs/deploy.md" in result.stderr and result.stderr.count("\n") == 1


def test_a_send_that_cannot_sync_stops_and_says_how_to_go_on(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)  # no `setup aws`: the queue does not exist
    subscribe(config_path, ["a@example.com"])
    refused = cli(config_path, "send", "--yes", str(ISSUE))
    assert refused.exit_code == 1 and moto_events.ses.messages() == []
    assert refused.stderr.endswith("run `newsletter setup aws` (or check events.region and events.queue) "
                                   "(to send without the feedback, pass --no-sync)\n")
    sent = cli(config_path, "send", "--yes", "--no-sync", str(ISSUE))
    assert sent.exit_code == 0, sent.output + sent.stderr
    assert "warning: --no-sync: bounces, complaints and unsubscribes waiting on the queue are not applied" in sent.stderr
    assert recipients(moto_events.ses.messages()) == ["a@example.com"]


def test_status_and_stats_show_the_feedback_in_words(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, ["a@example.com", "b@example.com"])
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    sent = message_ids(config_path, "2023-10-16")
    sqs, url = moto_events.client("sqs"), queue_url(moto_events)
    sqs.send_message(QueueUrl=url, MessageBody=sns_envelope(ses_event("event-delivery.json", "a@example.com",
                                                                      sent["a@example.com"])))
    sqs.send_message(QueueUrl=url, MessageBody=sns_envelope(ses_event("event-bounce.json", "b@example.com",
                                                                      sent["b@example.com"])))
    synced = cli(config_path, "sync")
    assert synced.stdout.splitlines() == [
        "sync: 2 message(s); applied: bounce 1, delivery 1; duplicates: 0; malformed: 0", "list: 1 now bounced"]

    status = cli(config_path, "status", str(ISSUE)).stdout
    assert re.search(r"^SES reports on the 2 sent \(last sync 20\d\d-\d\d-\d\d \d\d:\d\d UTC\):$", status, re.M), status
    assert "  delivered             1   50.0%\n" in status
    assert "  bounced (hard)        1   50.0%  SES reviews above 5%, pauses above 10%\n" in status
    assert "  complained            0    0.0%  SES reviews above 0.1%, pauses above 0.5%\n" in status
    stats = cli(config_path, "subscribers", "stats").stdout.splitlines()
    today = query(config_path, "SELECT changed_at FROM subscriber WHERE status = 'bounced'")[0][0][:10]
    assert f"bounced             1  since {today} (latest {today})" in stats
    assert re.fullmatch(r"last sync:   20\d\d-\d\d-\d\d \d\d:\d\d UTC \(bounces, complaints and unsubscribes "
                        r"applied up to then\)", stats[-1]), stats[-1]


def test_status_of_an_issue_not_sent_yet_shows_no_table_of_zero_reports(tmp_path):
    config_path = events_config(tmp_path)
    subscribe(config_path, ["a@example.com"])
    status = cli(config_path, "status", str(ISSUE))
    assert status.exit_code == 0, status.output + status.stderr
    assert "not queued yet: 1 subscribed address(es)" in status.stdout
    assert "SES reports" not in status.stdout and "delivered" not in status.stdout


def test_tracking_adds_open_and_click_to_the_event_destination_and_they_are_counted(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path, tracking=True)
    assert cli(config_path, "setup", "aws").exit_code == 0
    destination = moto_events.client("ses").describe_configuration_set(
        ConfigurationSetName="newsletter", ConfigurationSetAttributeNames=["eventDestinations"])["EventDestinations"][0]
    assert {"open", "click"} <= set(destination["MatchingEventTypes"])
    subscribe(config_path, ["reader@example.com"])
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    message_id = message_ids(config_path, "2023-10-16")["reader@example.com"]
    sqs, url = moto_events.client("sqs"), queue_url(moto_events)
    for name in ("event-open.json", "event-open.json", "event-click.json"):
        sqs.send_message(QueueUrl=url, MessageBody=sns_envelope(ses_event(name, "reader@example.com", message_id)))
    assert cli_json(config_path, "sync")["applied"] == {"click": 1, "open": 2}
    feedback = cli_json(config_path, "status", str(ISSUE))["feedback"]
    assert (feedback["recipients"]["opened"], feedback["events"]["opened"], feedback["recipients"]["clicked"]) == (
        1, 2, 1)


def test_a_malformed_message_is_reported_once_with_its_id(tmp_path, moto_events):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    junk_id = moto_events.client("sqs").send_message(QueueUrl=queue_url(moto_events), MessageBody="junk")["MessageId"]
    result = cli(config_path, "sync")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"warning: message {junk_id} (received 1 time(s)) cannot be applied and is left for the dead-letter queue: "
        "the message is not JSON (Expecting value: line 1 column 1 (char 0))"]
