"""GET a public URL the way a reader's browser would, for the checks that must see what readers
see (the list send's web-page gate, `newsletter doctor`): the status and the body, or why nothing
answered. A GET, not a HEAD: the body tells the current page from an older one, and some hosts
refuse HEAD or answer it differently from GET.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

TIMEOUT_SECONDS = 15.0
MAX_BODY_BYTES = 8 * 1024 * 1024  # an issue page is about 100 KB; a runaway answer stops here
USER_AGENT = "newsletter (checking a link before a send)"


@dataclass(frozen=True)
class Answer:
    url: str
    status: int | None  # None: nothing answered
    reason: str  # the status's reason ("Not Found"), or why nothing answered ("connection refused")
    body: bytes = b""

    def describe(self) -> str:
        """'answers 404 Not Found', 'does not answer (connection refused)'."""
        if self.status is None:
            return f"does not answer ({self.reason})"
        return f"answers {self.status} {self.reason}".rstrip()


def _why(error: BaseException) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "no answer in time"
    if isinstance(reason, socket.gaierror):
        return f"the name does not resolve: {reason.strerror or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def get(url: str, *, timeout: float = TIMEOUT_SECONDS) -> Answer:
    """One GET of `url` (redirects followed, as a browser does); never raises for the network."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Cache-Control": "no-cache"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(url, response.status, response.reason or "", response.read(MAX_BODY_BYTES))
    except urllib.error.HTTPError as error:
        with error:
            return Answer(url, error.code, error.reason or "", error.read(MAX_BODY_BYTES))
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        return Answer(url, None, _why(error))
