"""`newsletter publish`: the archive in a folder and on S3 (moto's server over HTTP), the Atom feed
read back by feedparser, the index's links, and the check a list send makes before it starts."""

from __future__ import annotations

import datetime as dt
import html.parser
import json
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import pytest

from conftest import write_config
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.model import PublishedIssue
from newsletter.parse import parse_issue
from newsletter.render import render_issue
from newsletter.site.pages import atom_feed
from sending_fixtures import cli

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "issues" / "2023-10-16.md"
WEB_BASE = "https://newsletter.example.com/issues/"
SUBSCRIBE_URL = "https://newsletter.example.com/subscribe/"


def site_config(tmp_path: Path, publish: str = "", *, check_before_send: bool = False) -> Path:
    """The test config with a [publish] table of `publish` lines and a subscribe form."""
    path = write_config(tmp_path / "newsletter.toml")
    text = path.read_text(encoding="utf-8").replace(
        "check_before_send = false", f"check_before_send = {str(check_before_send).lower()}\n{publish}"
    )
    path.write_text(text + f'\n[subscribe]\nurl = "{SUBSCRIBE_URL}"\n', encoding="utf-8")
    return path


def issue_copy(folder: Path, date: str, *, title: str | None = None, edit: str | None = None) -> Path:
    """The sample issue as the issue of `date` (a new week), optionally with another title or an
    extra sentence in its intro."""
    text = SAMPLE.read_text(encoding="utf-8").replace("date: 2023-10-16", f"date: {date}")
    if title is not None:
        text = re.sub(r'^title: .*$', f"title: {title}", text, count=1, flags=re.M)
    if edit is not None:
        text = text.replace("## 소개\n\n", f"## 소개\n\n{edit}\n\n", 1)
    path = folder / f"{date}.md"
    path.write_text(text, encoding="utf-8")
    return path


def publish(config_path: Path, *args: str):
    result = cli(config_path, "publish", *map(str, args))
    assert result.exit_code == 0, result.output
    return result


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.actions: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("a", "link") and attributes.get("href"):
            self.hrefs.append(attributes["href"])
        if tag == "form":
            self.actions.append(attributes.get("action"))


def links_of(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_the_emails_view_on_the_web_url_is_the_published_pages_url(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE)
    config = load_config(config_path)
    rendered = render_issue(parse_issue(SAMPLE), config)
    archive_links = set(re.findall(r'href="(%s[^"]*)"' % re.escape(WEB_BASE), rendered.html))
    assert WEB_BASE + "2023-10-16.web.html" in archive_links  # "View on the web"
    site = config.publish.out
    assert (site / "2023-10-16.web.html").read_text(encoding="utf-8") == rendered.web_html
    # Every archive link in the email (the page, the archive, its subscribe form) finds its target.
    for url in archive_links:
        path, _, fragment = url.removeprefix(WEB_BASE).partition("#")
        published = site / (path or "index.html")
        assert published.is_file(), url
        assert not fragment or f'id="{fragment}"' in published.read_text(encoding="utf-8"), url


def test_the_index_links_only_to_files_that_exist_and_carries_the_subscribe_form(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE, issue_copy(tmp_path, "2023-10-23"))
    site = load_config(config_path).publish.out
    links = links_of(site / "index.html")
    local = [href for href in links.hrefs if not re.match(r"[a-z]+:", href)]
    assert sorted(local) == ["2023-10-16.web.html", "2023-10-23.web.html", "feed.xml", "feed.xml"]
    for href in local:
        assert (site / href).is_file(), href
    assert links.actions == [SUBSCRIBE_URL]
    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.index("2023-10-23.web.html") < index.index("2023-10-16.web.html")  # newest first
    assert "지난 호" in index and "Archive" in index and 'name="website"' in index  # bilingual; honeypot
    assert 'id="subscribe"' in index  # what web_base_url + "#subscribe" (the pages' subscribe link) finds


def test_the_index_and_feed_name_each_issue_by_its_week_not_the_forum_title(tmp_path):
    # The sample's title only repeats the newsletter's name behind the forum's "[2023/10/16 ~ 10/22]"
    # prefix; the index and the feed already say the name, so each entry says its week.
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE)
    site = load_config(config_path).publish.out
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "[2023/10/16" not in index and ">2023/10/16 ~ 10/22</a>" in index
    feed = feedparser.parse((site / "feed.xml").read_bytes())
    assert feed.entries[0].title == "2023/10/16 ~ 10/22"


def test_the_feed_is_atom_1_0_with_one_entry_per_issue_and_its_summary(tmp_path):
    config_path = site_config(tmp_path)
    newer = issue_copy(tmp_path, "2023-10-23", title='"Week 2: <b>bold</b> & more"')
    publish(config_path, SAMPLE)
    publish(config_path, newer)
    feed = feedparser.parse((load_config(config_path).publish.out / "feed.xml").read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "이번 주의 주요 ML 논문 · Top ML Papers of the Week"
    assert [entry.link for entry in feed.entries] == [WEB_BASE + "2023-10-23.web.html", WEB_BASE + "2023-10-16.web.html"]
    assert [entry.id for entry in feed.entries] == [entry.link for entry in feed.entries]
    assert feed.entries[0].title == "Week 2: <b>bold</b> & more"  # text, escaped by the XML writer
    assert feed.entries[1].summary == parse_issue(SAMPLE).preheader
    assert all(entry.updated_parsed and entry.published_parsed for entry in feed.entries)
    self_link = [link.href for link in feed.feed.links if link.rel == "self"]
    assert self_link == [WEB_BASE + "feed.xml"]


def test_control_characters_do_not_break_the_feed(tmp_path):
    """XML 1.0 cannot hold most control characters; ElementTree writes them anyway, and a feed
    reader then refuses the whole feed. (The parser refuses them in issue files; the feed does not
    rely on that.)"""
    now = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    entry = PublishedIssue("2023-10-16", "Title\x0b\x01 end", "a\x00b\x1f", ("p",), "0" * 64, now, now, "x")
    feed = feedparser.parse(atom_feed([entry], load_config(site_config(tmp_path))).body)
    assert not feed.bozo, feed.get("bozo_exception")
    assert (feed.entries[0].title, feed.entries[0].summary) == ("Title end", "ab")


def test_a_second_run_writes_nothing_and_an_edit_rewrites_only_what_it_changes(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE)
    site = load_config(config_path).publish.out
    before = {path.name: path.read_bytes() for path in site.iterdir()}
    assert "folder: " in publish(config_path, SAMPLE).output
    assert {path.name: path.read_bytes() for path in site.iterdir()} == before
    assert "0 written, 3 unchanged" in publish(config_path, SAMPLE).output

    edited = issue_copy(tmp_path, "2023-10-16", edit="정정: 오타를 고쳤습니다.")
    output = publish(config_path, edited).output
    assert "2 written, 1 unchanged" in output  # the page and the feed's updated time; the index is the same
    assert "정정: 오타를 고쳤습니다." in (site / "2023-10-16.web.html").read_text(encoding="utf-8")
    assert (site / "index.html").read_bytes() == before["index.html"]


def test_all_rebuilds_the_index_from_exactly_the_files_given(tmp_path):
    config_path = site_config(tmp_path)
    older, newer = issue_copy(tmp_path, "2023-10-09"), issue_copy(tmp_path, "2023-10-23")
    publish(config_path, older, SAMPLE)
    result = publish(config_path, "--all", SAMPLE, newer)
    assert "taken off the index (--all without their files): 2023-10-09" in result.output
    site = load_config(config_path).publish.out
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "2023-10-09.web.html" not in index and "2023-10-23.web.html" in index
    assert (site / "2023-10-09.web.html").is_file()  # old emails still link to it


def test_user_text_is_escaped_in_the_index(tmp_path):
    config_path = site_config(tmp_path)
    hostile = issue_copy(tmp_path, "2023-10-23", title='"<script>alert(1)</script><img src=x onerror=alert(2)>"')
    publish(config_path, hostile)
    index = (load_config(config_path).publish.out / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in index and "<img src=x" not in index
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index


def test_publish_refusals_are_one_line(tmp_path):
    config_path = site_config(tmp_path)
    twin = tmp_path / "twin.md"
    shutil.copy(SAMPLE, twin)
    result = cli(config_path, "publish", str(SAMPLE), str(twin))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "both the issue of 2023-10-16" in result.output
    assert not load_config(config_path).publish.out.exists()  # nothing written

    result = cli(config_path, "publish", "--to", "s3:/bucket", str(SAMPLE))
    assert result.exit_code == 1 and "not an s3://BUCKET/PREFIX URL" in result.output

    (tmp_path / "bad").mkdir()
    bad = site_config(tmp_path / "bad", 'to = "https://example.com/"')
    with pytest.raises(ConfigError, match="publish.to: must start with s3://"):
        load_config(bad)


def test_publish_refuses_a_folder_that_holds_the_outbox_the_database_or_the_key(tmp_path):
    # `build` is where `newsletter build` writes and where the outbox lives by default: a site
    # there would put every address and live unsubscribe links online.
    (tmp_path / "secret.key").write_text("k" * 40, encoding="utf-8")
    config_path = site_config(tmp_path, 'out = "build"')
    text = config_path.read_text(encoding="utf-8").replace('outbox = "outbox"', 'outbox = "build/outbox"')
    config_path.write_text(text.replace("[transport]", 'key_file = "secret.key"\n\n[transport]', 1), encoding="utf-8")
    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0
    assert cli(config_path, "send", "--dry-run", str(SAMPLE)).exit_code == 0
    assert (tmp_path / "build" / "outbox" / "manifest.csv").is_file()

    refusals = {
        "": f"error: the site's folder {tmp_path / 'build'} holds the outbox (sending.outbox), "
            f"{tmp_path / 'build' / 'outbox'}: the site is public, so give it a folder of its own "
            "(publish.out or --out, e.g. build/site)\n",
        str(tmp_path): "holds the outbox",
        str(tmp_path / "build" / "outbox"): "holds the outbox",
        str(tmp_path / "build" / ".." / "build"): "holds the outbox",
    }
    for out, expected in refusals.items():
        result = cli(config_path, "publish", *(["--out", out] if out else []), str(SAMPLE))
        assert result.exit_code == 1, out
        assert result.output.count("\n") == 1 and expected in result.output, result.output
    shutil.rmtree(tmp_path / "build" / "outbox")
    config_path.write_text(text.replace('outbox = "build/outbox"', f'outbox = "{tmp_path.parent / (tmp_path.name + "-outbox")}"'), encoding="utf-8")
    assert "holds the database (subscribers.database)" in cli(config_path, "publish", "--out", str(tmp_path), str(SAMPLE)).output
    (tmp_path / "keys").mkdir()
    (tmp_path / "secret.key").rename(tmp_path / "keys" / "secret.key")
    config_path.write_text(config_path.read_text(encoding="utf-8").replace("[transport]", 'key_file = "keys/secret.key"\n\n[transport]', 1),
                           encoding="utf-8")
    result = cli(config_path, "publish", "--out", str(tmp_path / "keys"), str(SAMPLE))
    assert result.exit_code == 1 and "holds the signing key (unsubscribe.key_file)" in result.output
    assert sorted(path.name for path in (tmp_path / "build").iterdir()) == []  # nothing written anywhere
    assert not (tmp_path / "index.html").exists() and not (tmp_path / "keys" / "index.html").exists()
    publish(config_path, SAMPLE)  # build/ on its own is fine once the outbox lives elsewhere


# --- S3 on moto's server ------------------------------------------------------------------------


@pytest.fixture
def s3(_moto_server_url, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", _moto_server_url)
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=_moto_server_url)
    bucket = f"archive-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def objects(client, bucket: str) -> dict[str, dict]:
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: client.head_object(Bucket=bucket, Key=key) for key in keys}


def test_publish_to_s3_uploads_with_content_type_charset_and_cache_headers(tmp_path, s3):
    client, bucket = s3
    config_path = site_config(tmp_path, "page_cache_seconds = 604800\nlisting_cache_seconds = 60")
    publish(config_path, SAMPLE, "--to", f"s3://{bucket}/issues")
    found = objects(client, bucket)
    assert set(found) == {"issues/2023-10-16.web.html", "issues/index.html", "issues/feed.xml"}
    expected = {
        "issues/2023-10-16.web.html": ("text/html; charset=utf-8", "public, max-age=604800"),
        "issues/index.html": ("text/html; charset=utf-8", "public, max-age=60"),
        "issues/feed.xml": ("application/atom+xml; charset=utf-8", "public, max-age=60"),
    }
    for key, (kind, cache) in expected.items():
        assert (found[key]["ContentType"], found[key]["CacheControl"]) == (kind, cache), key
    page = client.get_object(Bucket=bucket, Key="issues/2023-10-16.web.html")["Body"].read()
    assert page == (load_config(config_path).publish.out / "2023-10-16.web.html").read_bytes()


def test_a_second_upload_sends_only_the_objects_that_changed(tmp_path, s3):
    client, bucket = s3
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/"')
    first = publish(config_path, SAMPLE, "--json").output
    assert '"written": [\n      "2023-10-16.web.html",\n      "feed.xml",\n      "index.html"' in first.split('"upload"')[1]
    stamps = {key: head["LastModified"] for key, head in objects(client, bucket).items()}
    etags = {key: head["ETag"] for key, head in objects(client, bucket).items()}

    again = publish(config_path, SAMPLE)
    assert f"upload: s3://{bucket}/: 0 written, 3 unchanged" in again.output
    assert {key: head["ETag"] for key, head in objects(client, bucket).items()} == etags
    assert {key: head["LastModified"] for key, head in objects(client, bucket).items()} == stamps

    publish(config_path, issue_copy(tmp_path, "2023-10-23"))
    after = objects(client, bucket)
    changed = {key for key, head in after.items() if head["ETag"] != etags.get(key)}
    assert changed == {"2023-10-23.web.html", "index.html", "feed.xml"}
    assert after["2023-10-16.web.html"]["LastModified"] == stamps["2023-10-16.web.html"]


def test_only_the_files_the_site_wrote_are_uploaded_whatever_else_shares_its_folder(tmp_path, s3):
    client, bucket = s3
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/"\nout = "public"')
    public = tmp_path / "public"
    # Things an editor's folder collects: `newsletter build`'s files, a copied outbox, a stray
    # database copy, a symlink out of the folder.
    assert cli(config_path, "build", "-o", str(public), str(SAMPLE)).exit_code == 0
    (public / "outbox").mkdir()
    (public / "outbox" / "manifest.csv").write_text("number,recipient\n1,reader@example.com\n", encoding="utf-8")
    (public / "outbox" / "0001-reader@example.com.eml").write_bytes(b"List-Unsubscribe: <https://x/unsubscribe/T>\r\n")
    (public / "copy.db").write_bytes(b"SQLite format 3\0")
    (tmp_path / "private.txt").write_text("secret", encoding="utf-8")
    (public / "link.txt").symlink_to(tmp_path / "private.txt")

    publish(config_path, SAMPLE)
    assert set(objects(client, bucket)) == {"2023-10-16.web.html", "index.html", "feed.xml"}
    publish(config_path, issue_copy(tmp_path, "2023-10-23"))  # the older page stays part of the site
    publish(config_path, "--force", issue_copy(tmp_path, "2023-10-30"))
    assert set(objects(client, bucket)) == {"2023-10-16.web.html", "2023-10-23.web.html", "2023-10-30.web.html",
                                            "index.html", "feed.xml"}

    # The site's record of its files cannot be turned into a way out of the folder.
    manifest = public / ".newsletter-site.json"
    manifest.write_text(json.dumps([*json.loads(manifest.read_text(encoding="utf-8")), "link.txt"]), encoding="utf-8")
    result = cli(config_path, "publish", str(SAMPLE))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "lists 'link.txt', which is not in" in result.output
    assert "private.txt" not in str(objects(client, bucket))


def test_a_missing_bucket_is_one_line_and_leaves_the_issue_unpublished(tmp_path, s3):
    config_path = site_config(tmp_path, check_before_send=True)
    result = cli(config_path, "publish", "--to", "s3://no-such-bucket-here/x", str(SAMPLE))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "NoSuchBucket" in result.output
    refused = cli(config_path, "send", "--yes", str(SAMPLE))
    assert refused.exit_code == 1 and "is not published" in refused.output


# --- the check before a send --------------------------------------------------------------------


def test_a_list_send_waits_until_the_page_is_published_as_it_is(tmp_path, moto_ses, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    config_path = site_config(tmp_path, check_before_send=True)
    issue = issue_copy(tmp_path, "2023-10-16")
    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0

    refused = cli(config_path, "send", "--yes", str(issue))
    assert refused.exit_code == 1
    assert refused.output == (
        'error: the web page of issue 2023-10-16 is not published, so the email\'s "View on the web" link '
        f"({WEB_BASE}2023-10-16.web.html) would lead nowhere; run `newsletter publish {issue}` first, "
        "or pass --no-publish-check\n"
    )
    assert moto_ses.raw_messages() == []
    # Test copies and dry runs are how an editor checks an issue before publishing it.
    assert cli(config_path, "send", "--dry-run", str(issue)).exit_code == 0
    copy = cli(config_path, "send", "--yes", "--to", "editor@example.com", str(issue))
    assert copy.exit_code == 0, copy.output

    publish(config_path, issue)
    issue_copy(tmp_path, "2023-10-16", edit="추가된 문장.")  # edited after publishing
    stale = cli(config_path, "send", "--yes", str(issue))
    assert stale.exit_code == 1 and "is older than the issue" in stale.output

    publish(config_path, issue)
    sent = cli(config_path, "send", "--yes", str(issue))
    assert sent.exit_code == 0, sent.output
    assert [m["To"] for m in moto_ses.messages()] == ["editor@example.com", "reader@example.com"]


def test_no_publish_check_sends_an_unpublished_issue(tmp_path, moto_ses, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    config_path = site_config(tmp_path, check_before_send=True)
    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0
    result = cli(config_path, "send", "--yes", "--no-publish-check", str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert len(moto_ses.raw_messages()) == 1


def test_kill_9_during_an_upload_then_a_rerun_completes_it_without_sending_anything_twice(tmp_path, s3):
    import os
    import signal
    import subprocess
    import sys
    import time

    client, bucket = s3
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/"', check_before_send=True)
    issues = [issue_copy(tmp_path, f"2024-{month:02d}-{day:02d}") for month in (1, 2, 3) for day in (1, 8, 15, 22)]
    child = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config_path), "publish", *map(str, issues)],
                             env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not client.list_objects_v2(Bucket=bucket).get("KeyCount") and child.poll() is None:
        assert time.monotonic() < deadline, "no upload started"
        time.sleep(0.01)
    assert child.poll() is None, "the publish finished before it could be killed; give it more issues"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    uploaded_before = {key: head["ETag"] for key, head in objects(client, bucket).items()}
    if "index.html" in uploaded_before or "feed.xml" in uploaded_before:  # they go last
        assert {f"{i.stem}.web.html" for i in issues} <= set(uploaded_before)
    # Nothing counts as published yet: a send still refuses.
    assert "is not published" in cli(config_path, "send", "--yes", str(issues[0])).output

    report = json.loads(publish(config_path, "--json", *issues).output)
    assert sorted(report["upload"]["unchanged"]) == sorted(uploaded_before)
    assert len(report["upload"]["written"]) == len(issues) + 2 - len(uploaded_before)
    assert set(objects(client, bucket)) == {f"{i.stem}.web.html" for i in issues} | {"index.html", "feed.xml"}
    assert feedparser.parse(client.get_object(Bucket=bucket, Key="feed.xml")["Body"].read()).entries[11].link.endswith(
        "2024-01-01.web.html")
