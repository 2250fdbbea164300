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
from .model import DEFAULT_EDITION, RenderedIssue
from .parse import parse_issue
from .render import bundled_templates_dir, measure, render_editions
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
        self.editions: dict[str, RenderedIssue] | None = None  # every edition, as a send renders them
        self.error: str | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        try:
            rendered, error = render_editions(parse_issue(self.issue_path), self.config, self.templates_dir), None
        except NewsletterError as failure:
            errors = failure.errors if isinstance(failure, ParseError) else (failure,)
            rendered, error = None, "\n".join(str(each) for each in errors)
        with self._lock:
            self.editions, self.error = rendered, error
            self.renders += 1

    def watch(self, stop: threading.Event) -> None:
        """Re-render whenever the issue file or a template changes, until `stop` is set."""
        for _changes in watchfiles.watch(self.issue_path, self.templates_dir, stop_event=stop):
            self.refresh()

    def page(self, path: str) -> _Page:
        """/email, /text and /mjml (the bilingual edition; /email/ko, /text/en, ... the others)
        and /web."""
        with self._lock:
            editions, error = self.editions, self.error
        if path == "/":
            return _Page("200 OK", "text/html; charset=utf-8", self._index(editions, error))
        if editions is None:
            return _Page("500 Internal Server Error", "text/plain; charset=utf-8", f"error: {error}\n")
        views = {"/web": ("text/html; charset=utf-8", editions[DEFAULT_EDITION].web_html)}
        for edition, rendered in editions.items():
            suffix = "" if edition == DEFAULT_EDITION else f"/{edition}"
            views |= {
                f"/email{suffix}": ("text/html; charset=utf-8", rendered.html),
                f"/text{suffix}": ("text/plain; charset=utf-8", rendered.text),
                f"/mjml{suffix}": ("text/plain; charset=utf-8", rendered.mjml),
            }
        if path not in views:
            return _Page("404 Not Found", "text/plain; charset=utf-8", "not found\n")
        content_type, body = views[path]
        return _Page("200 OK", content_type, body)

    def _index(self, editions: dict[str, RenderedIssue] | None, error: str | None) -> str:
        if editions is None:
            status = f'<pre style="color:#b91c1c;white-space:pre-wrap">error: {html.escape(error or "")}</pre>'
        else:
            lines = []
            for edition, rendered in editions.items():
                sizes, suffix = measure(rendered), "" if edition == DEFAULT_EDITION else f"/{edition}"
                links = " · ".join(f'<a href="/{name}{suffix}">{name}</a>' for name in ("email", "text", "mjml"))
                lines.append(
                    f"<p><b>{edition}</b>: {html.escape(rendered.subject)}<br>{links} · HTML {sizes.html_bytes:,} "
                    f"bytes · {sizes.encoded_html_bytes:,} bytes base64-encoded"
                    f"{' · over Gmail’s clipping point' if sizes.clipped_by_gmail else ''}</p>")
            status = "".join(lines) + '<p><a href="/web">web</a> (the same for every edition)</p>'
        return (
            '<!doctype html><meta charset="utf-8"><title>newsletter preview</title>'
            f"<h1>{html.escape(str(self.issue_path))}</h1>{status}"
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
