"""Publish figures: a year of issues (52 copies of the sample, one a week) to a folder and to S3
on a local moto server, then the weekly case (one new issue) and a run that changes nothing.
Prints; asserts nothing.

usage: python bench/publish.py [--weeks N]

What it shows: how long `newsletter publish --all` takes for an archive, and that a weekly
publish renders one page and uploads three files (the page, the index, the feed) however large
the archive is, and a run with nothing new uploads none.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
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
            (folder / "newsletter.toml").write_text(
                config_text + '\n[publish]\nto = "s3://bench-archive/issues"\n'
                '\n[subscribe]\nurl = "https://newsletter.example.com/subscribe/"\n', encoding="utf-8")
            config = load_config(folder / "newsletter.toml")
            paths = issue_files(folder, weeks + 1)
            archive, new_week = paths[:weeks], paths[weeks:]

            def run(label: str, issue_paths: list[Path], **options) -> None:
                started = time.perf_counter()
                report = publish(issue_paths, config, **options)
                seconds = time.perf_counter() - started
                site_bytes = sum(p.stat().st_size for p in config.publish.out.iterdir())
                print(f"{label:<34} {seconds:7.2f} s  pages rendered {len(report.issues):>3}  "
                      f"uploaded {len(report.upload.written):>3}  unchanged {len(report.upload.unchanged):>3}  "
                      f"site {site_bytes / 1024:,.0f} KB")

            run(f"--all, {weeks} issues (first upload)", archive, rebuild_all=True)
            run("the same again (nothing changed)", archive, rebuild_all=True)
            run("one new issue (the weekly case)", new_week)
            run("that issue again (nothing changed)", new_week)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
