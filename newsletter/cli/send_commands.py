"""`newsletter send`: the dry run, test copies (--to) and the real send."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import AwsError, SendError
from ..model import EDITIONS
from .backup_commands import backup_barrier, replicated, wait_for_backup
from .base import issue_path_argument, main, pass_state
from .events_commands import describe_sync, say_waiting

if TYPE_CHECKING:
    from ..aws.reputation import Reputation
    from ..config import Config
    from ..send import IssueToSend, SendPlan, SendSummary


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def _describe_plan(plan: SendPlan) -> None:
    from ..unsubscribe import DEVELOPMENT_KEY_NOTICE

    if plan.test_addresses:
        who = "test copy to " + ", ".join(plan.test_addresses) + " (" + ", ".join(plan.test_editions) + ")"
    elif plan.list_send:
        who = "subscribed addresses that do not have this issue yet"
    else:
        editions = ", ".join(f"{edition} {count}" for edition, count in plan.subscribed_by_edition.items() if count)
        who = f"subscribed addresses: {editions}" if editions else "subscribed addresses"
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
    clipped = [edition for edition, size in summary.html_part_bytes_by_edition.items() if size > summary.gmail_clip_bytes]
    largest = f"up to {_kb(summary.largest_message_bytes)}; " if summary.largest_message_bytes else ""
    parts = ", ".join(f"{edition} {_kb(size)}" for edition, size in summary.html_part_bytes_by_edition.items())
    click.echo(
        f"message size: {largest}HTML part as sent {parts}, "
        f"{'over' if clipped else 'under'} Gmail's clipping point (~{_kb(summary.gmail_clip_bytes)})"
    )
    if clipped:
        click.echo(f"warning: Gmail will show this issue ({', '.join(clipped)}) as \"[Message clipped]\" and hide "
                   "the rest, the unsubscribe link included; shorten the issue or split it", err=True)
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
        again = ("again: the rest are pending, no one was marked failed for it" if summary.ledger is not None else
                 "again (test copies and dry runs are recorded nowhere: it starts over)")
        click.echo(f"stopped: {summary.stopped.rstrip('.')}.{fix} Then run the same `newsletter send` {again}",
                   err=True)
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
@click.option("--edition", "test_editions", multiple=True, type=click.Choice(EDITIONS, case_sensitive=False),
              help="The edition of the test copies (repeatable: one copy of each; default: bilingual).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before a real send.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--resend-unknown", is_flag=True,
              help="Send again to recipients whose earlier send has an unknown outcome (they may get two).")
@click.option("--retry-failed", is_flag=True, help="Send again to recipients whose earlier send failed.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Send to at most N recipients now (e.g. what the daily quota allows); the rest stay pending.")
@click.option("--no-sync", is_flag=True, help="Do not apply queued bounces, complaints and unsubscribes first.")
@click.option("--force", is_flag=True,
              help="Send even though the account's bounce or complaint rate is over SES's review threshold.")
@click.option("--allow-draft", is_flag=True,
              help="Send to the list although Korean parts are unfinished (to write, or machine text to review).")
@click.option("--send-changed-version", is_flag=True,
              help="The issue was edited after some got it: send the new version to those who do not have it yet.")
@click.option("--no-publish-check", is_flag=True,
              help="Send even if the email's web link does not answer with this issue's page (`newsletter publish`).")
@click.option("--workers", type=click.IntRange(1, 256), metavar="N",
              help="Worker threads per process, fixed (default: sized to the rate and each message's measured time).")
@click.option("--processes", type=click.IntRange(1, 64), metavar="N",
              help="Worker processes, fixed (default: more than one only when one cannot keep to the rate).")
@pass_state
@replicated(when=lambda dry_run, test_addresses, **_: not dry_run and not test_addresses)
def send(state, issue_path: Path, dry_run: bool, test_addresses: tuple[str, ...], test_editions: tuple[str, ...],
         yes: bool, as_json: bool,
         resend_unknown: bool, retry_failed: bool, limit: int | None, no_sync: bool, force: bool,
         allow_draft: bool, send_changed_version: bool, no_publish_check: bool,
         workers: int | None, processes: int | None) -> None:
    """Send ISSUE.md to every subscribed address (or --to addresses, or a --dry-run).

    A send to the list is recorded per recipient in the database: running it again (after a
    crash, Ctrl-C or a stop) sends only to those who do not have it yet, new subscribers included.
    Exits 0 only when every recipient was sent. A send to the list first opens the email's "View
    on the web" link and refuses unless it answers with this issue's page; with [events], it syncs
    the feedback queue (bounces, complaints, unsubscribes); and it refuses when the account's rates
    are over SES's review thresholds as SES judges them (its reputation metrics, or ours over
    1,000 messages), unless --force.
    """
    from ..draft.markers import draft_parts
    from ..send import IssueToSend, prepare_send, send_issue

    config = state.config
    issue = IssueToSend.load(issue_path, config)  # read and rendered once, for the checks and the send
    dry_run = dry_run or config.transport == "outbox"  # kind = "outbox": nothing leaves the machine
    if not dry_run and not test_addresses:
        _check_before_list_send(config, issue, allow_draft=allow_draft, publish_check=not no_publish_check,
                                sync_first=not no_sync, force=force, as_json=as_json)
    elif not as_json and (unfinished := draft_parts(issue.parsed)):
        click.echo(f"note: a draft: {len(unfinished)} Korean part(s) not finished (`newsletter check` lists "
                   "them); a send to the list refuses it until they are", err=True)
    plan = prepare_send(issue, config, dry_run=dry_run, test_addresses=test_addresses, test_editions=test_editions,
                        resend_unknown=resend_unknown, retry_failed=retry_failed, limit=limit,
                        send_changed_version=send_changed_version)
    plan = dataclasses.replace(plan, workers=workers, processes=processes)
    if not as_json:
        _describe_plan(plan)
    if not plan.dry_run and not yes and plan.recipient_count:
        _ask(f"Send to {plan.recipient_count} recipient(s) now?")

    show_progress = sys.stdout.isatty() and not as_json
    with contextlib.ExitStack() as stack:
        on_result = None
        if show_progress:
            bar = stack.enter_context(click.progressbar(length=plan.recipient_count, label="preparing" if plan.dry_run else "sending"))
            on_result = lambda _address, _failure: bar.update(1)  # noqa: E731
        summary = send_issue(plan, on_result=on_result)
    wait_for_backup()  # with [backup], nothing is reported sent before S3 holds it

    if as_json:
        click.echo(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
    else:
        _describe_summary(summary)
    if not summary.complete:
        sys.exit(1)


def _ask(question: str) -> None:
    """Go on only on a yes; a no, or no answer at all (no terminal: a script, cron, a pipe), is one
    line that names --yes."""
    try:
        answer = click.confirm(question, err=True)
    except click.Abort:  # stdin ended (or Ctrl-C) before an answer
        click.echo(err=True)  # end the question's line
        raise SendError("not sent: no answer to \"" + question + "\" (no terminal to ask on?); "
                        "pass --yes to send without asking") from None
    if not answer:
        raise SendError("not sent: you answered no")


# --- before a send to the list ----------------------------------------------------------------------


def _check_before_list_send(config: Config, issue: IssueToSend, *, allow_draft: bool, publish_check: bool,
                            sync_first: bool, force: bool, as_json: bool) -> None:
    """Everything a send to the list passes before its first message, in this order; each refuses
    in one line and changes nothing (the sync only brings the list up to date)."""
    from ..draft.markers import refuse_draft
    from ..send.gates import check_web_page

    say = _say(as_json)
    if not allow_draft:
        refuse_draft(issue.parsed)  # a draft goes to the list only on purpose
    if config.publish.check_before_send and publish_check:
        say(f"web page:  {check_web_page(issue, config)} is this issue's page")  # "View on the web" works
    if config.events is not None:
        _sync(config, sync_first)  # the week's bounces, complaints and unsubscribes leave the list first
    _check_feedback(config, force, say)  # SES's bounce and complaint rates, or ours over enough mail


def _say(as_json: bool):
    """Where the checks' lines go: stdout, or stderr when stdout carries JSON."""
    return lambda line: click.echo(line, err=as_json)


def _sync(config: Config, sync_first: bool) -> None:
    if not sync_first:
        click.echo("warning: --no-sync: bounces, complaints and unsubscribes waiting on the queue are not applied; "
                   "some of those addresses may be mailed", err=True)
        return
    from ..events.sync import refuse_if_in_flight, sync

    try:
        summary = sync(config, on_wait=say_waiting, before_delete=backup_barrier())
    except AwsError as error:
        raise AwsError(f"{error.message} (to send without the feedback, pass --no-sync)", code=error.code) from error
    describe_sync(summary, err=True)
    refuse_if_in_flight(summary, config.events)  # an unsubscribe still in flight must not be mailed past


def _check_feedback(config: Config, force: bool, say) -> None:
    from ..events.report import REVIEW_BOUNCE_RATE, REVIEW_COMPLAINT_RATE, recent_feedback
    from ..send.gates import ISSUES_JUDGED, judge_feedback

    reputation, problem = _reputation(config)
    recent = recent_feedback(config.database, limit=ISSUES_JUDGED) if config.events is not None else []
    for feedback in recent[:3]:
        say(f"feedback:  {feedback.issue_id}: {feedback.sent} sent, bounce rate {feedback.bounce_rate:.1%}, "
            f"complaint rate {feedback.complaint_rate:.2%} (SES reviews above {REVIEW_BOUNCE_RATE:.0%} / "
            f"{REVIEW_COMPLAINT_RATE:.1%})")
    verdict = judge_feedback(recent, reputation, problem)
    for note in verdict.notes:
        say(f"feedback:  {note}")
    for warning in verdict.warnings:
        click.echo(f"warning: {warning}", err=True)
    if verdict.problems and force:
        click.echo(f"warning: {verdict.summary()}; sending anyway (--force)", err=True)
    elif verdict.problems:
        raise SendError(verdict.refusal())


def _reputation(config: Config) -> tuple[Reputation | None, str | None]:
    """SES's reputation metrics, or why they could not be read; (None, None) off SES."""
    if config.transport != "ses":
        return None, None
    from ..aws.reputation import read_reputation

    try:
        return read_reputation(config.ses), None
    except AwsError as error:
        return None, error.message
