"""Command line: a thin click layer over the library. Each module adds one group of commands.

A command module imports the library's modules inside the commands that use them, not at its top,
so that `newsletter --help` and each command load only what they need (bench/startup.py;
tests/test_cli_startup.py)."""

from . import issue_commands  # noqa: F401  (registers check)
from . import send_commands  # noqa: F401  (registers send)
from . import status_commands  # noqa: F401  (registers status)
from . import subscriber_commands  # noqa: F401  (registers subscribers, unsubscribe, serve)
from . import render_commands  # noqa: F401  (registers build, preview)
from . import events_commands  # noqa: F401  (registers setup aws, sync)
from . import draft_commands  # noqa: F401  (registers new, translate, review)
from . import publish_commands  # noqa: F401  (registers publish)
from . import doctor_commands  # noqa: F401  (registers doctor)
from . import backup_commands  # noqa: F401  (registers restore)
from .base import main

__all__ = ["main"]
