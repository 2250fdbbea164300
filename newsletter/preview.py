"""`newsletter preview`: a local WSGI site showing the rendered issue, re-rendered on every change.

Editors keep the issue file and the templates open, save, and reload the page. A parse or template
error is shown on the page instead of the email, so a typo never stops the server.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass
from pathlib import Path

import watchfiles
from waitress.server import create_server

from .config import Config
from .errors import NewsletterError, ParseError
from .model import RenderedIssue
from .parse import parse_issue
from .render import bundled_templates_dir, measure, render_issue
from .web import listen


@dataclass(frozen=True)
class _Page:
    status: str
    content_type: str
    body: str


class PreviewSite:
    """The latest render of one issue, and the WSGI app serving it."""

    def __init__(self, issue_path: Path, config: Config, templates_dir: Path | None = None):
        self.issue_path = Path(issue_path)
        self.config = config
        self.templates_dir = Path(templates_dir) if templates_dir else bundled_templates_dir()
        self.renders = 0  # how many times the issue was rendered; tests wait on it
        self.rendered: RenderedIssue | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        try:
            rendered, error = render_issue(parse_issue(self.issue_path), self.config, self.templates_dir), None
        except NewsletterError as failure:
            errors = failure.errors if isinstance(failure, ParseError) else (failure,)
            rendered, error = None, "\n".join(str(each) for each in errors)
        with self._lock:
            self.rendered, self.error = rendered, error
            self.renders += 1

    def watch(self, stop: threading.Event) -> None:
        """Re-render whenever the issue file or a template changes, until `stop` is set."""
        for _changes in watchfiles.watch(self.issue_path, self.templates_dir, stop_event=stop):
            self.refresh()

    def page(self, path: str) -> _Page:
        with self._lock:
            rendered, error = self.rendered, self.error
        if path == "/":
            return _Page("200 OK", "text/html; charset=utf-8", self._index(rendered, error))
        if rendered is None:
            return _Page("500 Internal Server Error", "text/plain; charset=utf-8", f"error: {error}\n")
        views = {
            "/email": ("text/html; charset=utf-8", rendered.html),
            "/web": ("text/html; charset=utf-8", rendered.web_html),
            "/text": ("text/plain; charset=utf-8", rendered.text),
            "/mjml": ("text/plain; charset=utf-8", rendered.mjml),
        }
        if path not in views:
            return _Page("404 Not Found", "text/plain; charset=utf-8", "not found\n")
        content_type, body = views[path]
        return _Page("200 OK", content_type, body)

    def _index(self, rendered: RenderedIssue | None, error: str | None) -> str:
        if rendered is None:
            status = f'<pre style="color:#b91c1c;white-space:pre-wrap">error: {html.escape(error or "")}</pre>'
        else:
            sizes = measure(rendered)
            status = (
                f"<p>{html.escape(rendered.subject)}<br>HTML {sizes.html_bytes:,} bytes · "
                f"{sizes.encoded_html_bytes:,} bytes base64-encoded"
                f"{' · over Gmail’s clipping point' if sizes.clipped_by_gmail else ''}</p>"
            )
        links = " · ".join(f'<a href="/{name}">{name}</a>' for name in ("email", "web", "text", "mjml"))
        return (
            '<!doctype html><meta charset="utf-8"><title>newsletter preview</title>'
            f"<h1>{html.escape(str(self.issue_path))}</h1>{status}<p>{links}</p>"
            "<p>Save the issue or a template and reload.</p>"
        )

    def __call__(self, environ, start_response):
        page = self.page(environ.get("PATH_INFO") or "/")
        body = page.body.encode("utf-8")
        start_response(page.status, [("Content-Type", page.content_type), ("Content-Length", str(len(body)))])
        return [body]


def create_preview_server(site: PreviewSite, host: str = "127.0.0.1", port: int = 0):
    """A waitress server for `site` (port 0: any free port; read `.effective_port`)."""
    return listen(lambda: create_server(site, host=host, port=port, threads=2, asyncore_use_poll=True), host, port)
