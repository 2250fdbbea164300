"""What the feedback says about sends: per issue (`newsletter status`), across the last sends
(shown before every send), and whether SES would put the account under review.

SES reviews an account whose bounce rate passes 5% or complaint rate passes 0.1% and may pause
it at 10% / 0.5%; the bounce rate counts hard (permanent) bounces of the mail sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..store import Store
from ..store import events as event_table

REVIEW_BOUNCE_RATE = 0.05
REVIEW_COMPLAINT_RATE = 0.001
PAUSE_BOUNCE_RATE = 0.10
PAUSE_COMPLAINT_RATE = 0.005
RECENT_ISSUES_SHOWN = 3

# The reports `status` counts, in the order it shows them, and the kind each one counts.
REPORTED = (
    ("delivered", "delivery"), ("bounced_hard", "bounce"), ("bounced_soft", "soft_bounce"),
    ("complained", "complaint"), ("rejected", "reject"), ("delayed", "delay"),
    ("rendering_failed", "rendering_failure"), ("opened", "open"), ("clicked", "click"),
)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class IssueFeedback:
    """SES's reports on one issue: recipients with each kind of report, out of those sent."""

    issue_id: str
    sent: int
    recipients: dict[str, int]  # REPORTED names -> recipients with at least one such report
    events: dict[str, int]  # REPORTED names -> reports in all (opens and clicks repeat)

    @property
    def bounce_rate(self) -> float:
        return _rate(self.recipients["bounced_hard"], self.sent)

    @property
    def complaint_rate(self) -> float:
        return _rate(self.recipients["complained"], self.sent)

    def rate(self, name: str) -> float:
        return _rate(self.recipients[name], self.sent)

    def over_review_threshold(self) -> str | None:
        """Why SES would review the account after this issue, or None."""
        problems = []
        if self.bounce_rate > REVIEW_BOUNCE_RATE:
            problems.append(f"bounce rate {self.bounce_rate:.1%} ({self.recipients['bounced_hard']} of {self.sent}) "
                            f"is over SES's {REVIEW_BOUNCE_RATE:.0%} review threshold")
        if self.complaint_rate > REVIEW_COMPLAINT_RATE:
            problems.append(f"complaint rate {self.complaint_rate:.2%} ({self.recipients['complained']} of "
                            f"{self.sent}) is over SES's {REVIEW_COMPLAINT_RATE:.1%} review threshold")
        return "; ".join(problems) or None

    def to_dict(self) -> dict:
        return {
            "issue_id": self.issue_id, "sent": self.sent,
            "recipients": self.recipients, "events": self.events,
            "rates": {name: round(self.rate(name), 6) for name, _ in REPORTED},
            "thresholds": {"bounce_review": REVIEW_BOUNCE_RATE, "bounce_pause": PAUSE_BOUNCE_RATE,
                           "complaint_review": REVIEW_COMPLAINT_RATE, "complaint_pause": PAUSE_COMPLAINT_RATE},
        }


def _feedback(store: Store, issue_id: str) -> IssueFeedback:
    found = event_table.issue_reports(store.connection, issue_id)
    return IssueFeedback(
        issue_id=issue_id,
        sent=event_table.count_sent(store.connection, issue_id),
        recipients={name: found.get(kind, (0, 0))[0] for name, kind in REPORTED},
        events={name: found.get(kind, (0, 0))[1] for name, kind in REPORTED},
    )


def issue_feedback(database: str | Path, issue_id: str) -> IssueFeedback:
    with Store.open(database) as store:
        return _feedback(store, issue_id)


def recent_feedback(database: str | Path, limit: int = RECENT_ISSUES_SHOWN) -> list[IssueFeedback]:
    """The last `limit` issues sent, newest first."""
    with Store.open(database) as store:
        return [_feedback(store, issue_id) for issue_id in event_table.recent_issues(store.connection, limit)]


@dataclass(frozen=True)
class ListHistory:
    """How many subscribers have each status, since when, and when the list last synced."""

    statuses: dict[str, tuple[int, str | None, str | None]]  # status -> (count, first change, last change)
    last_sync: str | None


def list_history(database: str | Path) -> ListHistory:
    with Store.open(database) as store:
        synced = event_table.last_sync(store.connection)
        return ListHistory(event_table.status_history(store.connection), synced.isoformat() if synced else None)
