"""`newsletter publish`: the archive (issue pages, index, search, tag pages, feed) to a folder and S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .backup_commands import replicated, wait_for_backup
from .base import main, pass_state

if TYPE_CHECKING:
    from ..site import PublishReport


def _describe(report: PublishReport) -> None:
    for label, target in (("folder", report.folder), ("upload", report.upload)):
        if target is not None:
            removed = f", {len(target.removed)} removed" if target.removed else ""
            click.echo(f"{label}: {target.target}: {len(target.written)} written, {len(target.unchanged)} unchanged"
                       + removed)
            for path in target.written:
                click.echo(f"  {path}")
    click.echo(f"index: {report.listed} issue(s), newest first; pages rendered now: {', '.join(report.issues)}")
    click.echo(f"search: {report.searchable_papers} paper(s); tag pages: {report.tags}")
    if report.without_papers:
        click.echo(f"note: published before the archive kept papers, so not in search or tag pages: "
                   f"{', '.join(report.without_papers)}; publish their files again to add them", err=True)
    if report.upload is None:
        click.echo(f"note: nothing was uploaded (no --to, no publish.to): the pages are only in {report.folder.target} "
                   f"on this machine, and readers will look for them at {', '.join(report.urls)}; upload with "
                   "--to s3://BUCKET/PREFIX, or copy the folder to where newsletter.web_base_url is served", err=True)
    if report.dropped:
        click.echo(f"note: taken off the index (--all without their files): {', '.join(report.dropped)}; "
                   "their pages stay where they were published", err=True)
    if report.missing_pages:
        click.echo(f"warning: the index lists issues whose page is not in {report.folder.target}: "
                   f"{', '.join(report.missing_pages)}; publish their files again (or --all with every file)", err=True)
    if not report.has_subscribe_form:
        click.echo("note: no [subscribe] url in the config, so the index page has no subscribe form", err=True)


@main.command("publish")
@click.argument("issue_paths", metavar="ISSUE.md...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--all", "rebuild_all", is_flag=True,
              help="Rebuild the index from exactly these issue files (others are taken off it).")
@click.option("--to", metavar="s3://BUCKET/PREFIX", help="Upload the site there (default: publish.to).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The site's folder (default: publish.out, build/site).")
@click.option("--force", is_flag=True, help="Write and upload every file, changed or not.")
@click.option("--allow-draft", is_flag=True,
              help="Publish although Korean parts are unfinished (the archive is public).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
@replicated()
def publish_command(state, issue_paths: tuple[Path, ...], rebuild_all: bool, to: str | None, out: Path | None,
                    force: bool, allow_draft: bool, as_json: bool) -> None:
    """Publish ISSUE.md's web page at the URL its email links to, with the index page (newest
    first, with the search box and the subscribe form), the search index and tag pages of every
    published paper, and the Atom feed; with --to or publish.to, upload what changed to S3.

    Example: newsletter publish issues/2023-10-16.md --to s3://my-bucket/issues
    """
    from ..site import publish

    report = publish(issue_paths, state.config, rebuild_all=rebuild_all, out=out, to=to, force=force,
                     allow_draft=allow_draft)
    wait_for_backup()  # the archive's index lives in the list's database
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _describe(report)
