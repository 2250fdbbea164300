"""The `newsletter` click group: global options, and the one place that turns errors into exits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import NewsletterError, ParseError

if TYPE_CHECKING:
    from ..config import Config


class _Group(click.Group):
    """Turns every expected error into one line on stderr and a non-zero exit code, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as error:
            # Parse errors read like a compiler's (path:line: message, one line each) so editors
            # can jump to them.
            lines = [str(each) for each in error.errors] if isinstance(error, ParseError) else [f"error: {error}"]
            click.echo("\n".join(lines), err=True)
            sys.exit(error.exit_code)


class State:
    """What the group's options leave for the commands; the config is read only if one asks."""

    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from ..config import load_config  # only a command that needs it pays for it

            self._config = load_config(self.config_path)
        return self._config


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=str),
    envvar="NEWSLETTER_CONFIG",
    help="newsletter.toml to use (default: ./newsletter.toml or $NEWSLETTER_CONFIG).",
)
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Compose the weekly bilingual ML-papers digest from Markdown and send it by email."""
    ctx.obj = State(config_path)


pass_state = click.make_pass_decorator(State)

issue_path_argument = click.argument(
    "issue_path", metavar="ISSUE.md", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
