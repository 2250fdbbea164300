"""The preferences page as part of the web app (`web.py` hands `.../preferences/TOKEN` over);
the logic is `preferences.py`.

    GET  -> 200, the reader's edition and the form; changes nothing
    POST edition=bilingual|ko|en    -> 200 "saved" (503: try again, when it reached neither the
                                       queue nor the list)
    POST unsubscribe=yes            -> 200 "unsubscribed" (or 503)
    POST anything else              -> 400 and the form again
    a forged, altered or expired token, whatever the method -> 400

Like the unsubscribe endpoint, it routes on the last path segments only, so it works under any
prefix a proxy or a Lambda function URL gives it, and its form posts back to the page's own URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .model import EDITIONS
from .preferences import EDITION_FIELD, MAX_FORM_BYTES, UNSUBSCRIBE_FIELD, Preferences
from .site.pages import AppPages
from .unsubscribe import TokenState

PREFERENCES_SEGMENT = "preferences"

_STATUS = {
    "form": "200 OK", "saved": "200 OK", "unsubscribed": "200 OK", "bad_request": "400 Bad Request",
    "expired": "400 Bad Request", "invalid": "400 Bad Request", "unavailable": "503 Service Unavailable",
}


def route(path: str) -> str | None:
    """The token of a `.../preferences/TOKEN` path; None for any other path."""
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) >= 2 and segments[-2] == PREFERENCES_SEGMENT:
        return segments[-1]
    return None


class PreferencePages(AppPages):
    template = "preferences.html.j2"

    def __init__(self, preferences: Preferences, respond: Callable, read_form: Callable):
        super().__init__(preferences.config, respond, read_form, link_days=preferences.link_days)
        self.preferences = preferences
        # A bad link's answer is the same bytes whoever it names.
        self.invalid = self.page("invalid")

    def page(self, page: str, **values: Any) -> bytes:
        return self.render(**{"page": page, "edition": EDITIONS[0], "status": None, **values})

    def __call__(self, environ: dict[str, Any], start_response: Callable, token: str) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        link = self.preferences.check(token)
        if link.state is not TokenState.VALID:
            body = self.page("expired") if link.state is TokenState.EXPIRED else self.invalid
            return self.respond(start_response, _STATUS["invalid"], body, [], method)
        if method != "POST":  # a GET (a mail scanner, or the reader): the page, no change
            return self._show(start_response, "form", link, method)
        fields = self.read_form(environ, MAX_FORM_BYTES) or {}
        edition, unsubscribe = fields.get(EDITION_FIELD), fields.get(UNSUBSCRIBE_FIELD)
        # The answers to a choice name no stored state, so they do not open the list again (one that
        # just failed to take the change would turn a queued change into a 500).
        if unsubscribe == "yes" and edition is None:
            if not self.preferences.unsubscribe(link):
                return self._unavailable(start_response, method)
            return self.respond(start_response, _STATUS["unsubscribed"], self.page("unsubscribed"), [], method)
        if edition in EDITIONS and unsubscribe is None:
            if not self.preferences.choose(link, edition):
                return self._unavailable(start_response, method)
            return self.respond(start_response, _STATUS["saved"], self.page("saved", edition=edition), [], method)
        # No choice, two at once, an edition the form does not offer, a body too long: nothing changes.
        return self._show(start_response, "bad_request", link, method)

    def _show(self, start_response: Callable, page: str, link, method: str) -> list[bytes]:
        """The form (or the form again, for a bad request) with the reader's edition and status."""
        reader = self.preferences.reader(link)
        body = self.page(page, edition=reader.edition, status=reader.status)
        return self.respond(start_response, _STATUS[page], body, [], method)

    def _unavailable(self, start_response: Callable, method: str) -> list[bytes]:
        return self.respond(start_response, _STATUS["unavailable"], self.page("unavailable"), [("Retry-After", "60")],
                            method)
