"""The archive's search index: Pagefind over one small HTML record per paper, as site files.

Why records and not the issue pages: a reader looks for a paper, so each search result must be one
paper (its title, its week, a link to its anchor on the week's page). Pagefind makes one result
per HTML document, so each paper is given to it as a document of its own (`search_record.html.j2`,
never published) that carries the link to its anchor, `<date>.web.html#<slug>`, as metadata. The
records come from the archive's index in the database, so publishing one week re-indexes every
week without reading their files.

Pagefind is deterministic: a paper that did not change keeps its fragment file, byte for byte, so
the targets upload only the fragments and index chunks a new week changes (plus the small entry
and meta files). The extended build segments text written without spaces; Korean is written with
spaces, and Pagefind has no Korean stemmer: docs/deploy.md says what a Korean query matches.

Pagefind's own binary (shipped in the `pagefind_bin_extended` wheel) runs once over a temporary
folder of records and writes the bundle to another; the files are read back, so the site's folder
only ever changes through a target. (Its Python API answers one request per 0.1 s poll: 52 s for
a year of papers, against about a second for one run of the binary.)
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..config import Config
from ..errors import PublishError
from ..model import PublishedIssue
from .pages import SEARCH_FOLDER, SiteFile, render_site_template, week_label

RECORD_TEMPLATE = "search_record.html.j2"
INSTALL_HINT = "install it with `pip install 'pagefind[extended]'` (the project's own install brings it)"
_ANCHOR = re.compile(r"[a-z0-9][a-z0-9-]*")  # what the parser makes of a title (parse._slug)
# Pagefind's ready-made interfaces (pagefind-ui.js, -modular-ui, -component-ui, -highlight): the
# archive has its own small one (_search.j2) over pagefind.js, so these are never loaded.
_UNUSED = re.compile(r"pagefind-(?:\w+-)?ui\.(?:js|css)|pagefind-highlight\.js")
TIMEOUT_SECONDS = 300


def pagefind_binary() -> Path:
    """The Pagefind binary to run; PublishError saying how to install it when there is none."""
    try:
        from pagefind.service import get_executable
    except ImportError:
        raise PublishError(f"cannot build the search index: the Python package `pagefind` is missing; {INSTALL_HINT}") from None
    binary = get_executable()
    if binary is None or not binary.exists():
        raise PublishError(f"cannot build the search index: no Pagefind binary found; {INSTALL_HINT}")
    return binary


def paper_records(entries: Iterable[PublishedIssue], config: Config) -> dict[str, str]:
    """Record path -> HTML for every paper that has an anchor. A paper's path (its week and
    anchor) and HTML depend on that paper alone, so its fragment's name does too."""
    records = {}
    for entry in entries:
        for paper in entry.papers:
            if _ANCHOR.fullmatch(paper.slug):
                records[f"{entry.issue_id}/{paper.slug}.html"] = render_site_template(
                    RECORD_TEMPLATE, {"config": config, "entry": entry, "paper": paper, "week": week_label(entry)})
    return records


def search_files(entries: Iterable[PublishedIssue], config: Config) -> list[SiteFile]:
    """The Pagefind bundle (its script, WebAssembly, index chunks and fragments) for `entries`,
    as files under pagefind/. PublishError when Pagefind is missing or fails."""
    binary = pagefind_binary()
    records = paper_records(entries, config)
    if not records:  # Pagefind refuses an empty site; the search box then says search could not load
        return []
    with tempfile.TemporaryDirectory(prefix="newsletter-search-") as folder:
        site, bundle = Path(folder) / "records", Path(folder) / SEARCH_FOLDER
        site.mkdir()
        for path, html in records.items():
            (site / path).parent.mkdir(exist_ok=True)
            (site / path).write_text(html, encoding="utf-8")
        try:
            subprocess.run([str(binary), "--site", str(site), "--output-path", str(bundle), "--silent"],
                           check=True, capture_output=True, timeout=TIMEOUT_SECONDS)
        except subprocess.CalledProcessError as error:
            said = (error.stderr or error.stdout or b"").decode("utf-8", "replace").strip().splitlines()
            raise PublishError(f"cannot build the search index: Pagefind exited with {error.returncode}"
                               + (f": {said[-1]}" if said else "")) from None
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PublishError(f"cannot build the search index: cannot run {binary}: {error}") from None
        return [
            SiteFile(f"{SEARCH_FOLDER}/{path.relative_to(bundle).as_posix()}", path.read_bytes())
            for path in sorted(bundle.rglob("*"))
            if path.is_file() and not _UNUSED.fullmatch(path.name)
        ]
