"""What a send to the list must pass before its first message. Each check refuses in one line (a
`NewsletterError`) or returns what the editor is shown; `cli/send_commands.py` runs them, in order,
in one block.

The web page. The email links to the issue's page ("View on the web"), so the page must answer
200, with this issue as it renders now, at that very URL, wherever it is served (S3, CloudFront,
any static host). The check fetches it as a reader would and compares the body's SHA-256 with the
page `newsletter publish` writes for the issue now: an exact comparison needs no marker in the
page and no host's cooperation (S3 and CloudFront serve the bytes as uploaded), and it also
catches a CDN still serving an older version. A host that rewrites pages on the way out defeats
it: there, `publish.check_before_send = false`.

Bounces and complaints. SES judges an account's rates over a representative volume of its mail,
not one send ("Announcing the Reputation Dashboard", AWS Messaging & Targeting blog: 1 bounce in 5
emails one week is not the account's bounce rate). So the send gates on SES's own numbers
(`aws/reputation.py`) where CloudWatch has them, and on ours only over at least
`MIN_MESSAGES_JUDGED` messages: the smallest volume at which a single complaint, already taken off
the list by `sync`, does not by itself pass the 0.1% complaint threshold (1 in 1,000 is 0.1%),
and at which the 5% bounce threshold means 50 hard bounces, not one or two. Ours count back over
the newest sends until they reach that volume, at most `ISSUES_JUDGED` of them (half a year of
weekly issues; SES's own enforcement notices quote windows of months). Below it, rates over a
threshold are a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import probe
from ..config import Config
from ..errors import SendError
from ..events.report import (
    PAUSE_BOUNCE_RATE,
    PAUSE_COMPLAINT_RATE,
    REVIEW_BOUNCE_RATE,
    REVIEW_COMPLAINT_RATE,
    IssueFeedback,
)
from ..render import web_url
from ..site.pages import issue_page, sha256
from ..store import Store
from .plan import IssueToSend

if TYPE_CHECKING:
    from ..aws.reputation import Reputation

MIN_MESSAGES_JUDGED = 1_000
ISSUES_JUDGED = 26


# --- the web page ---------------------------------------------------------------------------------


def check_web_page(issue: IssueToSend, config: Config, *, timeout: float = probe.TIMEOUT_SECONDS) -> str:
    """The URL of the issue's page if it answers 200 with the page as the issue renders now;
    SendError naming the URL and the answer otherwise."""
    url = web_url(issue.parsed, config)
    answer = probe.get(url, timeout=timeout)
    if answer.status == 200 and sha256(answer.body) == sha256(issue_page(issue.rendered).body):
        return url
    if answer.status == 200:
        problem = (f"answers 200 with another version of the page (published before the issue's last edit, or "
                   f"a cache still serving the old one); run `newsletter publish {issue.path}` again (and "
                   "invalidate the CDN's copy, if there is one)")
    else:
        problem = f"{answer.describe()}; {_how_to_publish(issue, config)}"
    raise SendError(f"not sending: the email's \"View on the web\" link {url} {problem}, or pass --no-publish-check")


def _how_to_publish(issue: IssueToSend, config: Config) -> str:
    """What to do about a page that is not there, from where `publish` last put it."""
    with Store.open(config.database) as store:
        entry = store.published_issue(issue.parsed.issue_id)
    if entry is None:
        upload = (f" (it uploads to {config.publish.to})" if config.publish.to else
                  " --to s3://BUCKET/PREFIX` (or set publish.to) to put it where readers will open it")
        return f"run `newsletter publish {issue.path}" + ("`" + upload if config.publish.to else upload)
    if "s3://" not in entry.published_to:
        return (f"`newsletter publish` wrote it only to {entry.published_to} on this machine: upload it with "
                f"`newsletter publish {issue.path} --to s3://BUCKET/PREFIX` (or set publish.to), or copy that "
                f"folder to where {config.web_base_url} is served")
    return (f"`newsletter publish` put it in {entry.published_to}, which is not what {config.web_base_url} serves: "
            "check newsletter.web_base_url and the host or CDN in front of the bucket")


# --- bounces and complaints -----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Our own numbers over the newest sends: messages sent, hard bounces and complaints."""

    issues: tuple[str, ...]
    sent: int
    bounced: int
    complained: int

    @classmethod
    def of(cls, recent: list[IssueFeedback]) -> Window:
        """The newest sends that add up to MIN_MESSAGES_JUDGED (all of `recent` if they do not)."""
        taken: list[IssueFeedback] = []
        for feedback in recent[:ISSUES_JUDGED]:
            taken.append(feedback)
            if sum(each.sent for each in taken) >= MIN_MESSAGES_JUDGED:
                break
        return cls(
            issues=tuple(each.issue_id for each in taken),
            sent=sum(each.sent for each in taken),
            bounced=sum(each.recipients["bounced_hard"] for each in taken),
            complained=sum(each.recipients["complained"] for each in taken),
        )

    @property
    def judged(self) -> bool:
        return self.sent >= MIN_MESSAGES_JUDGED

    def rate(self, part: int) -> float:
        return part / self.sent if self.sent else 0.0

    def problems(self) -> list[str]:
        found = []
        if self.rate(self.bounced) > REVIEW_BOUNCE_RATE:
            found.append(f"bounce rate {self.rate(self.bounced):.1%} ({self.bounced} of {self.sent})")
        if self.rate(self.complained) > REVIEW_COMPLAINT_RATE:
            found.append(f"complaint rate {self.rate(self.complained):.2%} ({self.complained} of {self.sent})")
        return found

    def removed(self) -> str:
        """What `sync` has already done about them: the addresses are off the list."""
        return (f"`sync` has already taken those addresses off the list ({self.bounced} bounced, "
                f"{self.complained} complained), so this send does not mail them")

    def describe(self) -> str:
        issues = self.issues[0] if len(self.issues) == 1 else f"{len(self.issues)} issues"
        return f"our numbers over {issues}"


def _ses_problems(reputation: Reputation) -> list[str]:
    found = []
    for name, rate, review, pause in (("bounce", reputation.bounce_rate, REVIEW_BOUNCE_RATE, PAUSE_BOUNCE_RATE),
                                      ("complaint", reputation.complaint_rate, REVIEW_COMPLAINT_RATE,
                                       PAUSE_COMPLAINT_RATE)):
        if rate is not None and rate > review:
            over = "pause" if rate > pause else "review"
            found.append(f"{name} rate {rate:.2%} is over SES's {pause if rate > pause else review:.1%} {over} "
                         "threshold")
    return found


@dataclass(frozen=True)
class FeedbackVerdict:
    problems: list[str]  # why the send must not start (unless forced); empty: it may
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the rates it judged by

    def refusal(self) -> str:
        return (f"not sending: {self.summary()}. See `newsletter status` and `newsletter subscribers list --status "
                "bounced` (or --status complained) for who, and SES's reputation page; pass --force to send anyway")

    def summary(self) -> str:
        return "; and ".join(self.problems)


def judge_feedback(recent: list[IssueFeedback], reputation: Reputation | None,
                   reputation_problem: str | None = None) -> FeedbackVerdict:
    """Whether the account's bounce and complaint rates allow a send: SES's own where known,
    ours over enough messages; `recent` newest first. `reputation_problem` says why SES's could
    not be read (None: it was, or the transport is not SES)."""
    verdict = FeedbackVerdict([])
    if reputation is not None and reputation.known:
        shown = ", ".join(f"{name} {rate:.2%}" for name, rate in (("bounce rate", reputation.bounce_rate),
                                                                  ("complaint rate", reputation.complaint_rate))
                          if rate is not None)
        verdict.notes.append(f"SES's reputation metrics (CloudWatch AWS/SES, {reputation.as_of:%Y-%m-%d %H:%M} UTC): "
                             f"{shown}")
        if problems := _ses_problems(reputation):
            verdict.problems.append(f"SES's own reputation metrics for the account: {'; '.join(problems)}")
    elif reputation_problem:
        verdict.warnings.append(f"SES's reputation metrics not read ({reputation_problem}); judging by our own numbers")
    window = Window.of(recent)
    if window.sent and (problems := window.problems()):
        said = (f"{window.describe()}: {'; '.join(problems)}, over SES's review threshold ({REVIEW_BOUNCE_RATE:.0%} / "
                f"{REVIEW_COMPLAINT_RATE:.1%}); {window.removed()}")
        if window.judged:
            verdict.problems.append(said)
        else:
            verdict.warnings.append(f"{said}. {window.sent} messages are too few to judge a rate by (SES judges over "
                                    f"a representative volume; this check waits for {MIN_MESSAGES_JUDGED:,})")
    return verdict
