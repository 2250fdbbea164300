"""`newsletter send`: the dry run, test copies (--to) and the real send."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .base import issue_path_argument, main, pass_state
from .events_commands import check_before_list_send

if TYPE_CHECKING:
    from ..send import SendPlan, SendSummary


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def _describe_plan(plan: SendPlan) -> None:
    from ..unsubscribe import DEVELOPMENT_KEY_NOTICE

    if plan.test_addresses:
        who = "test copy to " + ", ".join(plan.test_addresses)
    elif plan.list_send:
        who = "subscribed addresses that do not have this issue yet"
    else:
        who = "subscribed addresses"
    click.echo(f"issue:     {plan.issue_id}  {plan.subject} ({plan.paper_count} papers)")
    click.echo(f"from:      {plan.sender}")
    click.echo(f"to:        {plan.recipient_count} ({who})")
    click.echo(f"transport: {'dry run (outbox, no network)' if plan.dry_run else plan.transport_kind}")
    if not plan.recipient_count and not plan.test_addresses:
        if plan.ledger and plan.ledger["sent"]:
            click.echo(f"note: nothing left to send: {plan.ledger['sent']} recipient(s) already have this issue", err=True)
        else:
            click.echo(f"note: no subscribed address in {plan.config.database}; add some with "
                       "`newsletter subscribers import FILE.csv`", err=True)
    if plan.development_key:
        click.echo(f"note: {DEVELOPMENT_KEY_NOTICE}", err=True)
    if plan.list_send:
        _describe_list_send(plan)


def _describe_list_send(plan: SendPlan) -> None:
    quota, counts = plan.quota, plan.ledger
    daily = "unlimited" if quota.max_24h_send < 0 else f"{quota.max_24h_send}/24h, {quota.sent_last_24h} sent in the last 24h"
    click.echo(f"quota:     {quota.max_send_rate:g}/s, {daily} (from {quota.source})")
    sizing = plan.sizing()
    click.echo(f"rate:      {plan.rate:.1f} messages/s ({plan.config.rate_share:g} of {quota.max_send_rate:g}/s), "
               f"{sizing.describe()}")
    click.echo(f"workers:   {sizing.reason}")
    click.echo("ledger:    " + ", ".join(f"{state} {number}" for state, number in counts.items() if number))
    if plan.found_interrupted:
        click.echo(f"note: an earlier run was cut off mid-send: {plan.found_interrupted} recipient(s) become "
                   "`unknown` (they may have it); see `newsletter status`", err=True)
    if counts["unknown"] and not plan.resend_unknown:
        click.echo(f"note: {counts['unknown']} `unknown` recipient(s) are not sent again without --resend-unknown", err=True)


def _describe_summary(summary: SendSummary) -> None:
    verb = "prepared" if summary.dry_run else "sent"
    click.echo(f"{verb}: {summary.sent} of {summary.recipients}; failed: {len(summary.failures)}")
    clipped = summary.html_part_bytes > summary.gmail_clip_bytes
    largest = f"up to {_kb(summary.largest_message_bytes)}; " if summary.largest_message_bytes else ""
    click.echo(
        f"message size: {largest}HTML part as sent {_kb(summary.html_part_bytes)}, "
        f"{'over' if clipped else 'under'} Gmail's clipping point (~{_kb(summary.gmail_clip_bytes)})"
    )
    if clipped:
        click.echo("warning: Gmail will show this issue as \"[Message clipped]\" and hide the rest, the "
                   "unsubscribe link included; shorten the issue or split it", err=True)
    if summary.first_addresses:
        click.echo("first recipients: " + ", ".join(summary.first_addresses))
    if summary.dry_run:
        for sample in summary.sample_files:
            click.echo(f"sample: {sample}")
        click.echo(f"manifest (every recipient and message size): {summary.manifest}")
    for label, failures in (("failed", summary.failures), ("unknown", summary.unknown), ("deferred", summary.deferred)):
        for failure in failures:
            code = f" {failure.code}" if failure.code else ""
            click.echo(f"{label}: {failure.address}: {failure.kind}{code}: {failure.message}", err=True)
    if summary.skipped:
        click.echo(f"skipped: {summary.skipped} recipient(s) who left the list after the send was queued")
    if summary.retries:
        click.echo(f"retried: {summary.retries} call(s) after throttling, a server error or no connection "
                   f"(rate lowered {summary.slow_downs} time(s))")
    if summary.stopped:
        fix = f" To fix: {summary.stop_fix.rstrip('.')}." if summary.stop_fix else ""
        click.echo(f"stopped: {summary.stopped.rstrip('.')}.{fix} Then run the same `newsletter send` "
                   "again: the rest are pending, no one was marked failed for it", err=True)
    if summary.interrupted:
        click.echo(f"stopped: {summary.interrupted}; calls in flight were finished and recorded", err=True)
    if summary.ledger and summary.ledger["pending"]:
        click.echo(f"pending: {summary.ledger['pending']} recipient(s) still to send; "
                   "run the same `newsletter send` again to send them (no one gets it twice)", err=True)


@main.command()
@issue_path_argument
@click.option("--dry-run", is_flag=True, help="Do everything but the network call: write samples and a manifest.")
@click.option("--to", "test_addresses", multiple=True, metavar="ADDRESS",
              help="Send a test copy to ADDRESS (repeatable) instead of the list; nothing is recorded.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before a real send.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--resend-unknown", is_flag=True,
              help="Send again to recipients whose earlier send has an unknown outcome (they may get two).")
@click.option("--retry-failed", is_flag=True, help="Send again to recipients whose earlier send failed.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Send to at most N recipients now (e.g. what the daily quota allows); the rest stay pending.")
@click.option("--no-sync", is_flag=True, help="Do not apply queued bounces, complaints and unsubscribes first.")
@click.option("--force", is_flag=True, help="Send even though the last issue passed SES's bounce or complaint threshold.")
@click.option("--allow-draft", is_flag=True,
              help="Send to the list although Korean parts are unfinished (to write, or machine text to review).")
@click.option("--send-changed-version", is_flag=True,
              help="The issue was edited after some got it: send the new version to those who do not have it yet.")
@click.option("--no-publish-check", is_flag=True,
              help="Send even if the issue's web page is not published as it is now (`newsletter publish`).")
@click.option("--workers", type=click.IntRange(1, 256), metavar="N",
              help="Worker threads per process, fixed (default: sized to the rate and each message's measured time).")
@click.option("--processes", type=click.IntRange(1, 64), metavar="N",
              help="Worker processes, fixed (default: more than one only when one cannot keep to the rate).")
@pass_state
def send(state, issue_path: Path, dry_run: bool, test_addresses: tuple[str, ...], yes: bool, as_json: bool,
         resend_unknown: bool, retry_failed: bool, limit: int | None, no_sync: bool, force: bool,
         allow_draft: bool, send_changed_version: bool, no_publish_check: bool,
         workers: int | None, processes: int | None) -> None:
    """Send ISSUE.md to every subscribed address (or --to addresses, or a --dry-run).

    A send to the list is recorded per recipient in the database: running it again (after a
    crash, Ctrl-C or a stop) sends only to those who do not have it yet, new subscribers included.
    Exits 0 only when every recipient was sent. With [events] configured, a send to the list
    first syncs the feedback queue (bounces, complaints, unsubscribes) and refuses to start when
    the last issue passed SES's review thresholds, unless --force.
    """
    from ..draft.markers import draft_parts, refuse_draft
    from ..parse import parse_issue
    from ..send import prepare_send, send_issue
    from ..site import check_published

    if not dry_run and not test_addresses:
        if not allow_draft:
            refuse_draft(parse_issue(issue_path))  # a draft goes to the list only on purpose
        if state.config.publish.check_before_send and not no_publish_check:
            # The email links to its web page: a list send waits until that page is published as is.
            check_published(issue_path, state.config)
        check_before_list_send(state.config, sync_first=not no_sync, force=force, as_json=as_json)
    elif not as_json and (unfinished := draft_parts(parse_issue(issue_path))):
        click.echo(f"note: a draft: {len(unfinished)} Korean part(s) not finished (`newsletter check` lists "
                   "them); a send to the list refuses it until they are", err=True)
    plan = prepare_send(issue_path, state.config, dry_run=dry_run, test_addresses=test_addresses,
                        resend_unknown=resend_unknown, retry_failed=retry_failed, limit=limit,
                        send_changed_version=send_changed_version)
    plan = dataclasses.replace(plan, workers=workers, processes=processes)
    if not as_json:
        _describe_plan(plan)
    if not plan.dry_run and not yes and plan.recipient_count:
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
