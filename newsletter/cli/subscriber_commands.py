"""`newsletter subscribers ...`, `newsletter unsubscribe` and `newsletter serve`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import StoreError
from ..model import EDITIONS, SUBSCRIBER_STATUSES
from .backup_commands import describe_backup, replicated, wait_for_backup
from .base import main, pass_state
from .events_commands import describe_time

if TYPE_CHECKING:
    from .. import subscribers as subscriber_list

status_option = click.option(
    "--status", "statuses", multiple=True, type=click.Choice(SUBSCRIBER_STATUSES),
    help="Only subscribers with this status (repeatable; default: all).",
)


def _print_problems(source: str, report: subscriber_list.ImportReport) -> None:
    from ..subscribers import quoted

    for problem in report.problems:
        click.echo(f"{source}:{problem.line}: {problem.reason} ({quoted(problem.value)})", err=True)
    for note in report.notes:
        where = f"{source}:{note.line}" if note.line else source
        click.echo(f"{where}: note: {note.reason} ({quoted(note.value)})", err=True)


@main.group()
def subscribers() -> None:
    """The subscriber list: import, add, remove, list, export, stats."""


@subscribers.command("import")
@click.argument("csv_path", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resubscribe", is_flag=True,
              help="Subscribe again addresses that unsubscribed, bounced or complained.")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even if some are bad.")
@click.option("--dry-run", is_flag=True, help="Count what would change; change nothing.")
@pass_state
@replicated(when=lambda dry_run, **_: not dry_run)
def import_(state, csv_path: Path, resubscribe: bool, skip_invalid: bool, dry_run: bool) -> None:
    """Import FILE.csv (UTF-8 or CP949; columns found by header: email/이메일, name/이름).

    All or nothing: a bad row stops the import and every bad row is listed.
    """
    from .. import subscribers as subscriber_list
    from ..store import Store

    with Store.open(state.config.database) as store:
        try:
            report = subscriber_list.import_csv(
                store, csv_path, resubscribe=resubscribe, skip_invalid=skip_invalid, dry_run=dry_run
            )
        except subscriber_list.ImportRejected as error:
            _print_problems(str(csv_path), error.report)
            raise
        wait_for_backup()
        _print_problems(str(csv_path), report)
        prefix = "dry run, nothing changed: " if dry_run else ""
        click.echo(f"{csv_path} ({report.encoding}, {report.rows} rows): {prefix}{report.summary()}")
        if report.skipped.keys() & {"unsubscribed", "bounced", "complained"}:
            click.echo("(addresses that left are never subscribed again by an import; --resubscribe overrides)")
        click.echo(f"subscribed now: {store.count_subscribed()}{by_edition(store.count_by_edition())}")


def by_edition(counts: dict[str, int]) -> str:
    """" (bilingual 4, en 1)": the editions that have anyone, or nothing."""
    shown = ", ".join(f"{edition} {count}" for edition, count in counts.items() if count)
    return f" ({shown})" if shown else ""


@subscribers.command()
@click.argument("address")
@click.option("--name", help="The subscriber's name, for the To: line.")
@click.option("--resubscribe", is_flag=True, help="Subscribe again if the address had left.")
@click.option("--edition", type=click.Choice(EDITIONS, case_sensitive=False),
              help="Which email they get (default: bilingual for a new address; an address on the list keeps its own).")
@pass_state
@replicated()
def add(state, address: str, name: str | None, resubscribe: bool, edition: str | None) -> None:
    """Add one ADDRESS to the list (or change its name or edition)."""
    from .. import subscribers as subscriber_list
    from ..store import Store

    with Store.open(state.config.database) as store:
        report = subscriber_list.add(store, address, name, resubscribe=resubscribe, edition=edition)
    wait_for_backup()
    _print_problems(address, report)
    if report.skipped:
        status = next(iter(report.skipped))
        raise StoreError(f"{address} is {status}; pass --resubscribe if they asked to come back")
    click.echo(f"{address}: {report.summary()}")


@subscribers.command()
@click.argument("address")
@click.option("--forget", is_flag=True,
              help="Delete it although it unsubscribed, bounced or complained (e.g. they asked to be erased).")
@pass_state
@replicated()
def remove(state, address: str, forget: bool) -> None:
    """Delete ADDRESS and everything kept about it.

    A later import may add it again; to keep someone off the list use `newsletter unsubscribe`.
    An address that left is kept unless --forget: deleted, it could be subscribed again.
    """
    from ..store import Store

    with Store.open(state.config.database) as store:
        current = store.get(address)
        if current is not None and current.status != "subscribed" and not forget:
            raise StoreError(f"{address} is {current.status}: deleted, an import or a confirmation could subscribe it "
                             "again, so it is kept; pass --forget to delete it anyway (e.g. they asked to be erased)")
        if not store.delete(address):
            raise StoreError(f"{address} is not on the list")
    wait_for_backup()
    click.echo(f"removed {address}")


@subscribers.command("list")
@status_option
@pass_state
def list_(state, statuses: tuple[str, ...]) -> None:
    """Print the subscribers, one per line: address, status, edition, name (tab-separated)."""
    from ..store import Store

    with Store.open(state.config.database) as store:
        for subscriber in store.subscribers(statuses or SUBSCRIBER_STATUSES):
            click.echo(f"{subscriber.address}\t{subscriber.status}\t{subscriber.edition}\t{subscriber.name or ''}")


@subscribers.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to this file (default: standard output).")
@status_option
@pass_state
def export(state, output: Path | None, statuses: tuple[str, ...]) -> None:
    """Write the list as CSV (UTF-8 with a BOM, for Excel); `subscribers import` reads it back."""
    from .. import subscribers as subscriber_list
    from ..store import Store

    with Store.open(state.config.database) as store:
        if output is None:
            count = subscriber_list.export_csv(store, sys.stdout, statuses or SUBSCRIBER_STATUSES)
            return
        try:
            out = output.open("w", encoding="utf-8-sig", newline="")
        except OSError as error:
            raise StoreError(f"cannot write {output} ({error.strerror or error})") from None
        with out:
            count = subscriber_list.export_csv(store, out, statuses or SUBSCRIBER_STATUSES)
    click.echo(f"exported {count} to {output}", err=True)


@subscribers.command()
@pass_state
def stats(state) -> None:
    """Count the subscribers by status (and the subscribed by edition); for those who left, since
    when (first and latest change)."""
    from ..events.report import list_history
    from ..store import Store

    with Store.open(state.config.database) as store:
        counts = store.count_by_status()
        editions = store.count_by_edition()
    history = list_history(state.config.database)
    for status, count in counts.items():
        _, first, latest = history.statuses.get(status, (0, None, None))
        since = f"  since {first[:10]} (latest {latest[:10]})" if status != "subscribed" and count else ""
        click.echo(f"{status:<13}{count:>8}{since}")
        if status == "subscribed":
            for edition, number in editions.items():
                click.echo(f"  {edition:<11}{number:>8}")
    click.echo(f"{'total':<13}{sum(counts.values()):>8}")
    if history.last_sync:
        click.echo(f"last sync:   {describe_time(history.last_sync)} (bounces, complaints and unsubscribes applied up to then)")
    if backup := describe_backup(state.config):
        click.echo(f"backup:      {backup}")


@main.command()
@click.argument("address_or_token", metavar="EMAIL|TOKEN")
@click.option("--reason", default="by hand (newsletter unsubscribe)", show_default=True)
@pass_state
@replicated()
def unsubscribe(state, address_or_token: str, reason: str) -> None:
    """Unsubscribe EMAIL by hand (or the TOKEN from an unsubscribe mail's subject or link).

    An address not on the list is recorded as unsubscribed, so that no import adds it later. Any
    address exits 0 with one line saying what was done; only a TOKEN that is not genuine fails.
    """
    from .. import subscribers as subscriber_list
    from ..store import Store
    from ..unsubscribe import TokenSigner, load_signing_key

    address = address_or_token
    if "@" not in address_or_token:
        token = address_or_token.rstrip("/").rpartition("/")[2].removeprefix("unsubscribe-")
        key = load_signing_key(state.config, allow_development=True)
        address = TokenSigner(state.config.list_id, key).address(token)
        if address is None:
            raise StoreError("not a valid unsubscribe token for this list and key")
    with Store.open(state.config.database) as store:
        done = subscriber_list.unsubscribe(store, address, reason)
    wait_for_backup()
    if done.previous == "unsubscribed":
        click.echo(f"{done.address} was already unsubscribed")
    elif done.kept_stronger:
        click.echo(f"{done.address} stays {done.previous}: an unsubscribe never weakens a bounce or a complaint "
                   "(nothing changed)")
    elif done.previous is None and done.undeliverable:
        click.echo(f"{done.address} is not on the list, and cannot be ({done.undeliverable}); nothing to do")
    elif done.previous is None:
        click.echo(f"{done.address} was not on the list; recorded as unsubscribed")
    else:
        click.echo(f"unsubscribed {done.address} (was {done.previous})")


@main.command()
@click.option("--host", help="Address to listen on (default: serve.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: serve.port).")
@click.option("--allow-development-key", is_flag=True,
              help="Accept dry-run links signed with the public development key (testing only).")
@pass_state
def serve(state, host: str | None, port: int | None, allow_development_key: bool) -> None:
    """Run the one-click unsubscribe endpoint (put it behind your HTTPS proxy)."""
    from ..events import EventQueue
    from ..store import Store
    from ..unsubscribe import DEVELOPMENT_KEY_NOTICE, load_signing_key
    from ..web import app_for, create_server

    config = state.config
    key = load_signing_key(config, allow_development=allow_development_key)
    if key.is_development:
        click.echo(DEVELOPMENT_KEY_NOTICE, err=True)
    Store.open(config.database).close()  # fail now, not on the first request, if it is unusable
    host, port = host or config.serve_host, config.serve_port if port is None else port
    queue = EventQueue.from_config(config) if config.events else None
    app = app_for(config, key, database=config.database, queue=queue)
    server = create_server(app, host, port, config.serve_trusted_proxy)
    queued = f"; each unsubscribe also goes to queue {config.events.queue!r}" if queue else ""
    click.echo(f"unsubscribe endpoint on http://{host}:{server.effective_port}/TOKEN (key: {key.source}{queued}); "
               "Ctrl-C stops", err=True)
    click.echo(f"preferences page on http://{host}:{server.effective_port}/preferences/TOKEN (public: "
               f"{config.preferences.url})", err=True)
    if config.subscribe:
        click.echo(f"subscribe form on http://{host}:{server.effective_port}/subscribe/ (public: {config.subscribe.url})",
                   err=True)
    server.run()
