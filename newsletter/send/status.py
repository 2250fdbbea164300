"""Where an issue's send stands, from the ledger (`newsletter status`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..model import DELIVERY_STATES, Delivery
from ..store import Store


@dataclass(frozen=True)
class IssueStatus:
    """Where an issue's send stands, from the ledger (`newsletter status`)."""

    issue_id: str
    counts: dict[str, int]  # rows by state
    unqueued: int  # subscribed addresses without a row yet: the next send queues them
    problems: tuple[Delivery, ...]  # the failed and unknown rows, with their last errors
    by_edition: dict[str, dict[str, int]] = field(default_factory=dict)  # rows by edition, then state

    def to_dict(self) -> dict:
        return {
            "issue_id": self.issue_id,
            "counts": self.counts,
            "by_edition": self.by_edition,
            "not_yet_queued": self.unqueued,
            "problems": [
                {
                    "address": row.address, "state": row.state, "edition": row.edition, "attempts": row.attempts,
                    "error_kind": row.error_kind, "error_code": row.error_code, "error": row.error,
                    "finished_at": row.finished_at.isoformat() if row.finished_at else None,
                }
                for row in self.problems
            ],
        }


def latest_issue(database: str | Path) -> str | None:
    """The newest issue with a send in the ledger (`newsletter status` with no issue named)."""
    with Store.open(database) as store:
        return store.latest_issue()


def issue_status(database: str | Path, issue_id: str) -> IssueStatus:
    with Store.open(database) as store:
        by_edition = store.delivery_counts_by_edition(issue_id)  # the totals are its sums: one query
        return IssueStatus(
            issue_id=issue_id,
            counts={state: sum(counts[state] for counts in by_edition.values()) for state in DELIVERY_STATES},
            by_edition=by_edition,
            unqueued=store.count_unqueued(issue_id),
            problems=tuple(store.deliveries(issue_id, ("failed", "unknown"))),
        )
