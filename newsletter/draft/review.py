"""`newsletter review`: the editor has read a paper's machine translations; drop their markers.

Only the marker text `(기계 번역 · machine translation) ` on each such part's line is removed;
every other byte stays. Same write discipline as `translate`: atomic, and never over a file that
changed since it was read.
"""

from __future__ import annotations

from pathlib import Path

from ..atomicfile import write_atomically
from ..errors import DraftError
from ..parse import parse_issue_bytes
from .markers import MACHINE, STATE_TO_REVIEW, draft_parts, replace_on_line


def mark_reviewed(path: str | Path, papers: set[int] | None = None) -> list[str]:
    """Drop the machine-translation marker from every part (or those of the papers numbered in
    `papers`, 1-based as `check` numbers them). Returns what was marked reviewed."""
    path = Path(path)
    data = path.read_bytes()
    issue = parse_issue_bytes(data, path)
    if papers and max(papers) > len(issue.papers):
        raise DraftError(f"{path} has {len(issue.papers)} papers; there is no paper {max(papers)}")
    chosen_lines = {paper.line for number, paper in enumerate(issue.papers, start=1) if not papers or number in papers}
    starts = [paper.line for paper in issue.papers]
    updated = data
    done = []
    for part in draft_parts(issue):
        if part.state != STATE_TO_REVIEW:
            continue
        owner = max((start for start in starts if start <= part.line), default=0)
        if owner not in chosen_lines:
            continue
        for old in (MACHINE + " ", MACHINE):
            replaced = replace_on_line(updated, part.line, old, "")
            if replaced is not None:
                updated = replaced
                done.append(f"line {part.line}: {part.where}")
                break
    if done and not write_atomically(path, updated, expect=data):
        raise DraftError(f"{path} changed on disk while it was being marked; run review again")
    return done
