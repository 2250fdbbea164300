"""`newsletter setup aws` and `newsletter sync`: the feedback loop's AWS parts and draining it."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click

from .backup_commands import backup_barrier, replicated, wait_for_backup
from .base import main, pass_state

if TYPE_CHECKING:
    from ..events.report import IssueFeedback
    from ..events.sync import SyncSummary


@main.group()
def setup() -> None:
    """Create the services the newsletter relies on."""


@setup.command("aws")
@click.option("--dry-run", is_flag=True, help="Say what would be created or repaired; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the names and ARNs as JSON.")
@pass_state
def setup_aws_command(state, dry_run: bool, as_json: bool) -> None:
    """Create, or check and repair, the SNS topic, SQS queue and dead-letter queue, the SES
    configuration set's event destination and (with events.inbound_address) the receipt rule
    that carry bounces, complaints and unsubscribes to `newsletter sync`. Safe to run again."""
    from ..aws.setup import setup_aws
    from ..events.queue import settings_of

    report = setup_aws(settings_of(state.config), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    for step in report.steps:
        detail = f" ({step.detail})" if step.detail else ""
        click.echo(f"{step.action:<13} {step.resource} {step.name}{detail}")
    click.echo(f"topic:             {report.topic_arn or '(not yet)'}")
    click.echo(f"queue:             {report.queue_url or '(not yet)'}")
    click.echo(f"dead-letter queue: {report.dead_letter_queue_url or '(not yet)'}")
    click.echo(f"configuration set: {report.configuration_set}")
    if not report.changed:
        click.echo("nothing to do: everything already exists as configured")


def describe_sync(summary: SyncSummary, *, err: bool = False) -> None:
    applied = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.applied.items())) or "nothing new"
    click.echo(f"sync: {summary.received} message(s); applied: {applied}; duplicates: {summary.duplicates}; "
               f"malformed: {len(summary.malformed)}", err=err)
    if summary.list_changes:
        click.echo("list: " + ", ".join(f"{n} now {status}" for status, n in sorted(summary.list_changes.items())),
                   err=err)
    if summary.edition_changes:
        click.echo("editions: " + ", ".join(f"{n} now {edition}" for edition, n in sorted(summary.edition_changes.items())),
                   err=err)
    if summary.unmatched:
        click.echo(f"note: {summary.unmatched} report(s) about messages not in the send ledger (test copies or "
                   "other senders) changed only the list", err=True)
    for bad in summary.malformed:
        click.echo(f"warning: message {bad.sqs_id} (received {bad.receive_count} time(s)) cannot be applied and is "
                   f"left for the dead-letter queue: {bad.reason}", err=True)
    if summary.in_flight:
        click.echo(f"warning: {summary.in_flight} message(s) still in flight after waiting "
                   f"{summary.waited_seconds:.0f} s (held by another sync, or by one that stopped): they are applied "
                   "by the next sync once they come back", err=True)


def say_waiting(messages: int, seconds: int) -> None:
    click.echo(f"sync: {messages} message(s) in flight (received by another sync, or by one that stopped before "
               f"deleting them): waiting up to {seconds} s for them to be applied or to come back", err=True)


@main.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_state
@replicated()
def sync_command(state, as_json: bool) -> None:
    """Apply every queued bounce, complaint, unsubscribe and delivery report to the list.

    Each message is applied once, in one transaction, and deleted from the queue only after
    that (with [backup], only once S3 holds it too); one that cannot be parsed is reported and
    left for the dead-letter queue."""
    from ..events.sync import sync

    summary = sync(state.config, on_wait=say_waiting, before_delete=backup_barrier())
    wait_for_backup()
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        describe_sync(summary)


_LABELS = {
    "delivered": "delivered", "bounced_hard": "bounced (hard)", "bounced_soft": "bounced (soft)",
    "complained": "complained", "rejected": "rejected", "delayed": "delayed",
    "rendering_failed": "rendering failed", "opened": "opened", "clicked": "clicked",
}


def _thresholds() -> dict[str, str]:
    from ..events.report import PAUSE_BOUNCE_RATE, PAUSE_COMPLAINT_RATE, REVIEW_BOUNCE_RATE, REVIEW_COMPLAINT_RATE

    return {
        "bounced_hard": f"SES reviews above {REVIEW_BOUNCE_RATE:.0%}, pauses above {PAUSE_BOUNCE_RATE:.0%}",
        "complained": f"SES reviews above {REVIEW_COMPLAINT_RATE:.1%}, pauses above {PAUSE_COMPLAINT_RATE:.1%}",
    }


def describe_time(stamp: str) -> str:
    """A stored UTC timestamp ('2026-11-25T22:40:32.484403+00:00') as an editor reads it."""
    return dt.datetime.fromisoformat(stamp).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe_issue_feedback(feedback: IssueFeedback, last_sync: str | None) -> None:
    synced = f"last sync {describe_time(last_sync)}" if last_sync else "never synced: run `newsletter sync`"
    click.echo(f"SES reports on the {feedback.sent} sent ({synced}):")
    thresholds = _thresholds()
    for name, label in _LABELS.items():
        count = feedback.recipients[name]
        repeats = f" ({feedback.events[name]} in all)" if feedback.events[name] > count else ""
        note = f"  {thresholds[name]}" if name in thresholds else ""
        click.echo(f"  {label:<17}{count:>6}  {feedback.rate(name):>6.1%}{repeats}{note}")
    if why := feedback.over_review_threshold():
        from ..send.gates import MIN_MESSAGES_JUDGED

        if feedback.sent < MIN_MESSAGES_JUDGED:  # SES judges rates over a representative volume (send/gates.py)
            why += (f"; on {feedback.sent} messages that is not yet a rate SES judges the account by (a send checks "
                    f"ours from {MIN_MESSAGES_JUDGED:,})")
        click.echo(f"warning: {why}", err=True)
