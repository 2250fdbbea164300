"""Every module imports on its own, first: the library is usable without the CLI, whose import
order would otherwise hide a circular import."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import newsletter

MODULES = sorted(info.name for info in pkgutil.walk_packages(newsletter.__path__, "newsletter.")
                 if not info.name.endswith("__main__"))  # __main__ runs the CLI

# Each module imported first in a clean namespace: one child process for all of them.
_IMPORT_EACH_FIRST = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "newsletter" or m.startswith("newsletter.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
"""


def test_every_module_imports_first_on_its_own():
    assert "newsletter.parse" in MODULES and "newsletter.labels" in MODULES
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST, *MODULES], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
