"""An issue as each edition of the email shows it (`newsletter.model.EDITIONS`): pure data, no I/O.

    bilingual  the issue as written: Korean, with each English original beside it (folded)
    ko         the Korean parts; a passage written only in English stays (there is nothing else to
               show), and each paper links its English original on the web page instead
    en         the English parts: titles, summaries, abstracts and the introduction's passages that
               have English; a notice, subject or preheader written in Korean is left out (the
               subject and preheader are then derived from the papers' English names)

`view` gives the same `Issue` with only that language in it, so the templates, the text part and
the completeness check (which looks for each paper's first words) show one language without
knowing the rule; `labels.say` words the email's own labels. Paper slugs never change: the web page and
the archive stay bilingual, and every edition links the same anchors.
"""

from __future__ import annotations

import dataclasses

from . import labels
from .config import Config
from .model import DEFAULT_EDITION, EDITIONS, Bilingual, Issue, Paper, Text


def in_language(text: str, edition: str) -> str:
    """A name given in both languages ("이번 주의 주요 ML 논문 · Top ML Papers of the Week") in the
    edition's one; as written when it has no part in that language."""
    main, sub = labels.split_languages(text)
    return text if sub is None else _one_of(main, sub, edition, whole=text)


def _one_of(main: str, sub: str, edition: str, *, whole: str) -> str:
    """Of a name's two parts, the one in the edition's language; `whole` in the bilingual
    edition, or when neither part is in that language."""
    if edition == DEFAULT_EDITION:
        return whole
    wanted = [part for part in (main, sub) if labels.has_hangul(part) == (edition == "ko")]
    return wanted[0] if wanted else whole


def config_for(config: Config, edition: str) -> Config:
    """The config as an edition's templates read it: the newsletter's name in its language."""
    name = in_language(config.name, edition)
    return config if name == config.name else dataclasses.replace(config, name=name)


def _passage(passage: Bilingual, edition: str) -> Bilingual | None:
    if edition == "ko":  # the Korean text, or an English-only passage as it is
        return dataclasses.replace(passage, en=None) if passage.ko else passage
    return dataclasses.replace(passage, ko=None) if passage.en else None


def _passages(passages: tuple[Bilingual, ...], edition: str) -> tuple[Bilingual, ...]:
    return tuple(kept for kept in (_passage(passage, edition) for passage in passages) if kept is not None)


def _paper(paper: Paper, edition: str) -> Paper:
    changes = {"summary": _passages(paper.summary, edition), "abstract": _passages(paper.abstract, edition)}
    if edition == "en" and paper.title_en:
        # The Korean title goes; without an English one it stays: a heading is needed.
        changes["title_ko"] = None
    # The ko edition keeps the English title: the papers' names ("Self-RAG") come from it, and the
    # templates show it only in the bilingual edition.
    return dataclasses.replace(paper, **changes)


def _english(text: Text | None) -> Text | None:
    return text if text is not None and not labels.has_hangul(text.markdown) else None


def _title(issue: Issue, edition: str) -> str:
    """The title with its heading in the edition's language, the forum's week kept in front."""
    prefix, _ = labels.split_title(issue.title)
    main, sub = labels.headline(issue)
    heading = _one_of(main, sub, edition, whole=f"{main} · {sub}") if sub else main
    return f"[{prefix}] {heading}" if prefix else heading


def view(issue: Issue, edition: str) -> Issue:
    """`issue` with only what `edition` shows (the module's table); the bilingual edition is the
    issue itself."""
    if edition not in EDITIONS:
        raise ValueError(f"unknown edition {edition!r}; expected one of {', '.join(EDITIONS)}")
    return issue if edition == DEFAULT_EDITION else _one_language(issue, edition)


def _one_language(issue: Issue, edition: str) -> Issue:
    changes = {
        "title": _title(issue, edition),
        "papers": tuple(_paper(paper, edition) for paper in issue.papers),
        "intro": _passages(issue.intro, edition),
    }
    if edition == "en":  # the editor's own words in Korean have no place in the English email
        changes |= {"notice": _english(issue.notice), "email_notice": _english(issue.email_notice),
                    "subject": issue.subject if issue.subject and not labels.has_hangul(issue.subject) else None,
                    "preheader": issue.preheader if issue.preheader and not labels.has_hangul(issue.preheader) else None}
    return dataclasses.replace(issue, **changes)


def english_originals(issue: Issue) -> frozenset[str]:
    """The slugs of the papers with English that the ko edition leaves out: each of those links
    it on the web page, at the paper's anchor."""
    return frozenset(paper.slug for paper in issue.papers
                     if (paper.title_en and paper.title_ko)
                     or any(passage.ko and passage.en for passage in paper.summary + paper.abstract))
