"""Every module imports on its own, first: the library is usable without the CLI, whose import
order would otherwise hide a circular import. And modules import one way: no circle, even one
hidden in a function or behind TYPE_CHECKING, where it still ties two modules into one."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

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


def _imported(path: Path, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that the module `name` (at `path`) imports, anywhere in it."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return (found & known) - {name}


def import_circles() -> list[set[str]]:
    """Groups of the package's modules that import each other, directly or through others (the
    strongly connected components of the import graph with more than one module)."""
    modules = {info.name: info.ispkg for info in pkgutil.walk_packages(newsletter.__path__, "newsletter.")}
    modules["newsletter"] = True
    root = Path(newsletter.__file__).parent

    def path_of(name: str, is_package: bool) -> Path:
        relative = Path(*name.split(".")[1:])
        return root / relative / "__init__.py" if is_package else (root / relative).with_suffix(".py")

    graph = {name: _imported(path_of(name, is_package), name, is_package, set(modules))
             for name, is_package in modules.items()}
    reaches = {name: set() for name in graph}
    for start in graph:  # a few hundred edges: a walk from each module is enough
        stack = list(graph[start])
        while stack:
            module = stack.pop()
            if module not in reaches[start]:
                reaches[start].add(module)
                stack.extend(graph[module])
    circles: list[set[str]] = []
    for name in sorted(graph):
        circle = {name} | {other for other in reaches[name] if name in reaches[other]}
        if name in reaches[name] and circle not in circles:
            circles.append(circle)
    return circles


def test_the_send_package_imports_one_way():
    """No module of the send imports one that imports it back: quota, sizing and processes are
    below plan, plan below copies and engine, those below run (engine and processes used to
    import each other, one of them behind TYPE_CHECKING)."""
    circles = import_circles()
    assert [circle for circle in circles if any(name.startswith("newsletter.send") for name in circle)] == []


def test_the_web_app_and_its_lambda_adapter_import_one_way():
    """web imports lambda_wsgi (the Lambda translation); lambda_wsgi knows nothing of the app."""
    assert [circle for circle in import_circles() if {"newsletter.web", "newsletter.lambda_wsgi"} <= circle] == []


def test_the_model_labels_and_draft_markers_import_one_way():
    """labels read the draft markers (draft.markers: the draft package, which parses issues, and
    the parser's Markdown reads labels), and model imported labels back inside a method. The
    marker texts now sit in a leaf module (placeholders) that both read."""
    circles = import_circles()
    rooms = {"newsletter.model", "newsletter.labels", "newsletter.draft.markers", "newsletter.placeholders"}
    assert [circle for circle in circles if circle & rooms] == []
