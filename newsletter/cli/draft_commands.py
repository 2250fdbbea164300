"""`newsletter new` (a draft from the week's paper list), `translate` and `review`."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ListError
from .base import issue_path_argument, main, pass_state

if TYPE_CHECKING:
    from ..draft.markers import DraftPart
    from ..translate import PartOutcome


def _date(_ctx, _param, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; expected YYYY-MM-DD") from None


@contextlib.contextmanager
def _list_errors_one_per_line():
    """Each bad entry of a list is its own `list:line: message` line on stderr."""
    try:
        yield
    except ListError as error:
        for line in str(error).splitlines():
            click.echo(line, err=True)
        sys.exit(error.exit_code)


@main.command()
@click.argument("date", callback=_date, metavar="DATE")
@click.option("--from", "list_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The week's paper list: a CSV (Title, Description, PaperURL, TweetURL, Abstract) or arXiv ids.")
@click.option("--force", is_flag=True, help="Replace an existing issues/DATE.md (its edits are lost).")
@pass_state
def new(state, date: dt.date, list_path: Path | None, force: bool) -> None:
    """Write issues/DATE.md: a draft with every English part from LIST and the Korean parts marked
    to be written (without LIST: a skeleton with one paper). Then: `newsletter translate`, review,
    `newsletter check`.

    Example: newsletter new 2023-10-16 --from links.csv
    """
    from ..draft import draft_text, new_issue, papers_for, read_paper_list
    from ..draft.markers import draft_parts
    from ..parse import parse_issue
    from ..translate import plan

    config = state.config
    with _list_errors_one_per_line():
        papers = papers_for(read_paper_list(list_path), list_path, config.arxiv) if list_path else []
        text = draft_text(date, papers, config.draft, list_path or "<list>")
    path = new_issue(config.draft.folder / f"{date.isoformat()}.md", text, force=force)
    parts = draft_parts(parse_issue(path))
    if not list_path:
        click.echo(f"wrote {path}: a skeleton with one paper; {len(parts)} Korean part(s) for you to write")
        click.echo(f"next: write them (copy the paper for each further one), then `newsletter check {path}`")
        return
    jobs, _ = plan(path)
    yours = _yours_to_write(parts)
    click.echo(f"wrote {path}: {len(papers)} papers, {len(parts)} Korean part(s) to write: {len(jobs)} for "
               f"`newsletter translate`{', ' + yours if yours else ''}")
    click.echo(f"next: newsletter translate {path}   (then review; `newsletter check {path}` lists what is left)")


def _yours_to_write(parts: list[DraftPart]) -> str:
    """'1 for you to write (introduction)': the parts no command fills, or ''."""
    from ..draft.markers import STATE_TO_WRITE

    mine = [part.where for part in parts if part.state == STATE_TO_WRITE]
    return f"{len(mine)} for you to write ({', '.join(mine)})" if mine else ""


@main.command()
@issue_path_argument
@click.option("--dry-run", is_flag=True, help="Show each text that would be sent to the command; change nothing.")
@pass_state
def translate(state, issue_path: Path, dry_run: bool) -> None:
    """Fill every '(번역 예정 · to be translated)' part of ISSUE.md through [translate] command.

    Each part is written back as soon as it is done; stop at any time and run it again to go on.
    Filled parts start with '(기계 번역 · machine translation)' until you review them.
    """
    from ..translate import command_for, command_line, plan, translate_issue

    settings = state.config.translate
    if dry_run:
        jobs, skipped = plan(issue_path)
        for job in jobs:
            command = command_line(job, settings) or "(no command set)"
            click.echo(f"{issue_path}:{job.line}: {job.where} ({len(job.english)} characters) -> {command}")
            click.echo("".join(f"    {line}\n" for line in job.english.splitlines()), nl=False)
        for note in skipped:
            click.echo(f"skip: {note}", err=True)
        click.echo(f"dry run: {len(jobs)} part(s) would be translated; nothing written")
        return
    jobs, _ = plan(issue_path)
    for job in jobs:
        command_for(job, settings)  # a command missing for titles or texts: say so before anything runs
    show_progress = sys.stdout.isatty()
    with contextlib.ExitStack() as stack:
        on_part = None
        if show_progress:
            bar = stack.enter_context(click.progressbar(length=len(jobs), label="translating"))
            on_part = lambda _outcome: bar.update(1)  # noqa: E731
        summary = translate_issue(issue_path, settings, on_part=on_part)
    for note in summary.skipped:
        click.echo(f"skip: {note}", err=True)
    for outcome in summary.failed:
        _describe_failure(issue_path, outcome)
    for outcome in summary.dropped:
        click.echo(f"note: {issue_path}:{outcome.job.line}: {outcome.job.where}: {outcome.error}", err=True)
    if summary.merged:
        click.echo(f"note: {issue_path} was changed on disk during the run; your changes are kept", err=True)
    from ..draft.markers import draft_parts
    from ..parse import parse_issue

    yours = _yours_to_write(draft_parts(parse_issue(issue_path)))  # as the run left the file
    click.echo(f"translated {len(summary.filled)} of {len(summary.outcomes)} part(s) in {issue_path}; "
               f"{len(summary.failed)} left marked{'; ' + yours if yours else ''}")
    if summary.filled:
        click.echo("review each '(기계 번역 · machine translation)' text and delete that marker; "
                   f"`newsletter check {issue_path}` lists them")
    if summary.failed:
        sys.exit(1)


@main.command()
@issue_path_argument
@click.option("--paper", "papers", type=click.IntRange(min=1), multiple=True, metavar="N",
              help="Paper number N as `check` lists it (repeatable).")
@click.option("--all", "every_paper", is_flag=True, help="Every paper.")
def review(issue_path: Path, papers: tuple[int, ...], every_paper: bool) -> None:
    """Mark machine translations as reviewed: drop their '(기계 번역 · machine translation)' marker.

    Read them first (`newsletter preview`); deleting the marker by hand does the same.
    """
    from ..draft.markers import draft_parts
    from ..draft.review import mark_reviewed
    from ..parse import parse_issue

    if not papers and not every_paper:
        raise click.UsageError("say which: --paper N (repeatable) or --all")
    done = mark_reviewed(issue_path, set(papers) or None)
    for item in done:
        click.echo(f"reviewed: {item}")
    left = len(draft_parts(parse_issue(issue_path)))
    click.echo(f"{len(done)} part(s) marked reviewed; {left} Korean part(s) still to finish")


def _describe_failure(issue_path: Path, outcome: PartOutcome) -> None:
    job = outcome.job
    tries = f" after {outcome.attempts} tries" if outcome.attempts > 1 else ""
    click.echo(f"failed: {issue_path}:{job.line}: {job.where}{tries}: {outcome.error}", err=True)


__all__ = ["new", "translate"]
