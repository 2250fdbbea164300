"""Publish figures: a year of issues (52 copies of the sample, one a week) to a folder and to S3
on a local moto server, then the weekly case (one new issue) and a run that changes nothing; the
search index's size, and what a phone downloads to search it. Prints; asserts nothing.

usage: python bench/publish.py [--weeks N]

What it shows: how long `newsletter publish --all` takes for an archive; that a weekly publish
renders one page and uploads only what it changes (the page, the index, the feed, the tag pages
of its tags, its papers' search fragments and the index chunks and entry files that name them),
however large the archive is; that a run with nothing new uploads nothing; and, in Chromium when
it is installed, the bytes a reader's browser fetches for its first search (a phone's cost).
The 52 weeks are copies of one sample, so the index has fewer distinct words than a real year:
the chunk sizes are a lower bound; the fragments (one per paper) are real.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.server
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def issue_files(folder: Path, weeks: int) -> list[Path]:
    sample = (REPO / "issues" / "2023-10-16.md").read_text(encoding="utf-8")
    paths = []
    for week in range(weeks):
        date = dt.date(2023, 10, 16) + dt.timedelta(weeks=week)
        path = folder / f"{date}.md"
        path.write_text(sample.replace("date: 2023-10-16", f"date: {date}"), encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weeks", type=int, default=52)
    weeks = parser.parse_args().weeks
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        os.environ[name] = value

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from newsletter.config import load_config
    from newsletter.site import publish

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL_S3"] = f"http://{host}:{port}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bench-archive")
    try:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            config_text = (REPO / "newsletter.toml").read_text(encoding="utf-8")
            # The repo's own config, uploading to the local bucket (its [publish] table has `to`
            # commented out, and a [subscribe] url for the index's form).
            config_text = config_text.replace("[publish]\n", '[publish]\nto = "s3://bench-archive/issues"\n', 1)
            (folder / "newsletter.toml").write_text(config_text, encoding="utf-8")
            config = load_config(folder / "newsletter.toml")
            paths = issue_files(folder, weeks + 1)
            archive, new_week = paths[:weeks], paths[weeks:]

            site = config.publish.out

            def run(label: str, issue_paths: list[Path], **options) -> None:
                started = time.perf_counter()
                report = publish(issue_paths, config, **options)
                seconds = time.perf_counter() - started
                site_bytes = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
                uploaded = sum((site / path).stat().st_size for path in report.upload.written)
                print(f"{label:<34} {seconds:7.2f} s  pages rendered {len(report.issues):>3}  "
                      f"uploaded {len(report.upload.written):>4} ({uploaded / 1024:,.0f} KB)  "
                      f"unchanged {len(report.upload.unchanged):>4}  site {site_bytes / 1024:,.0f} KB")
                if report.upload.written and len(report.issues) == 1:
                    kinds = Counter(_kind(path) for path in report.upload.written)
                    print(f"{'':<34} uploaded: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))

            print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
                  f"({os.cpu_count()} CPUs)")
            run(f"--all, {weeks} issues (first upload)", archive, rebuild_all=True)
            run("the same again (nothing changed)", archive, rebuild_all=True)
            run("one new issue (the weekly case)", new_week)
            run("that issue again (nothing changed)", new_week)
            search_index(site)
            phone_search(site)
    finally:
        server.stop()


def _kind(path: str) -> str:
    if path.startswith("pagefind/fragment/"):
        return "search fragments"
    if path.startswith("pagefind/"):
        return "search index/entry"
    if path.startswith("tags/"):
        return "tag pages"
    return "pages/index/feed"


def search_index(site: Path) -> None:
    files = [p for p in (site / "pagefind").rglob("*") if p.is_file()]
    by = Counter()
    for path in files:
        by[_search_part(path)] += path.stat().st_size
    count = Counter(_search_part(path) for path in files)
    print(f"search index: {sum(by.values()) / 1024:,.0f} KB in {len(files)} files: "
          + ", ".join(f"{part} {by[part] / 1024:,.1f} KB ({count[part]})" for part in sorted(by)))


def _search_part(path: Path) -> str:
    if path.parent.name in ("fragment", "index"):
        return path.parent.name
    return "meta" if path.suffix == ".pf_meta" else "script/wasm/entry"


def phone_search(site: Path) -> None:
    """What a browser fetches from opening the archive to its first results (Chromium, if here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("phone search: playwright is not installed; skipped")
        return
    if not Path("/usr/bin/chromium").exists():
        print("phone search: /usr/bin/chromium not found; skipped")
        return

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fetched: dict[str, int] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 375, "height": 667})
            page.on("response", lambda response: fetched.__setitem__(response.url, len(response.body())))
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
            page.wait_for_load_state("networkidle")
            opened = sum(fetched.values())
            fetched.clear()
            started = time.perf_counter()
            page.fill("#search-input", "검색 증강")
            page.wait_for_selector("li.result")
            seconds = time.perf_counter() - started
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    search = {url: size for url, size in fetched.items() if "/pagefind/" in url}
    for name in ("index.html", "feed.xml", "tags/rag.html"):
        print(f"{name}: {(site / name).stat().st_size / 1024:,.0f} KB")
    print(f"phone search: the archive page {opened / 1024:,.0f} KB; its first search fetched "
          f"{sum(search.values()) / 1024:,.0f} KB in {len(search)} files "
          f"(script, WebAssembly, entry, meta, index chunks, the fragments of the results shown), "
          f"results in {seconds:.2f} s on this machine")


if __name__ == "__main__":
    main()
