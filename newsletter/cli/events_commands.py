"""`newsletter setup aws` and `newsletter sync`: the feedback loop's AWS parts and draining it."""

from __future__ import annotations

import json

import click

from ..aws.setup import setup_aws
from ..events.queue import settings_of
from ..events.sync import SyncSummary, sync
from .base import main, pass_state


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
    if summary.unmatched:
        click.echo(f"note: {summary.unmatched} report(s) about messages not in the send ledger (test copies or "
                   "other senders) changed only the list", err=True)
    for bad in summary.malformed:
        click.echo(f"warning: message {bad.sqs_id} (received {bad.receive_count} time(s)) cannot be applied and is "
                   f"left for the dead-letter queue: {bad.reason}", err=True)


@main.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_state
def sync_command(state, as_json: bool) -> None:
    """Apply every queued bounce, complaint, unsubscribe and delivery report to the list.

    Each message is applied once, in one transaction, and deleted from the queue only after
    that; one that cannot be parsed is reported and left for the dead-letter queue."""
    summary = sync(state.config)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        describe_sync(summary)
