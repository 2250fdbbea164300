"""Things an editor should look at before sending, that do not stop an issue from being parsed."""

from __future__ import annotations

from dataclasses import dataclass

from .draft.markers import draft_parts
from .model import Bilingual, Issue


@dataclass(frozen=True)
class Warning:
    line: int
    message: str


def issue_warnings(issue: Issue) -> list[Warning]:
    warnings: list[Warning] = []
    if not issue.intro:
        warnings.append(Warning(0, "the issue has no introduction ('## 소개')"))
    seen_urls: dict[str, str] = {}
    for paper in issue.papers:
        name = paper.title_en or paper.title
        problems: list[str] = []
        if not paper.links:
            problems.append("no paper link ('### 논문 링크')")
        if not paper.summary:
            problems.append("no summary ('### 논문 소개')")
        if not (paper.title_ko and paper.title_en):
            missing = "Korean" if not paper.title_ko else "English"
            problems.append(f"no {missing} title ('## 한국어 제목 / English Title')")
        for section, passages in (("summary", paper.summary), ("abstract", paper.abstract)):
            if any(_one_sided(passage) for passage in passages):
                lacking = "English original" if _lacks_english(passages) else "Korean text"
                problems.append(f"a {section} passage has no {lacking}")
        for link in paper.links + paper.read_more:
            if link.url in seen_urls and seen_urls[link.url] != name:
                problems.append(f"link {link.url} also appears under {seen_urls[link.url]}")
            seen_urls.setdefault(link.url, name)
        warnings += [Warning(paper.line, f"{name}: {problem}") for problem in problems]
    return warnings


def _one_sided(passage: Bilingual) -> bool:
    return not (passage.ko and passage.en)


def _lacks_english(passages: tuple[Bilingual, ...]) -> bool:
    return any(passage.ko and not passage.en for passage in passages)


# --- drafts -------------------------------------------------------------------------------------


def draft_warnings(issue: Issue) -> list[Warning]:
    """One per Korean part not finished: still to be written, or a machine's text to review."""
    return [Warning(part.line, f"draft: {part.where}: {part.state}") for part in draft_parts(issue)]
