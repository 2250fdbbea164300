"""Run the unsubscribe WSGI app behind an AWS Lambda function URL.

A function URL hands the function an event in API Gateway's payload format 2.0 (`rawPath`,
`rawQueryString`, `headers`, `body`, `isBase64Encoded`, `requestContext.http.method`) and takes
back {"statusCode", "headers", "body", "isBase64Encoded"}. This module turns one into a WSGI
environ and the app's answer into the other. The app is built once per Lambda container from the
config ($NEWSLETTER_CONFIG, else ./newsletter.toml in the package), with no database: every
unsubscribe goes to the queue, and `newsletter sync` applies it to the sender's list.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from typing import Any

from .config import CONFIG_ENV, load_config
from .events import EventQueue
from .unsubscribe import TokenSigner, load_signing_key

_apps: dict[str, Any] = {}  # config path -> app, kept for the container's life


def build_app(config_path: str | None = None):
    from .web import UnsubscribeApp

    config = load_config(config_path)
    key = load_signing_key(config, allow_development=False)
    return UnsubscribeApp(None, TokenSigner(config.list_id, key), config.name, queue=EventQueue.from_config(config))


def environ_from_event(event: dict) -> dict[str, Any]:
    http = event.get("requestContext", {}).get("http", {})
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    environ = {
        "REQUEST_METHOD": http.get("method", "GET"),
        "SCRIPT_NAME": "",
        "PATH_INFO": event.get("rawPath") or http.get("path") or "/",
        "QUERY_STRING": event.get("rawQueryString") or "",
        "SERVER_NAME": headers.get("host", event.get("requestContext", {}).get("domainName", "lambda")),
        "SERVER_PORT": headers.get("x-forwarded-port", "443"),
        "SERVER_PROTOCOL": http.get("protocol", "HTTP/1.1"),
        "REMOTE_ADDR": http.get("sourceIp", ""),
        "CONTENT_TYPE": headers.pop("content-type", ""),
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": headers.get("x-forwarded-proto", "https"),
        "wsgi.input": io.BytesIO(data),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    headers.pop("content-length", None)
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def call(app, event: dict) -> dict:
    """One request through the WSGI `app`, as a function URL response."""
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
        answer["statusCode"] = int(status.split(" ", 1)[0])
        answer["headers"] = dict(headers)

    chunks = app(environ_from_event(event), start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return {**answer, "body": body.decode("utf-8"), "isBase64Encoded": False}


def handle(event: dict, context: Any) -> dict:
    config_path = os.environ.get(CONFIG_ENV)
    app = _apps.get(config_path or "")
    if app is None:
        app = _apps[config_path or ""] = build_app(config_path)
    return call(app, event)
