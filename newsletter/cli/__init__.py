"""Command line: a thin click layer over the library. Each module adds one group of commands."""

from . import issue_commands  # noqa: F401  (registers check)
from . import send_commands  # noqa: F401  (registers send)
from .base import main

__all__ = ["main"]
