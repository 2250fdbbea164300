"""`newsletter send`: the dry run, test copies (--to) and the real send."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from ..sending import SendPlan, SendSummary, prepare_send, send_issue
from ..unsubscribe import DEVELOPMENT_KEY_NOTICE
from .base import issue_path_argument, main, pass_state


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def _describe_plan(plan: SendPlan) -> None:
    who = "test copy to " + ", ".join(plan.test_addresses) if plan.test_addresses else "subscribed addresses"
    click.echo(f"issue:     {plan.issue_id}  {plan.subject}")
    click.echo(f"from:      {plan.sender}")
    click.echo(f"to:        {plan.recipient_count} ({who})")
    click.echo(f"transport: {'dry run (outbox, no network)' if plan.dry_run else plan.transport_kind}")
    if plan.development_key:
        click.echo(f"note: {DEVELOPMENT_KEY_NOTICE}", err=True)


def _describe_summary(summary: SendSummary) -> None:
    verb = "prepared" if summary.dry_run else "sent"
    click.echo(f"{verb}: {summary.sent} of {summary.recipients}; failed: {len(summary.failures)}")
    if summary.sent:
        clip = "over" if summary.html_part_bytes > summary.gmail_clip_bytes else "under"
        click.echo(
            f"message size: up to {_kb(summary.largest_message_bytes)}; HTML part as sent "
            f"{_kb(summary.html_part_bytes)}, {clip} Gmail's clipping point (~{_kb(summary.gmail_clip_bytes)})"
        )
    if summary.first_addresses:
        click.echo("first recipients: " + ", ".join(summary.first_addresses))
    if summary.dry_run:
        for sample in summary.sample_files:
            click.echo(f"sample: {sample}")
        click.echo(f"manifest (every recipient and message size): {summary.manifest}")
    for failure in summary.failures:
        code = f" {failure.code}" if failure.code else ""
        click.echo(f"failed: {failure.address}: {failure.kind}{code}: {failure.message}", err=True)
    if summary.stopped:
        click.echo(f"stopped: the account cannot send now: {summary.stopped}", err=True)


@main.command()
@issue_path_argument
@click.option("--dry-run", is_flag=True, help="Do everything but the network call: write samples and a manifest.")
@click.option("--to", "test_addresses", multiple=True, metavar="ADDRESS",
              help="Send a test copy to ADDRESS (repeatable) instead of the list; nothing is recorded.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before a real send.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_state
def send(state, issue_path: Path, dry_run: bool, test_addresses: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Send ISSUE.md to every subscribed address (or --to addresses, or a --dry-run).

    Exits 0 only when every recipient was sent.
    """
    plan = prepare_send(issue_path, state.config, dry_run=dry_run, test_addresses=test_addresses)
    if not as_json:
        _describe_plan(plan)
    if not plan.dry_run and not yes:
        click.confirm(f"Send to {plan.recipient_count} recipient(s) now?", abort=True, err=True)

    show_progress = sys.stdout.isatty() and not as_json
    with contextlib.ExitStack() as stack:
        on_result = None
        if show_progress:
            bar = stack.enter_context(click.progressbar(length=plan.recipient_count, label="preparing" if plan.dry_run else "sending"))
            on_result = lambda _address, _failure: bar.update(1)  # noqa: E731
        summary = send_issue(plan, on_result=on_result)

    if as_json:
        click.echo(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
    else:
        _describe_summary(summary)
    if not summary.complete:
        sys.exit(1)
