"""The checks a send to the list passes on bounces and complaints: SES's own reputation metrics
(moto's CloudWatch over HTTP, where the tests put them) and our own numbers, judged only over
enough messages to mean something (`newsletter.send.gates`)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from events_fixtures import SECRET, cli, events_config, message_ids, ses_event, topic_arn
from sending_fixtures import ISSUE, readers, subscribe
from newsletter.events.report import IssueFeedback
from newsletter.send.gates import MIN_MESSAGES_JUDGED, judge_feedback


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def next_issue(tmp_path, date: str = "2023-10-23"):
    path = tmp_path / f"{date}.md"
    path.write_text(ISSUE.read_text(encoding="utf-8").replace("date: 2023-10-16", f"date: {date}"), encoding="utf-8")
    return path


def complain(moto_events, config_path, issue_id: str, addresses: list[str]) -> None:
    """Complaints about those readers' copies of the issue, as SES publishes them to the topic."""
    sent = message_ids(config_path, issue_id)
    for address in addresses:
        moto_events.client("sns").publish(TopicArn=topic_arn(moto_events),
                                          Message=json.dumps(ses_event("event-complaint.json", address, sent[address])))


def put_reputation(moto_events, **rates: float) -> None:
    """What SES publishes to CloudWatch for the account: bounce=0.02 -> Reputation.BounceRate 0.02."""
    names = {"bounce": "Reputation.BounceRate", "complaint": "Reputation.ComplaintRate"}
    moto_events.client("cloudwatch").put_metric_data(Namespace="AWS/SES", MetricData=[
        {"MetricName": names[name], "Value": value, "Timestamp": dt.datetime.now(dt.UTC)} for name, value in rates.items()])


def sent_to(moto_events, since: int) -> int:
    return len(moto_events.ses.raw_messages()[since:])


def test_one_complaint_in_40_does_not_block_the_next_send_and_says_sync_removed_it(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, readers(40))
    assert cli(config_path, "send", "--yes", str(ISSUE)).exit_code == 0
    complain(moto_events, config_path, "2023-10-16", ["reader007@example.org"])

    before = len(moto_events.ses.raw_messages())
    result = cli(config_path, "send", "--yes", str(next_issue(tmp_path)))
    assert result.exit_code == 0, result.output + result.stderr
    assert "applied: complaint 1" in result.stderr
    assert ("warning: our numbers over 2023-10-16: complaint rate 2.50% (1 of 40), over SES's review threshold "
            "(5% / 0.1%); `sync` has already taken those addresses off the list (0 bounced, 1 complained), so this "
            f"send does not mail them. 40 messages are too few to judge a rate by (SES judges over a representative "
            f"volume; this check waits for {MIN_MESSAGES_JUDGED:,})") in result.stderr
    assert sent_to(moto_events, before) == 39
    status = cli(config_path, "status", str(ISSUE))
    assert status.stderr == ("warning: complaint rate 2.50% (1 of 40) is over SES's 0.1% review threshold; on 40 "
                             "messages that is not yet a rate SES judges the account by (a send checks ours from "
                             "1,000)\n")


def test_ses_s_own_complaint_rate_over_its_threshold_refuses_a_small_list_until_forced(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, readers(3))
    put_reputation(moto_events, bounce=0.012, complaint=0.0021)
    refused = cli(config_path, "send", "--yes", str(ISSUE))
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == (
        "error: not sending: SES's own reputation metrics for the account: complaint rate 0.21% is over SES's 0.1% "
        "review threshold. See `newsletter status` and `newsletter subscribers list --status bounced` (or --status "
        "complained) for who, and SES's reputation page; pass --force to send anyway")
    assert moto_events.ses.raw_messages() == []
    forced = cli(config_path, "send", "--yes", "--force", str(ISSUE))
    assert forced.exit_code == 0, forced.output + forced.stderr
    assert "complaint rate 0.21% is over SES's 0.1% review threshold; sending anyway (--force)" in forced.stderr
    assert len(moto_events.ses.raw_messages()) == 3


def test_ses_s_rates_under_its_thresholds_are_shown_and_the_send_goes(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    subscribe(config_path, readers(2))
    put_reputation(moto_events, bounce=0.008, complaint=0.0002)
    result = cli(config_path, "send", "--yes", "--no-sync", str(ISSUE))
    assert result.exit_code == 0, result.output + result.stderr
    assert "feedback:  SES's reputation metrics (CloudWatch AWS/SES, " in result.output
    assert "): bounce rate 0.80%, complaint rate 0.02%" in result.output


def test_a_bounce_rate_past_ses_s_pause_threshold_says_so(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    subscribe(config_path, readers(2))
    put_reputation(moto_events, bounce=0.11)
    refused = cli(config_path, "send", "--yes", "--no-sync", str(ISSUE))
    assert refused.exit_code == 1
    assert "bounce rate 11.00% is over SES's 10.0% pause threshold" in refused.stderr


def test_a_complaint_rate_over_the_threshold_on_enough_of_our_own_messages_still_refuses(tmp_path, moto_events, secret):
    """1,000 real sends through moto, two complaints (0.2%): a rate over SES's 0.1% on a volume
    that means something."""
    config_path = events_config(tmp_path)
    text = config_path.read_text(encoding="utf-8")  # the account's rate (moto has no GetAccount): no waiting
    config_path.write_text(text.replace("[transport.ses]\n", "[transport.ses]\nmax_send_rate = 1000\n"), encoding="utf-8")
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, readers(MIN_MESSAGES_JUDGED))
    first = cli(config_path, "send", "--yes", "--workers", "8", str(ISSUE))
    assert first.exit_code == 0, first.output + first.stderr
    complain(moto_events, config_path, "2023-10-16", ["reader001@example.org", "reader002@example.org"])

    before = len(moto_events.ses.raw_messages())
    refused = cli(config_path, "send", "--yes", str(next_issue(tmp_path)))
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1].startswith(
        "error: not sending: our numbers over 2023-10-16: complaint rate 0.20% (2 of 1000), over SES's review threshold "
        "(5% / 0.1%); `sync` has already taken those addresses off the list (0 bounced, 2 complained)")
    assert sent_to(moto_events, before) == 0


def _feedback(issue_id: str, sent: int, complained: int = 0, bounced: int = 0) -> IssueFeedback:
    counts = {"bounced_hard": bounced, "complained": complained}
    return IssueFeedback(issue_id, sent, counts, counts)


def test_our_numbers_count_back_over_the_newest_sends_until_they_reach_enough_messages():
    weekly = [_feedback(f"week-{n:02d}", 40) for n in range(30)]  # newest first
    one = [_feedback("week-00", 40, complained=1), *weekly[1:]]
    assert judge_feedback(one, None).problems == []  # 1 in 1,000: 0.1%, not over it
    two = [_feedback("week-00", 40, complained=1), *weekly[1:5], _feedback("week-05", 40, complained=1), *weekly[6:]]
    assert judge_feedback(two, None).summary().startswith("our numbers over 25 issues: complaint rate 0.20% (2 of 1000)")
    # A complaint older than the newest 1,000 messages is not counted.
    old = [*weekly[:25], _feedback("week-25", 40, complained=2), *weekly[26:]]
    assert judge_feedback(old, None).problems == [] and judge_feedback(old, None).warnings == []
