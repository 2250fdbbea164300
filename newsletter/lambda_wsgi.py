"""Run a WSGI app behind an AWS Lambda function URL: the translation, nothing else.

A function URL hands the function an event in API Gateway's payload format 2.0 (`rawPath`,
`rawQueryString`, `headers`, `body`, `isBase64Encoded`, `requestContext.http.method`) and takes
back {"statusCode", "headers", "body", "isBase64Encoded"}. This module turns one into a WSGI
environ and the app's answer into the other, and keeps the app for the container's life. Which
app, and how it is built, is the caller's: `newsletter.web.lambda_handler` (so this module imports
nothing of the app's, and the app imports this one, one way).
"""

from __future__ import annotations

import base64
import io
import os
import sys
from collections.abc import Callable
from typing import Any

from .config import CONFIG_ENV

_apps: dict[str, Any] = {}  # config path -> app, kept for the container's life


def environ_from_event(event: dict) -> dict[str, Any]:
    http = event.get("requestContext", {}).get("http", {})
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    environ = {
        "REQUEST_METHOD": http.get("method", "GET"),
        "SCRIPT_NAME": "",
        "PATH_INFO": event.get("rawPath") or http.get("path") or "/",
        # As the client sent it (as waitress gives it), for the subscribe form's relative action.
        "REQUEST_URI": event.get("rawPath") or http.get("path") or "/",
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


def handle(event: dict, build: Callable[[str | None], Any]) -> dict:
    """One event through the app `build($NEWSLETTER_CONFIG)` made (once per container)."""
    config_path = os.environ.get(CONFIG_ENV)
    app = _apps.get(config_path or "")
    if app is None:
        app = _apps[config_path or ""] = build(config_path)
    return call(app, event)
