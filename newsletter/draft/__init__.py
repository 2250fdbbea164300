"""Drafts: a week's paper list -> `issues/DATE.md` in the issue format, every English part
filled and every Korean part marked as still to be written (`markers`).

    papers = read_paper_list("links.csv")          # or arXiv ids, looked up with `arxiv`
    path = new_issue(date, papers, config.draft)    # refuses to overwrite unless force=True
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ..arxiv import fetch_arxiv
from ..atomicfile import write_atomically
from ..config import ArxivSettings, DraftSettings
from ..errors import DraftError, ListError, ParseError
from ..parse import parse_issue_text
from .document import draft_markdown
from .markers import DraftPart, draft_parts, refuse_draft
from .paperlist import ListedArxivId, ListedPaper, read_paper_list

__all__ = [
    "DraftPart", "draft_parts", "refuse_draft", "read_paper_list", "papers_for", "draft_text", "new_issue",
]


def papers_for(
    listed: list[ListedPaper] | list[ListedArxivId], list_path: str | Path, settings: ArxivSettings
) -> list[ListedPaper]:
    """The list's papers; arXiv ids become papers with arXiv's title and abstract. An id arXiv has
    no answer for is a `ListError` on that id's line."""
    if not listed or isinstance(listed[0], ListedPaper):
        return list(listed)  # type: ignore[arg-type]
    ids: list[ListedArxivId] = listed  # type: ignore[assignment]
    result = fetch_arxiv([item.arxiv_id for item in ids], settings)
    problems = [(item.line, f"arXiv {item.arxiv_id}: {result.failures[item.arxiv_id]}") for item in ids
                if item.arxiv_id in result.failures]
    if problems:
        raise ListError(list_path, problems)
    return [
        ListedPaper(item.line, result.found[item.arxiv_id].title, "", result.found[item.arxiv_id].abstract, item.url)
        for item in ids
    ]


def draft_text(date: dt.date, papers: list[ListedPaper], settings: DraftSettings, list_path: str | Path = "<list>") -> str:
    """The draft, checked by the parser; an entry that breaks it is reported on the list's line."""
    text, origins = draft_markdown(date, papers, settings)
    try:
        parse_issue_text(text, "<draft>")
    except ParseError as error:
        problems = []
        for each in error.errors:
            starts = [line for line in origins if line <= each.line]
            if not starts:
                raise DraftError(f"the draft's front matter or notice does not parse: {each.message}; "
                                 "check [draft] in the config") from None
            problems.append((origins[max(starts)], each.message))
        raise ListError(list_path, problems) from None
    return text


def new_issue(path: str | Path, text: str, *, force: bool = False) -> Path:
    """Write the draft to `path` atomically; an existing file is kept unless `force`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(path, text.encode("utf-8"), replace=force)
    except FileExistsError:
        raise DraftError(f"{path} exists; pass --force to replace it (the editor's work in it would be lost)") from None
    return path
