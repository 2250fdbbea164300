"""Helpers for the draft tests (`new`, `translate`, arXiv): a config with [draft], [translate] and
[arxiv] set for a tmp folder, and the CLI run as an editor runs it."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from conftest import write_config
from newsletter.cli import main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SAMPLE_LIST = DATA / "2023-10-16-paper-links.csv"
FAKE_TRANSLATOR = ROOT / "tests" / "fake_translator.py"


def translator(*options: str) -> str:
    """The [translate] command line for tests/fake_translator.py with these options."""
    return shlex.join([sys.executable, str(FAKE_TRANSLATOR), *options])


def draft_config(folder: Path, *, command: str | None = None, timeout: float = 20, retries: int = 1,
                 arxiv_url: str | None = None, interval: float = 0, arxiv_retries: int = 1,
                 batch_size: int = 10, extra: str = "") -> Path:
    path = write_config(folder / "newsletter.toml")
    lines = ["", "[draft]", 'folder = "issues"', "", "[translate]"]
    if command:
        lines.append(f"command = {_toml_string(command)}")
    lines += [f"timeout = {timeout}", f"retries = {retries}", "retry_wait = 0", "", "[arxiv]"]
    if arxiv_url:
        lines.append(f"api_url = {_toml_string(arxiv_url)}")
    lines += [f"interval = {interval}", "timeout = 5", f"retries = {arxiv_retries}", f"batch_size = {batch_size}"]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n" + extra)
    return path


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *map(str, args)], catch_exceptions=False)


def newsletter_process(config: Path, *args: str) -> subprocess.Popen:
    """The real console entry point, in its own process (for kill -9)."""
    return subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), *map(str, args)],
                            cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
