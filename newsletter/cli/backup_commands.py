"""`newsletter restore`, and `replicated`: the one-line hook that puts a command that writes the
list under the backup (the lease, Litestream, and no report of success before S3 has it)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from pathlib import Path

import click

from ..errors import BackupError, NewsletterError
from .base import State, main, pass_state

_SESSION = "newsletter.backup"


def replicated(when: Callable[..., bool] | None = None) -> Callable:
    """Run the command under the backup when the config has a [backup] table (and `when(**options)`
    says this run writes the list): take the lease, replicate every change as it is made, and
    before exiting upload the last ones and read them back from S3. Put it under `@pass_state`;
    call `wait_for_backup()` before printing that something is done."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(state: State, *args, **options):
            if state.config.backup is None or (when is not None and not when(**options)):
                return command(state, *args, **options)
            from ..backup import Replication

            context = click.get_current_context()
            doing = " ".join([*context.command_path.split()[1:], *(str(value) for value in options.values()
                                                                   if isinstance(value, Path))])
            try:
                with Replication(state.config, doing, on_stop=lambda why: click.echo(f"stopping: {why}", err=True)) \
                        as replication:
                    context.meta[_SESSION] = replication
                    return command(state, *args, **options)
            except BackupError as error:
                cause = error.__context__
                if isinstance(cause, NewsletterError) and not isinstance(cause, BackupError):
                    click.echo(f"error: {cause}", err=True)  # the command's own failure, before the backup's
                raise
            finally:
                context.meta.pop(_SESSION, None)

        return run

    return decorate


def wait_for_backup() -> None:
    """With [backup]: wait until S3 holds every change this command made (BackupError if it cannot
    within the configured time). Without: nothing."""
    session = click.get_current_context().meta.get(_SESSION)
    if session is not None:
        session.caught_up()


def backup_barrier() -> Callable[[], object] | None:
    """With [backup]: what a command that goes on writing calls before an irreversible step (sync,
    before it deletes queue messages): it returns once S3 holds every change made so far, and is
    safe to call from any thread. Without: None."""
    session = click.get_current_context().meta.get(_SESSION)
    return session.holds_all_so_far if session is not None else None


def _moment(_ctx, _param, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time; expected e.g. 2026-12-05 09:30 (this machine's time "
                                 "zone) or 2026-12-05T00:30:00Z") from None
    return moment.astimezone() if moment.tzinfo is None else moment


@main.command("restore")
@click.option("--at", "at", callback=_moment, metavar="TIME",
              help="The list as it was at TIME (e.g. '2026-12-05 09:30', local time; up to a week back).")
@click.option("--force", is_flag=True, help="Replace the database here, although it holds a list.")
@click.option("--json", "as_json", is_flag=True, help="Print what was restored as JSON.")
@pass_state
def restore_command(state, at: dt.datetime | None, force: bool, as_json: bool) -> None:
    """Bring the list back from its backup ([backup] to = s3://...): on a new machine, the config
    is all it needs. Refuses to replace a database that holds a list unless --force.

    Example: newsletter restore        (then: newsletter doctor, newsletter send ...)
    """
    from ..backup import restore

    restored = restore(state.config, at=at, force=force)
    if as_json:
        click.echo(json.dumps(restored.to_dict(), ensure_ascii=False, indent=2))
        return
    written = f"{restored.written_at:%Y-%m-%d %H:%M:%S} UTC" if restored.written_at else "time unknown"
    click.echo(f"restored {restored.database} from {restored.replica} (change {restored.txid}, written {written})")
    readers = ", ".join(f"{count} {status}" for status, count in restored.counts.items() if count) or "none"
    click.echo(f"readers:    {readers}")
    if restored.last_issue:
        click.echo(f"last issue: {restored.last_issue} ({restored.last_issue_sent} sent)")
    else:
        click.echo("last issue: none sent yet")
    if restored.writer is not None:
        click.echo(f"note: the list is being written by {restored.writer.describe()}; this copy may already be "
                   "behind: restore again once it ends", err=True)
    if at is not None:
        click.echo("note: an earlier state: the next command that writes the list makes it the newest, and what "
                   "came after it is no longer in the backup's newest state", err=True)


def describe_backup(config) -> str | None:
    """One line on the backup (when it last caught up, how this copy stands), or None without
    [backup]."""
    if config.backup is None:
        return None
    from ..backup import replica_status

    return replica_status(config).describe()
