"""`newsletter build` and `newsletter preview`: render an issue to files, or serve it locally."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from .base import issue_path_argument, main, pass_state

templates_option = click.option(
    "--templates",
    "templates_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of email templates to use instead of the bundled ones (copy templates/email/).",
)


@main.command()
@issue_path_argument
@click.option(
    "-o", "--output", "output_dir", default="build", show_default=True,
    type=click.Path(file_okay=False, path_type=Path), help="Folder to write the files to.",
)
@templates_option
@pass_state
def build(state, issue_path: Path, output_dir: Path, templates_dir: Path | None) -> None:
    """Render ISSUE.md to <date>.html, .txt, .mjml and .web.html (the bilingual edition), and
    <date>.ko.html, .en.html, ... (the others), and print each edition's size."""
    from ..parse import parse_issue
    from ..render import GMAIL_CLIP_BYTES, measure, render_editions, write_outputs

    editions = render_editions(parse_issue(issue_path), state.config, templates_dir)
    for rendered in editions.values():
        for path in write_outputs(rendered, output_dir):
            click.echo(f"wrote {path}")
    for edition, rendered in editions.items():
        sizes = measure(rendered)
        click.echo(
            f"{edition}: HTML {sizes.html_bytes:,} bytes; {sizes.encoded_html_bytes:,} bytes base64-encoded for "
            f"sending (Gmail clips above {GMAIL_CLIP_BYTES:,}); text part {sizes.text_part_bytes:,} bytes"
        )
        if sizes.near_gmail_clip:
            where = ("over Gmail's clipping point" if sizes.clipped_by_gmail
                     else f"{GMAIL_CLIP_BYTES - sizes.encoded_html_bytes:,} bytes short of Gmail's clipping point")
            click.echo(
                f"warning: the {edition} edition's encoded HTML part is {sizes.encoded_html_bytes:,} bytes, {where} "
                f"({GMAIL_CLIP_BYTES:,}, approximate): Gmail readers may see '[Message clipped]'; "
                "shorten the issue or split it",
                err=True,
            )


@main.command()
@issue_path_argument
@templates_option
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@pass_state
def preview(state, issue_path: Path, templates_dir: Path | None, port: int) -> None:
    """Serve the rendered ISSUE.md on 127.0.0.1 and re-render it whenever it or a template changes."""
    from ..preview import PreviewSite, create_preview_server

    site = PreviewSite(issue_path, state.config, templates_dir)
    server = create_preview_server(site, "127.0.0.1", port)
    stop = threading.Event()
    watcher = threading.Thread(target=site.watch, args=(stop,), daemon=True)
    watcher.start()
    click.echo(f"serving {issue_path} at http://127.0.0.1:{server.effective_port}/ (Ctrl-C to stop)")
    if site.error:
        click.echo(f"error: {site.error}", err=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.close()
