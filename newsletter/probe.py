"""GET a public URL the way a reader's browser would, for the checks that must see what readers
see (the list send's web-page gate, `newsletter doctor`): the status and the body, or why nothing
answered. A GET, not a HEAD: the body tells the current page from an older one, and some hosts
refuse HEAD or answer it differently from GET.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.parse
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
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed: {reason.reason or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return str(reason) or type(reason).__name__


def _as_sent(url: str) -> str:
    """The URL as a browser sends it: a Korean host name in its xn-- form, the path's non-ASCII
    characters percent-encoded."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = parts.netloc.replace(host, host.encode("idna").decode("ascii"), 1) if not host.isascii() else parts.netloc
    quote = lambda text: urllib.parse.quote(text, safe="/%:@!$&'()*+,;=-._~?")  # noqa: E731
    return urllib.parse.urlunsplit((parts.scheme, netloc, quote(parts.path), quote(parts.query), ""))


def get(url: str, *, timeout: float = TIMEOUT_SECONDS) -> Answer:
    """One GET of `url` (redirects followed, as a browser does); never raises for the network."""
    try:
        request = urllib.request.Request(_as_sent(url), headers={"User-Agent": USER_AGENT, "Cache-Control": "no-cache"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BODY_BYTES)
            promised = response.headers.get("Content-Length")
            if promised and promised.isdigit() and len(body) < min(int(promised), MAX_BODY_BYTES):
                return Answer(url, None, f"the answer was cut off after {len(body)} of {promised} bytes")
            return Answer(url, response.status, response.reason or "", body)
    except urllib.error.HTTPError as error:
        with error:
            return Answer(url, error.code, error.reason or "", error.read(MAX_BODY_BYTES))
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        return Answer(url, None, _why(error))
