"""The error types that `newsletter` raises on purpose.

Every error a user can cause (a malformed issue file, a bad config key, a failing send) is one of
these; the CLI prints `str(error)` as one line and exits non-zero. Anything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path


def unknown_name_hint(name: str, known: Iterable[str]) -> str:
    """The end of an "unknown key" message: the closest known name, or the list of them."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(known)}"


class NewsletterError(Exception):
    """Base of every expected failure; `str()` is the one line the CLI prints."""

    exit_code = 1


class ParseError(NewsletterError):
    """An issue file that cannot become an `Issue`: where it is wrong and what was expected."""

    def __init__(self, path: str | Path, line: int, message: str, *, errors: Sequence[ParseError] = ()):
        self.path = str(path)
        self.line = line
        self.message = " ".join(message.split())  # one line, whatever a library's text held
        # Every error found in the file, in line order (this one is the first); the CLI prints
        # one line for each.
        self.errors: tuple[ParseError, ...] = tuple(errors) or (self,)
        super().__init__(f"{self.path}:{line}: {self.message}")

    @classmethod
    def collect(cls, errors: Sequence[ParseError]) -> ParseError:
        """One ParseError for several: the first, carrying them all (each (line, message) once)."""
        unique = list({(error.line, error.message): error for error in errors}.values())
        first = unique[0]
        return cls(first.path, first.line, first.message, errors=unique)


class ConfigError(NewsletterError):
    """A missing or invalid setting, named by its key and the file it came from."""

    def __init__(self, message: str, *, key: str | None = None, path: str | Path | None = None):
        self.key = key
        self.path = str(path) if path is not None else None
        self.message = message
        where = ": ".join(part for part in (self.path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class TemplateError(NewsletterError):
    """The editor's email templates could not produce a valid email."""


class IncompleteEmailError(TemplateError):
    """The rendered email lost part of the issue (a paper, the footer with its unsubscribe link)."""


class StoreError(NewsletterError):
    """The subscriber database or an import into it could not be used as asked."""


class ServeError(NewsletterError):
    """A local server (`serve`, `preview`) could not start: its port is taken, the host is wrong."""


class SendError(NewsletterError):
    """A message could not be handed to the transport; `code` keeps the provider's error code."""

    def __init__(self, message: str, *, code: str | None = None):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}" if code else message)


class MessageError(NewsletterError):
    """A message could not be composed safely (a header value with CR/LF, an unusable address)."""


class QuotaError(SendError):
    """A send that would pass the account's daily quota; `allowance` is how many it could send."""

    def __init__(self, message: str, *, allowance: int):
        self.allowance = allowance
        super().__init__(message)


class AwsError(NewsletterError):
    """An AWS call of the feedback loop (SNS, SQS, SES setup) failed: what failed and what to do,
    in one line; `code` keeps AWS's error code (AccessDenied, QueueDoesNotExist, ...)."""

    def __init__(self, message: str, *, code: str | None = None):
        self.code = code
        self.message = message
        super().__init__(message)


class DraftError(NewsletterError):
    """A draft that cannot be made or filled as asked (a paper list, arXiv, the translate command),
    or a draft where a finished issue is needed (a send to the list)."""


class ListError(DraftError):
    """Entries of a paper list that cannot become papers: one `path:line: message` line each."""

    def __init__(self, path: str | Path, problems: list[tuple[int, str]]):
        self.path = str(path)
        self.problems = [(line, " ".join(message.split())) for line, message in problems]
        super().__init__("\n".join(f"{self.path}:{line}: {message}" for line, message in self.problems))


class PublishError(NewsletterError):
    """The archive could not be built or uploaded: what failed and what to do, in one line."""


class BackupError(NewsletterError):
    """The list could not be replicated to, restored from, or leased at its S3 backup: what
    failed and what to do, in one line."""


class LeaseHeldError(BackupError):
    """Another machine (or command) holds the lease to write the list: who, and since when."""
