"""Things an editor should look at before sending, that do not stop an issue from being parsed."""

from __future__ import annotations

from dataclasses import dataclass

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
        def warn(message: str) -> None:
            warnings.append(Warning(paper.line, f"{name}: {message}"))
        if not paper.links:
            warn("no paper link ('### 논문 링크')")
        if not paper.summary:
            warn("no summary ('### 논문 소개')")
        if not (paper.title_ko and paper.title_en):
            missing = "Korean" if not paper.title_ko else "English"
            warn(f"no {missing} title ('## 한국어 제목 / English Title')")
        for section, passages in (("summary", paper.summary), ("abstract", paper.abstract)):
            if any(_one_sided(passage) for passage in passages):
                warn(f"a {section} passage has no {'English original' if _lacks_english(passages) else 'Korean text'}")
        for link in paper.links + paper.read_more:
            if link.url in seen_urls and seen_urls[link.url] != name:
                warn(f"link {link.url} also appears under {seen_urls[link.url]}")
            seen_urls.setdefault(link.url, name)
    return warnings


def _one_sided(passage: Bilingual) -> bool:
    return not (passage.ko and passage.en)


def _lacks_english(passages: tuple[Bilingual, ...]) -> bool:
    return any(passage.ko and not passage.en for passage in passages)
