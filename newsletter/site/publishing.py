"""`newsletter publish`: issue files -> the archive folder (and S3), and the index in the database.

The order keeps every reader's link working and the database honest:

1. every issue file is parsed and rendered first, so one bad file stops the run before anything
   is written;
2. the pages, the search index (Pagefind, over every published paper), the tag pages, then the
   index page and the feed go to the folder (only files that changed);
3. with an s3:// target, the site (the files the site wrote to the folder, never anything else
   there: see targets.py) is compared with the bucket and what differs uploaded;
4. only then is the index in the database updated, so a send never finds an issue "published"
   whose page did not reach its target. A crash between 3 and 4 is repaired by the next run.

A list send checks the page itself where readers will open it, over the network
(`send/gates.py`); the index says where `publish` last put it, for that check's advice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..draft.markers import refuse_draft
from ..errors import PublishError
from ..model import Issue
from ..parse import parse_issue
from ..render import render_issue, web_url
from ..store import Store
from .pages import SEARCH_FOLDER, TAGS_FOLDER, SiteFile, atom_feed, index_entry, index_page, issue_page, tag_pages
from .search import pagefind_binary, search_files
from .targets import FolderTarget, S3Target, TargetReport


@dataclass
class PublishReport:
    issues: list[str]  # the issues rendered this run
    folder: TargetReport
    urls: list[str] = field(default_factory=list)  # where readers open those issues' pages (web_base_url)
    upload: TargetReport | None = None
    listed: int = 0  # issues on the index page
    dropped: list[str] = field(default_factory=list)  # taken off the index by --all
    missing_pages: list[str] = field(default_factory=list)  # listed, but no page in the folder
    has_subscribe_form: bool = True
    searchable_papers: int = 0  # papers in the search index
    tags: int = 0  # tag pages
    # Listed issues published before the archive kept papers: no anchors, tags or search until
    # their files are published again.
    without_papers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def target(report: TargetReport | None) -> dict | None:
            return None if report is None else {"target": report.target, "written": report.written,
                                                 "unchanged": report.unchanged, "removed": report.removed}
        return {"issues": self.issues, "urls": self.urls, "folder": target(self.folder), "upload": target(self.upload),
                "listed": self.listed, "dropped": self.dropped, "missing_pages": self.missing_pages,
                "has_subscribe_form": self.has_subscribe_form, "searchable_papers": self.searchable_papers,
                "tags": self.tags, "without_papers": self.without_papers}


def _parse_all(paths: Sequence[Path]) -> list[Issue]:
    issues: dict[str, Issue] = {}
    for path in paths:
        issue = parse_issue(path)
        if issue.issue_id in issues:
            raise PublishError(f"{issues[issue.issue_id].path} and {path} are both the issue of {issue.issue_id}; "
                               "publish one of them")
        issues[issue.issue_id] = issue
    return list(issues.values())


def publish(
    issue_paths: Sequence[Path],
    config: Config,
    *,
    rebuild_all: bool = False,
    out: Path | None = None,
    to: str | None = None,
    force: bool = False,
    allow_draft: bool = False,
) -> PublishReport:
    """Publish the issues at `issue_paths`. With `rebuild_all`, the index becomes exactly these
    issues (the others are dropped from it; their pages stay where they were published). A draft
    (Korean parts unfinished) is refused unless `allow_draft`: the archive is public. So is a
    folder that holds the outbox, the database or the signing key (`refuse_private_folder`)."""
    if not issue_paths:
        raise PublishError("no issue file given")
    folder = FolderTarget(out or config.publish.out)
    refuse_private_folder(folder.folder, config)
    to = to or config.publish.to
    issues = _parse_all(issue_paths)
    if not allow_draft:
        for issue in issues:
            refuse_draft(issue)
    pagefind_binary()  # before anything is rendered or written: a missing Pagefind stops the run here
    pages = {issue.issue_id: issue_page(render_issue(issue, config)) for issue in issues}
    published_to = folder.name + (f" + {to}" if to else "")
    now = dt.datetime.now(dt.UTC)  # microseconds kept: `updated` in the feed must move on every change

    with Store.open(config.database) as store:
        known = {entry.issue_id: entry for entry in store.published_issues()}
        entries = [index_entry(issue, pages[issue.issue_id], name=config.name, now=now, published_to=published_to,
                               before=known.get(issue.issue_id)) for issue in issues]
        listed = {} if rebuild_all else dict(known)
        listed.update({entry.issue_id: entry for entry in entries})
        index = list(listed.values())
        search = search_files(index, config)
        tags = tag_pages(index, config)
        files = [*pages.values(), *search, *tags, index_page(index, config), atom_feed(index, config)]

        report = PublishReport(issues=[issue.issue_id for issue in issues],
                               folder=folder.publish(files, force=force, whole=(SEARCH_FOLDER, TAGS_FOLDER)),
                               urls=[web_url(issue, config) for issue in issues],
                               listed=len(index), has_subscribe_form=config.subscribe is not None,
                               searchable_papers=sum(1 for e in index for p in e.papers if p.slug),
                               tags=len(tags) - 1,
                               without_papers=sorted(e.issue_id for e in index if any(not p.slug for p in e.papers)))
        report.missing_pages = sorted(e.issue_id for e in index if not (folder.folder / e.page_name).is_file())
        if to:
            target = S3Target(to, config.publish, config.ses.region)
            try:
                report.upload = target.publish(folder.files(), force=force)
            finally:
                target.close()
        report.dropped = store.save_published(entries, only=rebuild_all)
    return report


def refuse_private_folder(out: Path, config: Config) -> None:
    """PublishError if the site's folder holds what must never be public: a dry run's outbox
    (every address, live unsubscribe links), the subscriber database, the signing key."""
    private = [("the outbox (sending.outbox)", config.outbox), ("the database (subscribers.database)", config.database),
               ("the signing key (unsubscribe.key_file)", config.unsubscribe_key_file)]
    site = out.resolve()
    for what, path in private:
        if path is not None and path.resolve().is_relative_to(site):
            raise PublishError(f"the site's folder {out} holds {what}, {path}: the site is public, so give it a "
                               "folder of its own (publish.out or --out, e.g. build/site)")


__all__ = ["PublishReport", "SiteFile", "publish"]
