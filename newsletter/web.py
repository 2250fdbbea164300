"""The unsubscribe endpoint: a small WSGI app, served by waitress (`newsletter serve`).

    POST .../TOKEN  body List-Unsubscribe=One-Click  -> unsubscribes, 200  (RFC 8058 one-click)
    GET  .../TOKEN                                   -> a page with a confirm button; changes nothing
                                                        (mail scanners prefetch links)
    a forged or malformed token                      -> 400, the same bytes whatever the address
    .../subscribe/ and .../subscribe/confirm/TOKEN   -> the subscribe form (subscribe_web.py)
    .../preferences/TOKEN                            -> the reader's preferences page: their edition,
                                                        and unsubscribe (preferences_web.py)

With an event queue (the `[events]` table), each unsubscribe is also put on the SQS queue that
`newsletter sync` drains into the sender's list, and the answer is 200 only once SQS has accepted
it (503, try again, otherwise). Without a database (AWS Lambda, `lambda_handler`) the queue is the
only record.

The token is the last path segment, so the app works under any path prefix a proxy gives it;
it builds no absolute URLs (the confirm form posts to the page's own URL).
"""

from __future__ import annotations

import email.message
import email.parser
import errno
import email.policy
import email.utils
import html
import logging
import resource
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import waitress
import waitress.server

from . import lambda_wsgi, preferences_web, subscribe_web
from .config import Config, EventSettings, load_config
from .errors import ServeError
from .events import EventQueue, Unsubscribe
from .events.apply import record_own_event
from .preferences import Preferences
from .preferences_web import PreferencePages
from .subscribe import Subscriptions, subscriptions_for
from .subscribe_web import SubscribePages
from .unsubscribe import SigningKey, TokenSigner, load_signing_key

log = logging.getLogger("newsletter.web")

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
MAX_BODY_BYTES = 64 * 1024

# The server's own bounds, so that neither a large body nor a crowd of idle connections keeps it
# from answering. They are a floor, not a shield: waitress cannot tell a slow reader from a hostile
# one (a client sending a byte every few seconds stays), so the reverse proxy of docs/deploy.md,
# with its per-client limits, stays the way to face the internet.
MAX_HEADER_BYTES = 32 * 1024  # a browser sends 1-2 KB; waitress's default is 256 KB per connection
IDLE_SECONDS = 10  # a connection that sends nothing for this long is closed (waitress: 120)
IDLE_CHECK_SECONDS = 2  # how often idle connections are looked for (waitress: 30)
MAX_CONNECTIONS = 1000  # open at once (waitress: 100, which 100 idle sockets fill for two minutes)
SPARE_FILES = 100  # file descriptors kept for the database, the queue's HTTPS and logs

_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    # The URL holds the token: never send it on as a Referer, never index it.
    ("Referrer-Policy", "no-referrer"),
    ("X-Robots-Tag", "noindex"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]

_PAGE = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Apple SD Gothic Neo", "Malgun Gothic", "Noto Sans KR", sans-serif;
       max-width: 32rem; margin: 4rem auto; padding: 0 1rem; line-height: 1.6; color: #222; }}
button {{ font-size: 1rem; padding: .6rem 1.2rem; border-radius: .4rem; border: 1px solid #444;
         background: #222; color: #fff; cursor: pointer; }}
.en {{ color: #555; }}
</style></head>
<body>
<p><small>{newsletter}</small></p>
{body}
</body></html>
"""


def _page(newsletter: str, title: str, body: str) -> bytes:
    return _PAGE.format(newsletter=html.escape(newsletter), title=html.escape(title), body=body).encode()


def _form_fields(environ: dict[str, Any], body: bytes) -> dict[str, str]:
    """The posted fields, urlencoded or multipart/form-data (RFC 8058 allows both)."""
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type.lower().startswith("multipart/form-data"):
        return _multipart_fields(content_type, body)
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: value.strip() for name, value in pairs}


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The flat text fields of a multipart/form-data body. Whatever else a client sends (nested
    multiparts, attached messages, unknown charsets or encodings, no boundary) is skipped, not
    decoded: the one field that matters is plain ASCII, and a hostile body must get a 400, not
    an exception from the email package."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts = message.get_payload() if message.is_multipart() else []
    fields: dict[str, str] = {}
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, email.message.Message) or part.is_multipart():
            continue
        if part.get_content_maintype() != "text":
            continue
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if name is None or not isinstance(payload, bytes):
            continue
        fields[email.utils.collapse_rfc2231_value(name)] = payload.decode("utf-8", "replace").strip()
    return fields


def read_form(environ: dict[str, Any], max_bytes: int) -> dict[str, str] | None:
    """The posted fields, or None for a body without a length or longer than `max_bytes`."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 <= length <= max_bytes:
        return None
    return _form_fields(environ, environ["wsgi.input"].read(length))


class UnsubscribeApp:
    """The WSGI application. Opens the store per request (cheap), so any server thread can serve."""

    def __init__(
        self, database: str | Path | None, signer: TokenSigner, newsletter_name: str, *, queue: EventQueue | None = None,
        subscriptions: Subscriptions | None = None, preferences: Preferences | None = None,
    ):
        self.database = database  # None: no local list (Lambda); the queue is the record
        self.signer = signer
        self.newsletter = newsletter_name
        self.queue = queue
        # The subscribe form and its confirmation links (subscribe_web.py), when [subscribe] is set.
        self.subscribe_pages = SubscribePages(subscriptions, self._respond, read_form) if subscriptions else None
        # The preferences page (preferences_web.py); every email's footer links it.
        self.preference_pages = PreferencePages(preferences, self._respond, read_form) if preferences else None
        if queue is not None:
            queue.url  # noqa: B018 - find the queue now (and fail at start), not on the first request
        self.retry_page = _page(
            newsletter_name,
            "잠시 후 다시 시도해 주세요 · Please try again",
            "<h1>지금은 구독 취소를 기록하지 못했습니다. 잠시 후 다시 시도해 주세요.</h1>"
            '<p class="en">We could not record your unsubscribe just now. Please try again in a minute.</p>',
        )
        self.invalid_page = _page(
            newsletter_name,
            "잘못된 링크 · Invalid link",
            "<h1>이 구독 취소 링크는 올바르지 않습니다.</h1>"
            '<p class="en">This unsubscribe link is not valid. Please use the link from the email '
            "exactly as it was sent, or reply to the email and ask us to remove you.</p>",
        )
        self.done_page = _page(
            newsletter_name,
            "구독 취소됨 · Unsubscribed",
            "<h1>구독이 취소되었습니다.</h1><p>더 이상 이메일을 보내 드리지 않습니다.</p>"
            '<p class="en">You have been unsubscribed and will receive no more emails from us.</p>',
        )
        self.confirm_page = _page(
            newsletter_name,
            "구독 취소 · Unsubscribe",
            "<h1>구독을 취소하시겠습니까?</h1>"
            '<p class="en">Do you want to unsubscribe from this newsletter?</p>'
            '<form method="post">'
            f'<input type="hidden" name="{ONE_CLICK_FIELD}" value="{ONE_CLICK_VALUE}">'
            '<input type="hidden" name="via" value="page">'
            '<button type="submit">구독 취소 · Unsubscribe</button></form>',
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD", "POST"):
            return self._respond(start_response, "405 Method Not Allowed", self.invalid_page,
                                 [("Allow", "GET, HEAD, POST")], method)
        subscribe_route = subscribe_web.route(subscribe_web.request_path(environ)) if self.subscribe_pages else None
        if subscribe_route is not None:
            return self.subscribe_pages(environ, start_response, *subscribe_route)
        preferences_token = preferences_web.route(environ.get("PATH_INFO", "")) if self.preference_pages else None
        if preferences_token is not None:
            return self.preference_pages(environ, start_response, preferences_token)
        token = environ.get("PATH_INFO", "").rstrip("/").rpartition("/")[2]
        address = self.signer.address(token)
        if address is None:
            return self._respond(start_response, "400 Bad Request", self.invalid_page, [], method)
        if method != "POST":
            return self._respond(start_response, "200 OK", self.confirm_page, [], method)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            return self._respond(start_response, "400 Bad Request", self.invalid_page, [], method)
        fields = _form_fields(environ, environ["wsgi.input"].read(length))
        if fields.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
            return self._respond(start_response, "400 Bad Request", self.invalid_page, [], method)
        reason = "unsubscribe page" if fields.get("via") == "page" else "one-click (List-Unsubscribe-Post)"
        if not self._record(address, reason):
            return self._respond(start_response, "503 Service Unavailable", self.retry_page, [("Retry-After", "60")],
                                 method)
        return self._respond(start_response, "200 OK", self.done_page, [], method)

    def _record(self, address: str, reason: str) -> bool:
        """Queue the unsubscribe (if there is a queue) and apply it locally (if there is a list);
        True when it reached the place the sender's list is updated from. A genuine token for an
        address no longer on the list is recorded too: it stays out."""
        database = Path(self.database) if self.database is not None else None
        return record_own_event(Unsubscribe(address, reason), queue=self.queue, database=database,
                                settings=EventSettings())

    @staticmethod
    def _respond(start_response: Callable, status: str, page: bytes, extra: list, method: str) -> list[bytes]:
        start_response(status, [*_HEADERS, ("Content-Length", str(len(page))), *extra])
        return [] if method == "HEAD" else [page]


def create_server(
    app: UnsubscribeApp, host: str, port: int, trusted_proxy: str | None = None
) -> waitress.server.BaseWSGIServer:
    """A waitress server bound to host:port (port 0: a free one, see `.effective_port`).

    `trusted_proxy`: the reverse proxy's address; its X-Forwarded-For then gives each request's
    client address (REMOTE_ADDR), which the subscribe form's per-client limit counts by. From
    anyone else the header is dropped, so a client cannot pick its own address."""
    proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-for"}} if trusted_proxy else {}
    return listen(
        # poll, not select: a close() from another thread (serve_in_thread's owner) then ends the
        # loop instead of raising EBADF inside it, and no FD_SETSIZE cap on connections.
        lambda: waitress.create_server(app, host=host, port=port, ident="newsletter", clear_untrusted_proxy_headers=True,
                                       asyncore_use_poll=True, **proxy, **server_limits()),
        host, port,
    )


def server_limits() -> dict[str, int]:
    """waitress's settings for the bounds above."""
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    connections = MAX_CONNECTIONS if open_files == resource.RLIM_INFINITY else min(MAX_CONNECTIONS,
                                                                                  open_files - SPARE_FILES)
    return {
        # waitress answers 413 when a body reaches this size: on the Content-Length alone, before
        # it reads a byte of the body, and part-way through a chunked one. The app itself takes
        # up to MAX_BODY_BYTES (`>=` in waitress, hence the one).
        "max_request_body_size": MAX_BODY_BYTES + 1,
        "max_request_header_size": MAX_HEADER_BYTES,
        "channel_timeout": IDLE_SECONDS,
        "cleanup_interval": IDLE_CHECK_SECONDS,
        "connection_limit": max(connections, 10),
    }


def listen(create: Callable[[], Any], host: str, port: int) -> Any:
    """`create()` a server, or ServeError in one line if it cannot listen on host:port."""
    try:
        return create()
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ServeError(f"cannot listen on {host}:{port}: the port is in use; stop what uses it "
                             "or pick another port (--port)") from None
        raise ServeError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None


def serve_in_thread(app: UnsubscribeApp, host: str = "127.0.0.1", port: int = 0, trusted_proxy: str | None = None):
    """Start a server in a daemon thread; returns it (stop with `.close()`). For tests and tools."""
    server = create_server(app, host, port, trusted_proxy)
    thread = threading.Thread(target=server.run, name="newsletter-web", daemon=True)
    thread.start()
    return server


def app_for(config: Config, key: SigningKey, *, database: str | Path | None, queue: EventQueue | None) -> UnsubscribeApp:
    """The whole web app as the config sets it up (unsubscribe, preferences, and the subscribe
    form with [subscribe]): `newsletter serve` gives it the list, Lambda only the queue."""
    return UnsubscribeApp(database, TokenSigner(config.list_id, key), config.name, queue=queue,
                          subscriptions=subscriptions_for(config, key, database=database, queue=queue),
                          preferences=Preferences(config, key, database=database, queue=queue))


def build_lambda_app(config_path: str | None = None) -> UnsubscribeApp:
    """The app as it runs on Lambda: from the config ($NEWSLETTER_CONFIG, else ./newsletter.toml
    in the package), with no database: every unsubscribe, confirmation and edition change goes to
    the queue, and `newsletter sync` applies it to the sender's list."""
    config = load_config(config_path)
    return app_for(config, load_signing_key(config, allow_development=False), database=None,
                   queue=EventQueue.from_config(config))


def lambda_handler(event: dict, context: Any) -> dict:
    """AWS Lambda function URL entry point (`newsletter.web.lambda_handler`); see docs/deploy.md."""
    return lambda_wsgi.handle(event, build_lambda_app)
