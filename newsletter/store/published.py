"""The archive's index: one row per published issue. Functions of a connection, like the other
table modules; `Store` is how the rest calls them."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable

from ..model import PublishedIssue, PublishedPaper

_COLUMNS = "issue_id, title, summary, papers, page_sha256, first_published_at, updated_at, published_to"


def _entry(row: tuple) -> PublishedIssue:
    issue_id, title, summary, papers, digest, first, updated, published_to = row
    return PublishedIssue(issue_id, title, summary, tuple(_paper(paper) for paper in json.loads(papers)), digest,
                          dt.datetime.fromisoformat(first), dt.datetime.fromisoformat(updated), published_to)


def _paper(data: dict) -> PublishedPaper:
    return PublishedPaper(data["slug"], data["title_ko"], data["title_en"], tuple(data["tags"]), data["text"])


def _papers_json(entry: PublishedIssue) -> str:
    return json.dumps([{"slug": p.slug, "title_ko": p.title_ko, "title_en": p.title_en, "tags": list(p.tags),
                        "text": p.text} for p in entry.papers], ensure_ascii=False)


def all_entries(connection: sqlite3.Connection) -> list[PublishedIssue]:
    """Every published issue, newest first."""
    rows = connection.execute(f"SELECT {_COLUMNS} FROM published_issue ORDER BY issue_id DESC")
    return [_entry(row) for row in rows]


def get(connection: sqlite3.Connection, issue_id: str) -> PublishedIssue | None:
    row = connection.execute(f"SELECT {_COLUMNS} FROM published_issue WHERE issue_id = ?", (issue_id,)).fetchone()
    return _entry(row) if row else None


def save(connection: sqlite3.Connection, entries: Iterable[PublishedIssue]) -> None:
    connection.executemany(
        f"INSERT OR REPLACE INTO published_issue ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.issue_id, e.title, e.summary, _papers_json(e), e.page_sha256,
             e.first_published_at.astimezone(dt.UTC).isoformat(), e.updated_at.astimezone(dt.UTC).isoformat(),
             e.published_to)
            for e in entries
        ],
    )


def delete_except(connection: sqlite3.Connection, issue_ids: Iterable[str]) -> list[str]:
    """Drop every issue not in `issue_ids` from the index; returns the dropped ids."""
    kept = set(issue_ids)
    dropped = [row[0] for row in connection.execute("SELECT issue_id FROM published_issue") if row[0] not in kept]
    connection.executemany("DELETE FROM published_issue WHERE issue_id = ?", [(issue_id,) for issue_id in dropped])
    return sorted(dropped)
