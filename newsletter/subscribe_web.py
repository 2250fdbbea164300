"""The subscribe form's and the confirmation link's pages, as part of the web app (`web.py`
hands these paths over):

    GET  .../subscribe/                 -> the form
    POST .../subscribe/                 -> one confirmation email; "check your inbox" for every
                                           well-formed address (400 and the form for a bad one,
                                           429 past the client's limit, 503 if mail cannot go out)
    GET  .../subscribe/confirm/TOKEN    -> a page with a button; changes nothing
    POST .../subscribe/confirm/TOKEN    -> confirms (the event goes to the queue / the list)

Like the unsubscribe endpoint, it routes on the last path segments only, so it works under any
prefix a proxy or a Lambda function URL gives it. It routes on the path as the client sent it
(percent-encoded), segment by segment, because the form's relative action is resolved by the
browser against those very segments: a path whose segments would not resolve one for one (a
dot-segment such as `/subscribe/confirm/./`, an encoded slash) is not routed here at all.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from .model import DEFAULT_EDITION
from .site.pages import AppPages
from .subscribe import CONFIRM_FIELD, MAX_FORM_BYTES, ConfirmOutcome, FormOutcome, Subscriptions, TokenState

SUBSCRIBE_SEGMENT = "subscribe"
CONFIRM_SEGMENT = "confirm"

_STATUS = {
    "form": "200 OK", "sent": "200 OK", "confirm": "200 OK", "confirmed": "200 OK",
    "invalid_address": "400 Bad Request", "invalid": "400 Bad Request", "expired": "400 Bad Request",
    "too_many": "429 Too Many Requests", "unavailable": "503 Service Unavailable",
}
_FORM_PAGES = {FormOutcome.ACCEPTED: "sent", FormOutcome.TOO_MANY: "too_many", FormOutcome.UNAVAILABLE: "unavailable"}
_CONFIRM_PAGES = {ConfirmOutcome.CONFIRMED: "confirmed", ConfirmOutcome.EXPIRED: "expired",
                  ConfirmOutcome.INVALID: "invalid", ConfirmOutcome.UNAVAILABLE: "unavailable"}


def request_path(environ: dict[str, Any]) -> str:
    """The request's path as the client sent it, still percent-encoded: waitress's REQUEST_URI
    (and the Lambda adapter's, from rawPath); else PATH_INFO, encoded again. PATH_INFO alone is
    decoded, so an encoded slash in it would pass for a separator the browser never saw."""
    uri = environ.get("REQUEST_URI")
    if not uri:
        return urllib.parse.quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/")
    if not uri.startswith("/"):  # the absolute form, GET http://host/path
        uri = urllib.parse.urlsplit(uri).path or "/"
    return uri.partition("?")[0].partition("#")[0]


def _resolves_segment_by_segment(parts: list[str]) -> bool:
    """Whether a relative reference resolves against these (still encoded) path segments one for
    one. A dot-segment ("." or "..", or their percent-encoded forms, which browsers treat alike)
    is resolved away, differently by RFC 3986 and by browsers; a browser takes a backslash for a
    slash. Neither comes from a browser, which removes them before it sends the request."""
    return not any(urllib.parse.unquote(part) in (".", "..") or "\\" in part for part in parts)


def form_action(path: str, kind: str) -> str:
    """Where the form on the page at `path` (as the client sent it, see `request_path`) posts: the
    subscribe URL, relative to that page, so the form goes back to the host and prefix it was
    served from (127.0.0.1 when tried locally, the public host behind a proxy), never to another
    origin. Only for a path `route` routes."""
    parts = [urllib.parse.unquote(part) for part in path.split("/")]
    subscribe_at = max(
        index for index, part in enumerate(parts)
        if part == SUBSCRIBE_SEGMENT and (not any(parts[index + 1:]) if kind == "form"
                                          else parts[index + 1:index + 2] == [CONFIRM_SEGMENT])
    )
    folder_depth = len(parts) - 1  # the folder a relative reference starts from
    if folder_depth == subscribe_at:  # ".../subscribe" without the slash: its parent folder
        return f"{SUBSCRIBE_SEGMENT}/"
    return "../" * (folder_depth - subscribe_at - 1) or "./"


def route(path: str) -> tuple[str, str | None] | None:
    """("form", None) or ("confirm", TOKEN) for the subscribe paths (as the client sent them, see
    `request_path`); None for any other path, and for one that does not resolve segment by segment."""
    parts = path.split("/")
    if not _resolves_segment_by_segment(parts):
        return None
    segments = [urllib.parse.unquote(part) for part in parts if part]
    if segments[-1:] == [SUBSCRIBE_SEGMENT]:
        return "form", None
    if len(segments) >= 3 and segments[-3:-1] == [SUBSCRIBE_SEGMENT, CONFIRM_SEGMENT]:
        return "confirm", segments[-1]
    return None


class SubscribePages(AppPages):
    template = "subscribe.html.j2"

    def __init__(self, subscriptions: Subscriptions, respond: Callable, read_form: Callable):
        super().__init__(subscriptions.config, respond, read_form, hours=subscriptions.config.subscribe.confirm_hours)
        self.subscriptions = subscriptions

    def page(self, page: str, **values: Any) -> bytes:
        return self.render(**{"page": "form" if page == "invalid_address" else page,
                              "address": "", "problem": "", "edition": DEFAULT_EDITION, **values})

    def __call__(self, environ: dict[str, Any], start_response: Callable, kind: str, token: str | None) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        action = form_action(request_path(environ), kind)
        if kind == "confirm":
            name = self._confirm(environ, method, token)
            edition = self.subscriptions.check(token).edition  # what the link subscribes to
            return self.respond(start_response, _STATUS[name], self.page(name, form_action=action, edition=edition),
                                [], method)
        if method != "POST":
            return self.respond(start_response, "200 OK", self.page("form", form_action=action), [], method)
        fields = self.read_form(environ, MAX_FORM_BYTES)
        if fields is None:
            return self.respond(start_response, "400 Bad Request", self.page("form", form_action=action), [], method)
        answer = self.subscriptions.request(fields, environ.get("REMOTE_ADDR", ""))
        name = _FORM_PAGES.get(answer.outcome, "invalid_address")
        extra = [("Retry-After", "3600" if name == "too_many" else "60")] if name in ("too_many", "unavailable") else []
        body = self.page(name, address=answer.address, problem=answer.problem, edition=answer.edition,
                         form_action=action)
        return self.respond(start_response, _STATUS[name], body, extra, method)

    def _confirm(self, environ: dict[str, Any], method: str, token: str) -> str:
        fields = self.read_form(environ, MAX_FORM_BYTES) if method == "POST" else None
        if fields is None or fields.get(CONFIRM_FIELD) != "yes":
            # A GET (a mail scanner, or the reader opening the link), or a POST without the
            # button's field: the page with the button, or why the link cannot work; no change.
            state = self.subscriptions.check(token).state
            return {TokenState.VALID: "confirm", TokenState.EXPIRED: "expired"}.get(state, "invalid")
        return _CONFIRM_PAGES[self.subscriptions.confirm(token)]
