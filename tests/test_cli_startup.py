"""Commands start fast: each loads only the libraries it uses (bench/startup.py prints the times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "issues" / "2023-10-16.md"

# The CLI run in a fresh interpreter as `newsletter ARGS` would run it; then which of these modules
# it had loaded, as JSON on the last line of stdout.
_RUN_THEN_LIST_MODULES = """
import json, sys
from newsletter.cli import main
watched = json.loads(sys.argv[1])
try:
    main(sys.argv[2:], prog_name="newsletter")
except SystemExit as end:
    if end.code:
        raise
print(json.dumps(sorted(name for name in watched if name in sys.modules)))
"""

PROVIDER_AND_SERVER = ["boto3", "botocore", "waitress", "newsletter.events", "newsletter.aws", "newsletter.transports.ses"]
RENDERING = ["lxml", "premailer", "css_inline", "mjml", "jinja2", "markdown_it", "newsletter.render", "newsletter.site"]


def loaded_by(modules: list[str], *args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", _RUN_THEN_LIST_MODULES, json.dumps(modules), *args],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_loads_no_provider_renderer_or_server():
    assert loaded_by(PROVIDER_AND_SERVER + RENDERING, "--help") == []


def test_build_loads_the_renderer_but_no_provider_or_server(tmp_path):
    loaded = loaded_by(PROVIDER_AND_SERVER + RENDERING, "--config", str(ROOT / "newsletter.toml"), "build", str(ISSUE),
                       "-o", str(tmp_path))
    assert "newsletter.render" in loaded and "mjml" in loaded  # it did render
    assert not set(loaded) & set(PROVIDER_AND_SERVER)
