"""Title and abstract of arXiv papers, from the arXiv API's Atom answer.

One call asks for a batch of ids (`id_list=`); calls are at least `interval` seconds apart (arXiv
asks for 3), each with a timeout, and a 5xx answer or a timeout is tried again after the interval
(or the server's Retry-After). Every id ends up either in `found` or in `failures` with a reason,
so the caller can name each one that failed. The answer is read with ElementTree, never by regex.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from urllib.parse import urlencode

from .config import ArxivSettings

ATOM = "{http://www.w3.org/2005/Atom}"
USER_AGENT = "newsletter-draft/0.1 (weekly ML papers digest; polite batch lookups)"
RETRY_AFTER_CAP = 120.0  # seconds: longer than this, fail now and let the editor run again later


@dataclass(frozen=True)
class ArxivPaper:
    arxiv_id: str  # without the version
    title: str  # one line, as arXiv has it
    abstract: str  # one paragraph: arXiv wraps its abstracts at ~80 columns


@dataclass
class ArxivResult:
    found: dict[str, ArxivPaper] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # id -> why it has no metadata
    calls: int = 0


class _Pacer:
    """Keeps at least `interval` seconds between the end of one call and the start of the next
    (stricter than start to start, so the server too sees them that far apart)."""

    def __init__(self, interval: float):
        self.interval = interval
        self.last_end: float | None = None

    def wait(self, at_least: float = 0.0) -> None:
        if self.last_end is not None:
            delay = max(self.interval, at_least) - (time.monotonic() - self.last_end)
            if delay > 0:
                time.sleep(delay)

    def done(self) -> None:
        self.last_end = time.monotonic()


class _CallFailed(Exception):
    def __init__(self, message: str, *, retry: bool, retry_after: float = 0.0):
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


def fetch_arxiv(ids: list[str], settings: ArxivSettings) -> ArxivResult:
    """Metadata for each id (ids without versions), in batches of `settings.batch_size`."""
    result = ArxivResult()
    pacer = _Pacer(settings.interval)
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), settings.batch_size):
        batch = unique[start : start + settings.batch_size]
        try:
            body = _call_with_retries(batch, settings, pacer, result)
            entries = _read_feed(body)
        except _CallFailed as error:
            result.failures.update({arxiv_id: str(error) for arxiv_id in batch})
            continue
        for arxiv_id in batch:
            entry = entries.get(arxiv_id)
            if isinstance(entry, ArxivPaper):
                result.found[arxiv_id] = entry
            else:
                result.failures[arxiv_id] = entry or "arXiv has no paper with this id"
    return result


def _call_with_retries(batch: list[str], settings: ArxivSettings, pacer: _Pacer, result: ArxivResult) -> bytes:
    query = urlencode({"id_list": ",".join(batch), "start": 0, "max_results": len(batch)})
    url = f"{settings.api_url}?{query}"
    wait_first = 0.0
    for attempt in range(settings.retries + 1):
        pacer.wait(wait_first)
        result.calls += 1
        try:
            return _get(url, settings.timeout)
        except _CallFailed as error:
            if not error.retry or attempt == settings.retries:
                tries = f" (after {attempt + 1} tries)" if attempt else ""
                raise _CallFailed(f"{error}{tries}", retry=False) from None
            wait_first = error.retry_after
        finally:
            pacer.done()
    raise AssertionError("unreachable")


def _get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/atom+xml"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()
    except urllib.error.HTTPError as error:
        retry_after = _seconds(error.headers.get("Retry-After")) if error.headers else 0.0
        retryable = error.code == 429 or error.code >= 500
        if retry_after > RETRY_AFTER_CAP:
            retryable = False
        raise _CallFailed(f"the arXiv API answered HTTP {error.code} {error.reason}", retry=retryable,
                          retry_after=retry_after) from None
    except (TimeoutError, urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
            message = f"the arXiv API did not answer within {timeout:g} s"
        else:
            message = f"cannot reach the arXiv API ({reason})"
        raise _CallFailed(message, retry=True) from None


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0  # an HTTP date: the interval will do


def _read_feed(body: bytes) -> dict[str, ArxivPaper | str]:
    """id -> paper, or id -> arXiv's own error text for it."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise _CallFailed(f"the arXiv API's answer is not valid Atom XML ({error})", retry=False) from None
    if root.tag != f"{ATOM}feed":
        raise _CallFailed(f"the arXiv API's answer is not an Atom feed (its root is <{root.tag}>)", retry=False)
    entries: dict[str, ArxivPaper | str] = {}
    for entry in root.iter(f"{ATOM}entry"):
        entry_id = _text(entry, "id")
        title = _text(entry, "title")
        summary = _text(entry, "summary")
        if "/api/errors" in entry_id:
            # arXiv answers a bad id with an entry titled "Error" whose summary says why.
            bad_id = summary.rsplit(" ", 1)[-1] if summary else ""
            entries[bad_id] = f"arXiv says: {summary or title}"
            continue
        arxiv_id = _id_from_url(entry_id)
        if not arxiv_id:
            continue
        if not title:
            entries[arxiv_id] = "arXiv's entry for it has no title"
            continue
        entries[arxiv_id] = ArxivPaper(arxiv_id, title, summary)
    return entries


def _text(entry: ElementTree.Element, name: str) -> str:
    element = entry.find(f"{ATOM}{name}")
    return " ".join((element.text or "").split()) if element is not None else ""


def _id_from_url(url: str) -> str:
    """http://arxiv.org/abs/2310.10631v1 -> 2310.10631; hep-th/9901001v2 -> hep-th/9901001."""
    _, found, tail = url.partition("/abs/")
    if not found:
        return ""
    head, _, version = tail.rpartition("v")
    return head if head and version.isdigit() else tail
