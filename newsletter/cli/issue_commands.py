"""`newsletter check`: parse an issue and show the editor what it holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .base import issue_path_argument, main

SECTION_LABELS = {"summary": "summary", "abstract": "abstract", "links": "paper", "read_more": "read-more"}


@main.command()
@issue_path_argument
@click.option("--json", "as_json", is_flag=True,
              help="Print the parsed issue as JSON, with the email's subject, the warnings and the draft parts.")
def check(issue_path: Path, as_json: bool) -> None:
    """Parse ISSUE.md and print a one-screen summary (or the parsed issue as JSON)."""
    from ..checks import draft_warnings, issue_warnings
    from ..labels import subject
    from ..parse import parse_issue

    issue = parse_issue(issue_path)
    warnings = issue_warnings(issue)
    unfinished = draft_warnings(issue)
    if as_json:
        data = issue.to_dict()
        data["email_subject"] = subject(issue)  # what the send puts in Subject (and versions by)
        data["warnings"] = [{"line": w.line, "message": w.message} for w in warnings]
        data["draft"] = [{"line": w.line, "message": w.message} for w in unfinished]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"{issue_path}: {issue.title}")
    intro = f"intro: {len(issue.intro)} passage(s)" if issue.intro else "no intro"
    notice = " · notice" if issue.notice else ""
    click.echo(f"date {issue.issue_id} · {len(issue.papers)} papers · {intro}{notice}")
    for number, paper in enumerate(issue.papers, start=1):
        click.echo(f"{number:2}. {paper.title}")
        sections = " ".join(SECTION_LABELS[name] for name in paper.sections) or "no sections"
        tags = f" · tags: {', '.join(paper.tags)}" if paper.tags else ""
        english = f"{paper.title_en} · " if paper.title_ko and paper.title_en else ""
        click.echo(f"    {english}[{sections}]{tags}")
    for warning in warnings:
        click.echo(f"warning: {issue_path}:{warning.line}: {warning.message}", err=True)
    for part in unfinished:
        click.echo(f"{issue_path}:{part.line}: {part.message}", err=True)
    draft = f"; a draft: {len(unfinished)} Korean part(s) to finish (send refuses it)" if unfinished else ""
    click.echo(f"ok: {len(issue.papers)} papers, {len(warnings)} warning(s){draft}")
