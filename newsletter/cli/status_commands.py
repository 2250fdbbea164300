"""`newsletter status`: where an issue's send stands, from the send ledger."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .base import main, pass_state
from .events_commands import describe_issue_feedback


@main.command()
@click.argument("issue_path", metavar="[ISSUE.md]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_state
def status(state, issue_path: Path | None, as_json: bool) -> None:
    """Show how many recipients of ISSUE.md (default: the latest issue sent) are sent, pending,
    failed or unknown, and list the failed and unknown ones with their last errors; with [events],
    what SES reported on the sent (delivered, bounced, complained, ...) as of the last `newsletter sync`."""
    from ..events.report import issue_feedback, list_history
    from ..parse import parse_issue
    from ..send import issue_status
    from ..send.status import latest_issue

    if issue_path is not None:
        issue_id = parse_issue(issue_path).issue_id
    elif (issue_id := latest_issue(state.config.database)) is None:
        click.echo(f"no issue has been sent from {state.config.database} yet; name one: `newsletter status "
                   "ISSUE.md`", err=True)
        return
    report = issue_status(state.config.database, issue_id)
    feedback = issue_feedback(state.config.database, report.issue_id)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "feedback": feedback.to_dict()}, ensure_ascii=False, indent=2))
        return
    click.echo(f"issue {report.issue_id}: {sum(report.counts.values())} recipient(s) in the ledger")
    for state_name, number in report.counts.items():
        click.echo(f"  {state_name:<8} {number}")
    for edition, counts in report.by_edition.items():
        if any(counts.values()):
            click.echo(f"  {edition}: " + ", ".join(f"{name} {number}" for name, number in counts.items() if number))
    if report.unqueued:
        click.echo(f"not queued yet: {report.unqueued} subscribed address(es); the next send includes them")
    for row in report.problems:
        code = f" {row.error_code}" if row.error_code else ""
        click.echo(f"{row.state}: {row.address}: {row.error_kind}{code}: {row.error} (attempts: {row.attempts})")
    if report.counts["unknown"]:
        click.echo("unknown: the call went out but no answer came back; they may have it. "
                   "`newsletter send --resend-unknown` sends them another copy.")
    if feedback.sent and (state.config.events is not None or any(feedback.events.values())):
        describe_issue_feedback(feedback, list_history(state.config.database).last_sync)
