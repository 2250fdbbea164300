"""`newsletter publish`: the archive in a folder and on S3 (moto's server over HTTP), the Atom feed
read back by feedparser, the index's links, the tag pages, the search index's files, and the check
a list send makes before it starts. (The search itself, typed into the page, is in
test_site_browser.py.)"""

from __future__ import annotations

import datetime as dt
import gzip
import html
import html.parser
import json
import re
import shutil
import uuid
from pathlib import Path

import feedparser
import pytest

from conftest import require_pagefind, write_config
from newsletter.config import load_config
from newsletter.errors import ConfigError, SendError
from newsletter.model import PublishedIssue, PublishedPaper, tag_slug
from newsletter.parse import parse_issue
from newsletter.render import render_issue
from newsletter.send import IssueToSend
from newsletter.send.gates import check_web_page
from newsletter.site.pages import atom_feed, is_site_file
from newsletter.site.targets import SITE_MANIFEST
from sending_fixtures import cli

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "issues" / "2023-10-16.md"
WEB_BASE = "https://newsletter.example.com/issues/"
SUBSCRIBE_URL = "https://newsletter.example.com/subscribe/"


def site_config(tmp_path: Path, publish: str = "", *, check_before_send: bool = False, web_base: str = WEB_BASE) -> Path:
    """The test config with a [publish] table of `publish` lines and a subscribe form; the archive
    is served at `web_base`."""
    path = write_config(tmp_path / "newsletter.toml")
    text = path.read_text(encoding="utf-8").replace(
        "check_before_send = false", f"check_before_send = {str(check_before_send).lower()}\n{publish}"
    ).replace(f'web_base_url = "{WEB_BASE}"', f'web_base_url = "{web_base}"')
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


NEW_PAPER = "Mixture-of-Depths: Dynamically Allocating Compute in Transformer Language Models"
NEW_PAPER_SLUG = "mixture-of-depths-dynamically-allocating-compute-in-transfor"  # 60 characters at most


def second_week(folder: Path, date: str = "2023-10-23") -> Path:
    """The sample as another week, as a real second week differs: its own title, and in place of
    Llemma (#mathglm) a paper the first week does not have (#moe, #효율)."""
    text = SAMPLE.read_text(encoding="utf-8").replace("date: 2023-10-16", f"date: {date}")
    text = text.replace("[2023/10/16 ~ 10/22]", "[2023/10/23 ~ 10/29]")
    text = text.replace("## Llemma(렘마): 수학을 위한 개방형 언어 모델 / Llemma: An Open Language Model For Mathematics",
                        f"## 깊이 혼합: 트랜스포머 언어 모델의 동적 연산 배분 / {NEW_PAPER}")
    text = text.replace("Tags: mathglm", "Tags: moe, 효율")
    path = folder / f"{date}.md"
    path.write_text(text, encoding="utf-8")
    return path


def publish(config_path: Path, *args: str):
    require_pagefind()
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
    pages = {href.partition("#")[0] for href in local}
    assert pages == {"2023-10-16.web.html", "2023-10-23.web.html", "feed.xml", "tags/index.html"}
    for href in local:
        path, _, anchor = href.partition("#")
        assert (site / path).is_file(), href
        assert not anchor or f'id="{anchor}"' in (site / path).read_text(encoding="utf-8"), href
    assert links.actions == ["#search", SUBSCRIBE_URL]
    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.index("2023-10-23.web.html") < index.index("2023-10-16.web.html")  # newest first
    assert "지난 호" in index and "Archive" in index and 'name="website"' in index  # bilingual; honeypot
    assert 'id="subscribe"' in index  # what web_base_url + "#subscribe" (the pages' subscribe link) finds


def test_the_index_links_every_paper_title_to_its_anchor_on_its_weeks_page(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE)
    site = load_config(config_path).publish.out
    papers = parse_issue(SAMPLE).papers
    anchors = [href for href in links_of(site / "index.html").hrefs if "#" in href]
    assert anchors == [f"2023-10-16.web.html#{paper.slug}" for paper in papers]
    index = (site / "index.html").read_text(encoding="utf-8")
    for paper in papers:  # each title is the text of its own link (not five and "10 more")
        language = "" if paper.title_ko else ' lang="en"'
        assert f'#{paper.slug}"{language}>{html.escape(paper.title, quote=False)}</a>' in index


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
    assert [entry.published_parsed[:3] for entry in feed.entries] == [(2023, 10, 23), (2023, 10, 16)]
    self_link = [link.href for link in feed.feed.links if link.rel == "self"]
    assert self_link == [WEB_BASE + "feed.xml"]


def test_control_characters_do_not_break_the_feed(tmp_path):
    """XML 1.0 cannot hold most control characters; ElementTree writes them anyway, and a feed
    reader then refuses the whole feed. (The parser refuses them in issue files; the feed does not
    rely on that.)"""
    now = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    paper = PublishedPaper("p", "T\x0c<b>x</b>", None, ("a\x1fb", "<i>", "RAG", "rag"), "")
    entry = PublishedIssue("2023-10-16", "Title\x0b\x01 end", "a\x00b\x1f", (paper,), "0" * 64, now, now, "x")
    feed = feedparser.parse(atom_feed([entry], load_config(site_config(tmp_path))).body)
    assert not feed.bozo, feed.get("bozo_exception")
    assert (feed.entries[0].title, feed.entries[0].summary) == ("Title end", "ab")
    assert [tag.term for tag in feed.entries[0].tags] == ["ab", "<i>", "rag"]  # RAG and rag: one tag
    assert "&lt;b&gt;x&lt;/b&gt;" in feed.entries[0].content[0].value  # the title is text in the HTML


def test_a_second_run_writes_nothing_and_an_edit_rewrites_only_what_it_changes(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE)
    site = load_config(config_path).publish.out
    before = {path: path.read_bytes() for path in site.rglob("*") if path.is_file()}
    assert "folder: " in publish(config_path, SAMPLE).output
    assert {path: path.read_bytes() for path in site.rglob("*") if path.is_file()} == before
    again = json.loads(publish(config_path, "--json", SAMPLE).output)["folder"]
    assert again["written"] == [] and len(again["unchanged"]) == len(site_files(site))

    edited = issue_copy(tmp_path, "2023-10-16", edit="정정: 오타를 고쳤습니다.")
    folder = json.loads(publish(config_path, "--json", edited).output)["folder"]
    # The page and the feed's updated time; the intro is not a paper, so search and tags stay.
    assert folder["written"] == ["2023-10-16.web.html", "feed.xml"] and folder["removed"] == []
    assert "정정: 오타를 고쳤습니다." in (site / "2023-10-16.web.html").read_text(encoding="utf-8")
    assert (site / "index.html").read_bytes() == before[site / "index.html"]


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


def site_files(site: Path) -> set[str]:
    """The site's files in its folder: all but the list `publish` keeps of them."""
    return {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file() and p.name != SITE_MANIFEST}


def public_read(client, bucket: str) -> None:
    """Anyone may GET the bucket's objects (as with an S3 website endpoint; with CloudFront it would
    be the distribution): where readers open the pages."""
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}))


def objects(client, bucket: str) -> dict[str, dict]:
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: client.head_object(Bucket=bucket, Key=key) for key in keys}


def test_publish_to_s3_uploads_with_content_type_charset_and_cache_headers(tmp_path, s3):
    client, bucket = s3
    config_path = site_config(tmp_path, "page_cache_seconds = 604800\nlisting_cache_seconds = 60")
    publish(config_path, SAMPLE, "--to", f"s3://{bucket}/issues")
    found = objects(client, bucket)
    site = load_config(config_path).publish.out
    assert set(found) == {f"issues/{path}" for path in site_files(site)}
    long, short = "public, max-age=604800", "public, max-age=60"
    expected = {
        "issues/2023-10-16.web.html": ("text/html; charset=utf-8", long),
        "issues/index.html": ("text/html; charset=utf-8", short),
        "issues/feed.xml": ("application/atom+xml; charset=utf-8", short),
        "issues/tags/rag.html": ("text/html; charset=utf-8", short),
        "issues/tags/index.html": ("text/html; charset=utf-8", short),
        "issues/pagefind/pagefind.js": ("text/javascript; charset=utf-8", short),
        "issues/pagefind/pagefind-entry.json": ("application/json; charset=utf-8", short),
    }
    for key, (kind, cache) in expected.items():
        assert (found[key]["ContentType"], found[key]["CacheControl"]) == (kind, cache), key
    # Pagefind names fragments, index chunks and meta by their content: cached long.
    named = [key for key in found if re.search(r"/(fragment|index)/|\.pf_meta$", key)]
    assert len(named) >= 12 and all(found[key]["CacheControl"] == long for key in named)
    page = client.get_object(Bucket=bucket, Key="issues/2023-10-16.web.html")["Body"].read()
    assert page == (site / "2023-10-16.web.html").read_bytes()


def test_one_new_week_uploads_only_the_files_it_changes(tmp_path, s3):
    client, bucket = s3
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/"')
    first = json.loads(publish(config_path, SAMPLE, "--json").output)["upload"]
    stamps = {key: head["LastModified"] for key, head in objects(client, bucket).items()}
    etags = {key: head["ETag"] for key, head in objects(client, bucket).items()}
    assert sorted(first["written"]) == sorted(etags)

    again = json.loads(publish(config_path, "--json", SAMPLE).output)["upload"]
    assert again["written"] == [] and len(again["unchanged"]) == len(etags)
    assert {key: head["ETag"] for key, head in objects(client, bucket).items()} == etags
    assert {key: head["LastModified"] for key, head in objects(client, bucket).items()} == stamps

    report = json.loads(publish(config_path, "--json", second_week(tmp_path)).output)["upload"]
    after = objects(client, bucket)
    changed = {key for key, head in after.items() if head["ETag"] != etags.get(key)}
    assert changed == set(report["written"])
    fragments = {key for key in changed if key.startswith("pagefind/fragment/")}
    assert len(fragments) == len(parse_issue(SAMPLE).papers)  # the new week's papers, nothing else
    assert changed - fragments == {
        "2023-10-23.web.html", "index.html", "feed.xml", "tags/index.html",
        "tags/rag.html", "tags/chain-of-thought.html", "tags/moe.html", next(k for k in changed if "tags/tag-" in k),
        "pagefind/pagefind-entry.json",
        *(k for k in changed if k.startswith("pagefind/index/") or k.endswith(".pf_meta")),
    }
    assert len([k for k in changed if k.startswith("pagefind/index/") or k.endswith(".pf_meta")]) <= 3
    unchanged = set(etags) - changed
    assert {"2023-10-16.web.html", "tags/mathglm.html", "pagefind/pagefind.js"} <= unchanged
    assert all(after[key]["LastModified"] == stamps[key] for key in unchanged)


def test_only_the_sites_own_files_are_uploaded_from_its_folder(tmp_path, s3):
    """An outbox or a manifest kept in the site's folder is private: the upload takes only what
    `publish` generates."""
    client, bucket = s3
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/"')
    site = load_config(config_path).publish.out
    (site / "outbox").mkdir(parents=True)
    (site / "outbox" / "0001.eml").write_text("To: reader@example.com\n\nsecret", encoding="utf-8")
    (site / "manifest.csv").write_text("address\nreader@example.com\n", encoding="utf-8")
    (site / "tags").mkdir()
    (site / "tags" / "notes.txt").write_text("not a tag page", encoding="utf-8")
    publish(config_path, SAMPLE)
    keys = set(objects(client, bucket))
    assert keys and all(is_site_file(key) for key in keys)
    assert not {"outbox/0001.eml", "manifest.csv", "tags/notes.txt"} & keys
    assert (site / "manifest.csv").is_file() and (site / "tags" / "notes.txt").is_file()  # and left alone


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

    def uploaded_pages() -> set[str]:  # the search index and tag pages aside
        return {key for key in objects(client, bucket) if not key.startswith(("pagefind/", "tags/"))}

    publish(config_path, SAMPLE)
    assert uploaded_pages() == {"2023-10-16.web.html", "index.html", "feed.xml"}
    publish(config_path, issue_copy(tmp_path, "2023-10-23"))  # the older page stays part of the site
    publish(config_path, "--force", issue_copy(tmp_path, "2023-10-30"))
    assert uploaded_pages() == {"2023-10-16.web.html", "2023-10-23.web.html", "2023-10-30.web.html",
                                "index.html", "feed.xml"}
    assert all(is_site_file(key) for key in objects(client, bucket))

    # The site's record of its files cannot be turned into a way out of the folder.
    manifest = public / ".newsletter-site.json"
    manifest.write_text(json.dumps([*json.loads(manifest.read_text(encoding="utf-8")), "link.txt"]), encoding="utf-8")
    result = cli(config_path, "publish", str(SAMPLE))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "lists 'link.txt', which is not in" in result.output
    assert "private.txt" not in str(objects(client, bucket))


def test_a_missing_bucket_is_one_line_and_leaves_the_issue_unpublished(tmp_path, s3, static_site):
    config_path = site_config(tmp_path, check_before_send=True, web_base=static_site.url)
    result = cli(config_path, "publish", "--to", "s3://no-such-bucket-here/x", str(SAMPLE))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "NoSuchBucket" in result.output
    refused = cli(config_path, "send", "--yes", str(SAMPLE))
    assert refused.exit_code == 1 and "answers 404" in refused.output


# --- the check before a send --------------------------------------------------------------------


def test_a_list_send_is_refused_while_the_web_link_answers_404_and_sent_once_it_serves_the_page(
        tmp_path, moto_ses, static_site, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    config_path = site_config(tmp_path, check_before_send=True, web_base=static_site.url)
    issue = issue_copy(tmp_path, "2023-10-16")
    page_url = f"{static_site.url}2023-10-16.web.html"
    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0

    refused = cli(config_path, "send", "--yes", str(issue))
    assert refused.exit_code == 1
    assert refused.output == (
        f'error: not sending: the email\'s "View on the web" link {page_url} answers 404 File not found; run '
        f"`newsletter publish {issue} --to s3://BUCKET/PREFIX` (or set publish.to) to put it where readers will "
        "open it, or pass --no-publish-check\n"
    )
    assert moto_ses.raw_messages() == []
    # Test copies and dry runs are how an editor checks an issue before publishing it.
    assert cli(config_path, "send", "--dry-run", str(issue)).exit_code == 0
    copy = cli(config_path, "send", "--yes", "--to", "editor@example.com", str(issue))
    assert copy.exit_code == 0, copy.output

    # `publish` without a remote target says so, and where readers would look; the send still refuses.
    local = publish(config_path, issue)
    site = load_config(config_path).publish.out
    assert (f"note: nothing was uploaded (no --to, no publish.to): the pages are only in {site} on this machine, "
            f"and readers will look for them at {page_url};") in local.output
    still = cli(config_path, "send", "--yes", str(issue))
    assert still.exit_code == 1
    assert f"answers 404 File not found; `newsletter publish` wrote it only to {site} on this machine" in still.output

    # The folder copied to the host (as `rsync -a build/site/ host:...`): the link works.
    shutil.copytree(site, static_site.root, dirs_exist_ok=True)
    issue_copy(tmp_path, "2023-10-16", edit="추가된 문장.")  # but the issue was edited after publishing
    stale = cli(config_path, "send", "--yes", str(issue))
    assert stale.exit_code == 1
    assert f"link {page_url} answers 200 with another version of the page" in stale.output
    assert moto_ses.raw_messages()[1:] == []

    publish(config_path, issue)
    shutil.copytree(site, static_site.root, dirs_exist_ok=True)
    sent = cli(config_path, "send", "--yes", str(issue))
    assert sent.exit_code == 0, sent.output
    assert f"web page:  {page_url} is this issue's page" in sent.output
    assert [m["To"] for m in moto_ses.messages()] == ["editor@example.com", "reader@example.com"]


def test_the_page_check_reads_the_page_from_the_bucket_it_was_uploaded_to(tmp_path, moto_ses, s3, monkeypatch):
    """moto's S3 answers anonymous GETs under a public-read bucket policy, as a public bucket or
    CloudFront would (moto_ses first: it resets the server, bucket and all)."""
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    client, bucket = s3
    public_read(client, bucket)
    web_base = f"{moto_ses.endpoint_url}/{bucket}/issues/"
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/issues"', check_before_send=True, web_base=web_base)
    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0
    assert "answers 404" in cli(config_path, "send", "--yes", str(SAMPLE)).output
    publish(config_path, SAMPLE)
    sent = cli(config_path, "send", "--yes", str(SAMPLE))
    assert sent.exit_code == 0, sent.output
    assert len(moto_ses.raw_messages()) == 1


def test_a_page_uploaded_somewhere_else_than_the_web_url_serves_is_named_as_such(tmp_path, moto_ses, s3, static_site):
    client, bucket = s3
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/issues"', check_before_send=True, web_base=static_site.url)
    publish(config_path, SAMPLE)
    refused = cli(config_path, "send", "--yes", str(SAMPLE))
    assert refused.exit_code == 1
    site = load_config(config_path).publish.out
    assert (f"answers 404 File not found; `newsletter publish` put it in {site} + s3://{bucket}/issues, which is not "
            f"what {static_site.url} serves: check newsletter.web_base_url and the host or CDN in front of the "
            "bucket, or pass --no-publish-check") in refused.output


def test_the_page_check_opens_a_korean_path_as_a_browser_does(tmp_path, static_site):
    """web_base_url with Hangul in its path: the link in the email is sent percent-encoded."""
    config_path = site_config(tmp_path, check_before_send=True, web_base=f"{static_site.url}지난호/")
    config = load_config(config_path)
    issue = IssueToSend.load(SAMPLE, config)
    with pytest.raises(SendError, match="지난호/2023-10-16.web.html answers 404"):
        check_web_page(issue, config)
    publish(config_path, "--out", str(static_site.root / "지난호"), SAMPLE)
    assert check_web_page(issue, config) == f"{static_site.url}지난호/2023-10-16.web.html"


def test_no_publish_check_sends_an_unpublished_issue(tmp_path, moto_ses, static_site, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    config_path = site_config(tmp_path, check_before_send=True, web_base=static_site.url)
    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0
    result = cli(config_path, "send", "--yes", "--no-publish-check", str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert len(moto_ses.raw_messages()) == 1


def test_kill_9_during_an_upload_then_a_rerun_completes_it_without_sending_anything_twice(tmp_path, s3, _moto_server_url):
    import os
    import signal
    import subprocess
    import sys
    import time

    client, bucket = s3
    public_read(client, bucket)
    config_path = site_config(tmp_path, f'to = "s3://{bucket}/"', check_before_send=True,
                              web_base=f"{_moto_server_url}/{bucket}/")
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
    # A PUT the killed process had already sent may still be stored after it died: take the
    # bucket as it settles, not as it is at the instant of the kill.
    uploaded_before, settled = None, {key: head["ETag"] for key, head in objects(client, bucket).items()}
    while settled != uploaded_before:
        time.sleep(0.2)
        uploaded_before, settled = settled, {key: head["ETag"] for key, head in objects(client, bucket).items()}
    if "index.html" in uploaded_before or "feed.xml" in uploaded_before:  # they go last
        assert {f"{i.stem}.web.html" for i in issues} <= set(uploaded_before)
    # A send's page check sees exactly what reached the bucket.
    config = load_config(config_path)
    for path in issues:
        issue = IssueToSend.load(path, config)
        if f"{path.stem}.web.html" in uploaded_before:
            check_web_page(issue, config)
        else:
            with pytest.raises(SendError, match="answers 404"):
                check_web_page(issue, config)

    report = json.loads(publish(config_path, "--json", *issues).output)
    assert sorted(report["upload"]["unchanged"]) == sorted(uploaded_before)
    site = load_config(config_path).publish.out
    every_file = site_files(site)
    assert len(report["upload"]["written"]) == len(every_file) - len(uploaded_before)
    assert set(objects(client, bucket)) == every_file
    assert {f"{i.stem}.web.html" for i in issues} | {"index.html", "feed.xml", "tags/rag.html"} <= every_file
    assert feedparser.parse(client.get_object(Bucket=bucket, Key="feed.xml")["Body"].read()).entries[11].link.endswith(
        "2024-01-01.web.html")


# --- tags, hostile text, an archive published before papers were kept ----------------------------


def hostile_week(folder: Path, date: str = "2023-10-30") -> Path:
    """The sample as a week whose first paper has markup for a title and tags that try to leave
    the tags folder, run script, or differ from another tag only by case or invisible characters."""
    text = SAMPLE.read_text(encoding="utf-8").replace("date: 2023-10-16", f"date: {date}")
    text = text.replace(
        "## Llemma(렘마): 수학을 위한 개방형 언어 모델 / Llemma: An Open Language Model For Mathematics",
        "## <img src=x onerror=alert(1)>렘마 \" ' & / <script>alert(2)</script> Llemma")
    text = text.replace("Tags: mathglm", "Tags: ../../../etc/passwd, <script>alert(3)</script>, RAG, 검색 증강, "
                                         "a/b\\c, .., \u200bmoe\u200b, #, %2e%2e%2fx")
    path = folder / f"{date}.md"
    path.write_text(text, encoding="utf-8")
    return path


HOSTILE_TAGS = ["../../../etc/passwd", "<script>alert(3)</script>", "RAG", "검색 증강", "a/b\\c", "..", "moe",
                "%2e%2e%2fx"]


def test_hostile_tags_and_titles_stay_text_and_every_tag_page_stays_in_the_tags_folder(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE, hostile_week(tmp_path))
    site = load_config(config_path).publish.out
    assert list(parse_issue(tmp_path / "2023-10-30.md").papers[0].tags) == HOSTILE_TAGS
    files = sorted(site_files(site))
    assert all(is_site_file(path) for path in files)
    tag_files = [path for path in files if path.startswith("tags/")]
    assert all(re.fullmatch(r"tags/[a-z0-9-]+\.html", path) for path in tag_files)
    # Every hostile tag (and the sample's mathglm, rag, chain-of-thought; RAG is rag) has its own page.
    assert len(tag_files) == 1 + len(HOSTILE_TAGS) - 1 + 3
    assert not [path for path in tmp_path.rglob("*") if path.name in ("passwd", "x")]  # nothing outside
    for path in ["index.html", "feed.xml", "2023-10-30.web.html", *tag_files]:
        text = (site / path).read_text(encoding="utf-8")
        assert "<script>alert" not in text and "<img src=x" not in text, path
    tags_index = (site / "tags" / "index.html").read_text(encoding="utf-8")
    assert "#&lt;script&gt;alert(3)&lt;/script&gt;</a>" in tags_index and "#검색 증강</a>" in tags_index
    # The web page's tag links all lead to a tag page that exists.
    web_links = [href for href in links_of(site / "2023-10-30.web.html").hrefs if "/tags/" in href]
    assert len(web_links) == len(HOSTILE_TAGS) + 2  # + the sample's #rag and #chain-of-thought papers
    assert all((site / href.removeprefix(WEB_BASE)).is_file() for href in web_links)
    rag = (site / "tags" / "rag.html").read_text(encoding="utf-8")
    # RAG and rag are one tag; newest week first.
    assert rag.index("2023-10-30.web.html#script-alert-2-script-llemma") < rag.index("2023-10-30.web.html#self-rag") \
        < rag.index("2023-10-16.web.html#self-rag")


def test_every_tag_page_lists_its_papers_newest_first_each_linked_to_its_anchor(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE)
    publish(config_path, second_week(tmp_path))
    site = load_config(config_path).publish.out
    weeks = {"2023-10-23": parse_issue(tmp_path / "2023-10-23.md"), "2023-10-16": parse_issue(SAMPLE)}
    expected: dict[str, list[str]] = {}
    for date, issue in weeks.items():  # newest first
        for paper in issue.papers:
            for tag in paper.tags:
                expected.setdefault(tag, []).append(f"../{date}.web.html#{paper.slug}")
    assert set(expected) == {"rag", "chain-of-thought", "mathglm", "moe", "효율"}
    tag_index = links_of(site / "tags" / "index.html").hrefs
    for tag, anchors in expected.items():
        [href] = [h for h in tag_index if h == f"{tag_slug(tag)}.html"]
        page = (site / "tags" / href).read_text(encoding="utf-8")
        assert f"<h1 class=\"tag-name\">#{tag}</h1>" in page
        assert [h for h in links_of(site / "tags" / href).hrefs if ".web.html#" in h] == anchors
        for anchor in anchors:
            path, _, slug = anchor.removeprefix("../").partition("#")
            assert f'id="{slug}"' in (site / path).read_text(encoding="utf-8")


def test_an_archive_published_before_papers_were_kept_keeps_its_titles_until_republished(tmp_path):
    import sqlite3

    from newsletter.store import db

    config_path = site_config(tmp_path)
    database = load_config(config_path).database
    database.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(database) as connection:  # the schema as version 5 left it, with one issue
        for migration in db.MIGRATIONS[:5]:
            for statement in migration.statements:
                connection.execute(statement)
        connection.execute("PRAGMA user_version = 5")
        connection.execute("INSERT INTO published_issue VALUES ('2023-10-09', 'Old week', 'old', ?, ?, ?, ?, 'build')",
                           (json.dumps(["옛 논문", "Old paper"], ensure_ascii=False), "0" * 64,
                            "2023-10-09T09:00:00+00:00", "2023-10-09T09:00:00+00:00"))
    result = publish(config_path, SAMPLE)
    assert "not in search or tag pages: 2023-10-09; publish their files again" in result.output
    site = load_config(config_path).publish.out
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "<li>옛 논문</li>" in index and "<li>Old paper</li>" in index  # titles kept, not linked
    report = json.loads(publish(config_path, "--json", SAMPLE).output)
    assert report["searchable_papers"] == len(parse_issue(SAMPLE).papers) and report["without_papers"] == ["2023-10-09"]


def test_without_pagefind_publish_says_how_to_install_it_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(tmp_path / "no-pagefind-here"))
    config_path = site_config(tmp_path)
    result = cli(config_path, "publish", str(SAMPLE))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "cannot build the search index: no Pagefind binary found; install it with `pip install " \
           "'pagefind[extended]'`" in result.output
    assert not load_config(config_path).publish.out.exists()


def test_a_paper_edited_and_republished_replaces_its_search_fragment_and_nothing_else(tmp_path):
    config_path = site_config(tmp_path)
    publish(config_path, SAMPLE, second_week(tmp_path))
    site = load_config(config_path).publish.out
    fragments = sorted((site / "pagefind" / "fragment").iterdir())
    text = SAMPLE.read_text(encoding="utf-8").replace(
        "* 검색 및 자기 반성을 통해", "* 정정된 요약: 검색 및 자기 반성을 통해", 1)
    edited = tmp_path / "edited" / "2023-10-16.md"
    edited.parent.mkdir()
    edited.write_text(text, encoding="utf-8")
    folder = json.loads(publish(config_path, "--json", edited).output)["folder"]
    written = [path for path in folder["written"] if path.startswith("pagefind/fragment/")]
    assert len(written) == 1 and len(folder["removed"]) >= 1
    assert [path for path in folder["removed"] if path.startswith("pagefind/fragment/")] != written
    assert len(list((site / "pagefind" / "fragment").iterdir())) == len(fragments) == 20  # one per paper
    assert "2023-10-16.web.html" in folder["written"] and "2023-10-23.web.html" not in folder["written"]
    assert "정정된" in gzip.decompress((site / written[0]).read_bytes()).decode("utf-8", "replace")
