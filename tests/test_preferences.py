"""The preferences page: its tokens, and the page in a real `newsletter serve` (and in the app as
it runs without a database, on Lambda), with the queue on moto's SQS over HTTP and `sync`."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from events_fixtures import SECRET, cli, cli_json, events_config, query, queue_depth, queue_url
from newsletter.config import load_config
from newsletter.events import EventQueue
from newsletter.preferences import PreferenceLinks, PreferenceTokens
from newsletter.subscribe import ConfirmationTokens
from newsletter.unsubscribe import DEVELOPMENT_KEY, SECRET_ENV, SigningKey, TokenSigner, TokenState
from newsletter.web import app_for, serve_in_thread

KEY = SigningKey(SECRET.encode(), "test")
LIST_ID = "top-ml-papers.newsletter.example.com"
DAYS = dt.timedelta(days=90)
NOW = dt.datetime.now(dt.UTC)


# --- the tokens -----------------------------------------------------------------------------------


def test_a_preferences_token_opens_to_its_address_and_edition_only_with_the_key_and_never_shows_them() -> None:
    tokens = PreferenceTokens(LIST_ID, KEY, DAYS)
    token = tokens.token("Kim@Example.com", "ko", NOW)
    opened = tokens.check(token, NOW)
    assert (opened.state, opened.address, opened.edition) == (TokenState.VALID, "kim@example.com", "ko")
    for start in range(4):  # whatever base64 anyone can read out of it, from any offset
        chunk = token[start:len(token) - (len(token) - start) % 4]
        assert b"kim" not in base64.urlsafe_b64decode(chunk).lower()
    for position in range(len(token)):
        for other in {"A", "B", "-"} - {token[position]}:
            assert tokens.check(token[:position] + other + token[position + 1:], NOW).state is TokenState.INVALID
    assert PreferenceTokens("another.list", KEY, DAYS).check(token, NOW).state is TokenState.INVALID
    assert PreferenceTokens(LIST_ID, SigningKey(b"x" * 40, "other"), DAYS).check(token, NOW).state is TokenState.INVALID
    # Each purpose its own key: an unsubscribe or a confirmation token is no preferences token, nor the other way.
    unsubscribe = TokenSigner(LIST_ID, KEY)
    confirmation = ConfirmationTokens(LIST_ID, KEY, DAYS)
    assert tokens.check(unsubscribe.token("kim@example.com"), NOW).state is TokenState.INVALID
    assert tokens.check(confirmation.token("kim@example.com", NOW), NOW).state is TokenState.INVALID
    assert unsubscribe.address(token) is None and confirmation.check(token, NOW).state is TokenState.INVALID
    for malformed in ("", ".", "abc", "x" * 5000, token + "=", " " + token, "dev-" + token):
        assert tokens.check(malformed, NOW).state is TokenState.INVALID


def test_a_preferences_token_expires_and_one_from_the_future_is_not_ours() -> None:
    tokens = PreferenceTokens(LIST_ID, KEY, DAYS)
    old = tokens.token("kim@example.com", "en", NOW - DAYS - dt.timedelta(seconds=2))
    assert tokens.check(old, NOW).state is TokenState.EXPIRED
    assert tokens.check(tokens.token("kim@example.com", "en", NOW - DAYS + dt.timedelta(minutes=1)), NOW).state \
        is TokenState.VALID
    assert tokens.check(tokens.token("kim@example.com", "en", NOW + dt.timedelta(hours=1)), NOW).state \
        is TokenState.INVALID


def test_development_links_are_marked_and_a_real_key_refuses_them() -> None:
    development = PreferenceTokens(LIST_ID, DEVELOPMENT_KEY, DAYS)
    token = development.token("a@example.com", "bilingual", NOW)
    assert token.startswith("dev-") and development.check(token, NOW).state is TokenState.VALID
    assert PreferenceTokens(LIST_ID, KEY, DAYS).check(token, NOW).state is TokenState.INVALID


def test_the_link_lives_beside_the_unsubscribe_endpoint_unless_the_config_says(tmp_path: Path) -> None:
    from conftest import write_config

    path = write_config(tmp_path / "newsletter.toml")
    config = load_config(path)
    assert config.preferences.url == "https://newsletter.example.com/preferences/"
    link = PreferenceLinks(config, KEY, NOW).for_address("kim@example.com", "en")
    assert link.startswith("https://newsletter.example.com/preferences/") and "kim" not in link
    with path.open("a", encoding="utf-8") as out:
        out.write('\n[preferences]\nurl = "https://example.org/my/preferences/"\nlink_days = 30\n')
    assert load_config(path).preferences.url == "https://example.org/my/preferences/"
    with path.open("a", encoding="utf-8") as out:
        out.write('\n')
    path.write_text(path.read_text().replace('url = "https://example.org/my/preferences/"', 'url = "https://example.org/prefs"'))
    from newsletter.errors import ConfigError

    with pytest.raises(ConfigError, match=r"preferences\.url: must end with '/preferences/'"):
        load_config(path)


# --- a real `newsletter serve` --------------------------------------------------------------------


@dataclass
class Page:
    port: int
    prefix: str = "/preferences/"

    def request(self, token: str, fields: dict | None = None, *, method: str | None = None, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, str]:
        data = body if body is not None else (urllib.parse.urlencode(fields).encode() if fields is not None else None)
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{self.prefix}{token}", data=data,
                                         method=method or ("POST" if data is not None else "GET"), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8")


def editions(config_path: Path) -> dict[str, str]:
    return dict(query(config_path, "SELECT address, edition FROM subscriber"))


def chosen(page: str) -> str | None:
    """The edition the page's form has checked."""
    found = re.search(r'value="(\w+)" checked', page)
    return found.group(1) if found else None


@pytest.fixture
def serve(tmp_path: Path, moto_events, monkeypatch):
    """`newsletter serve` in its own process, with the [events] queue on moto, kim on its list."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    assert cli(config_path, "subscribers", "add", "kim@example.com").exit_code == 0
    server = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config_path), "serve", "--port", "0"],
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        banner = server.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/TOKEN", banner)
        assert found, banner
        yield config_path, Page(int(found.group(1)))
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()


def editor_config(tmp_path: Path) -> Path:
    """The editor's own machine: the same queue, a list of its own."""
    (tmp_path / "editor").mkdir()
    return events_config(tmp_path / "editor")


def link_token(config_path: Path, address: str, edition: str = "bilingual", issued: dt.datetime | None = None) -> str:
    link = PreferenceLinks(load_config(config_path), KEY, issued or dt.datetime.now(dt.UTC)).for_address(address, edition)
    return link.rpartition("/")[2]


def test_in_serve_a_get_changes_nothing_a_post_of_en_changes_it_at_once_and_through_the_queue_and_sync(
        serve, tmp_path, moto_events) -> None:
    config_path, page = serve
    token = link_token(config_path, "kim@example.com")
    for method in ("GET", "HEAD", "GET"):  # a mail scanner, then the reader
        status, body = page.request(token, method=method)
        assert status == 200
    assert chosen(page.request(token)[1]) == "bilingual"
    assert editions(config_path) == {"kim@example.com": "bilingual"} and queue_depth(moto_events) == 0

    status, body = page.request(token, {"edition": "en"})
    assert status == 200 and "English only" in body
    assert editions(config_path) == {"kim@example.com": "en"}  # at once, in the list next to the app
    assert chosen(page.request(token)[1]) == "en"  # the page shows the list's, not the link's
    assert queue_depth(moto_events) == 1  # and on the queue, for the editor's own list

    # The editor's machine keeps its own copy of the list: sync brings the change there.
    editor = editor_config(tmp_path)
    assert cli(editor, "subscribers", "add", "kim@example.com").exit_code == 0
    summary = cli_json(editor, "sync")
    assert summary["applied"] == {"edition_changed": 1} and summary["edition_changes"] == {"en": 1}
    assert editions(editor) == {"kim@example.com": "en"}
    # The server's own list had it applied already: its sync only deletes the queued copy.
    assert cli_json(config_path, "sync")["applied"] == {}
    assert query(config_path, "SELECT status FROM subscriber") == [("subscribed",)]


def test_in_serve_a_forged_altered_expired_or_other_purpose_token_gets_400_and_changes_nothing(serve, moto_events) -> None:
    config_path, page = serve
    good = link_token(config_path, "kim@example.com")
    expired = link_token(config_path, "kim@example.com", issued=dt.datetime.now(dt.UTC) - dt.timedelta(days=91))
    bad = {
        "altered": good[:-2] + ("AA" if good[-2:] != "AA" else "BB"),
        "another key": PreferenceTokens(LIST_ID, SigningKey(b"q" * 40, "x"), DAYS).token("kim@example.com", "en", NOW),
        "the unsubscribe token": TokenSigner(LIST_ID, KEY).token("kim@example.com"),
        "a development link": PreferenceTokens(LIST_ID, DEVELOPMENT_KEY, DAYS).token("kim@example.com", "en", NOW),
        "garbage": "not-a-token",
        "too long": "A" * 3000,
    }
    answers = {}
    for name, token in bad.items():
        for method, fields in (("GET", None), ("POST", {"edition": "en"}), ("POST", {"unsubscribe": "yes"})):
            status, body = page.request(token, fields, method=method)
            answers.setdefault(body, []).append(name)
            assert status == 400, (name, method)
    assert len(answers) == 1  # one page, the same bytes whatever the token claims
    for fields in (None, {"edition": "en"}, {"unsubscribe": "yes"}):
        status, body = page.request(expired, fields)
        assert status == 400 and "만료" in body and "90" in body
    assert editions(config_path) == {"kim@example.com": "bilingual"}
    assert query(config_path, "SELECT status FROM subscriber") == [("subscribed",)]
    assert queue_depth(moto_events) == 0


HOSTILE_POSTS = {
    "an edition the form does not offer": ({"edition": "fr"}, None),
    "an edition in capitals": ({"edition": "EN"}, None),
    "an empty edition": ({"edition": ""}, None),
    "an edition with a NUL": ({"edition": "en\x00"}, None),
    "an edition and an unsubscribe at once": ({"edition": "en", "unsubscribe": "yes"}, None),
    "unsubscribe=no": ({"unsubscribe": "no"}, None),
    "no field at all": ({}, None),
    "the one-click field": ({"List-Unsubscribe": "One-Click"}, None),
    "a body over the page's limit": (None, b"edition=en&pad=" + b"x" * 5000),
    "a nested multipart": (None, b"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n"
                                 b"Content-Disposition: form-data; name=\"edition\"\r\n\r\nen\r\n--c--\r\n--b--\r\n"),
    "a body that is not a form": (None, b"\xff\xfe\x00garbage"),
}


def test_hostile_posts_to_the_preferences_page_get_400_and_change_nothing(serve, moto_events) -> None:
    config_path, page = serve
    token = link_token(config_path, "kim@example.com")
    for name, (fields, body) in HOSTILE_POSTS.items():
        headers = {"Content-Type": "multipart/form-data; boundary=b"} if name == "a nested multipart" else {}
        status, text = page.request(token, fields, body=body, method="POST", headers=headers)
        assert status == 400, name
        assert 'name="edition"' in text and "Traceback" not in text, name  # the form again
    assert page.request(token, method="PUT")[0] == 405
    assert page.request(token + "?edition=en")[0] == 200  # a query string is no post
    assert editions(config_path) == {"kim@example.com": "bilingual"}
    assert query(config_path, "SELECT status FROM subscriber") == [("subscribed",)]
    assert queue_depth(moto_events) == 0
    # Multipart, as some clients post forms, is read like a urlencoded form.
    multipart = (b"--b\r\nContent-Disposition: form-data; name=\"edition\"\r\n\r\nko\r\n--b--\r\n")
    assert page.request(token, body=multipart, method="POST",
                        headers={"Content-Type": "multipart/form-data; boundary=b"})[0] == 200
    assert editions(config_path) == {"kim@example.com": "ko"}


def test_the_page_unsubscribes_locally_and_through_the_queue(serve, tmp_path, moto_events) -> None:
    config_path, page = serve
    token = link_token(config_path, "kim@example.com", "ko")
    status, body = page.request(token, {"unsubscribe": "yes"})
    assert status == 200 and "구독이 취소되었습니다" in body
    assert query(config_path, "SELECT status, reason FROM subscriber") == [("unsubscribed", "preferences page")]
    later = page.request(token)[1]  # the page now says so, and offers no second unsubscribe
    assert "지금 구독 중이 아닙니다" in later and 'name="unsubscribe"' not in later
    editor = editor_config(tmp_path)
    assert cli(editor, "subscribers", "add", "kim@example.com").exit_code == 0
    assert cli_json(editor, "sync")["list_changes"] == {"unsubscribed": 1}


# --- the app without a database (as on Lambda) ------------------------------------------------------


def test_without_a_database_the_page_shows_the_links_edition_and_the_choice_reaches_the_list_by_sync(
        tmp_path, moto_events, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    assert cli(config_path, "subscribers", "add", "kim@example.com", "--edition", "ko").exit_code == 0
    config = load_config(config_path)
    queue = EventQueue.from_config(config)
    app = app_for(config, KEY, database=None, queue=queue)
    server = serve_in_thread(app)
    try:
        page = Page(server.effective_port, prefix="/lambda-url/preferences/")  # under any prefix
        token = link_token(config_path, "kim@example.com", "ko")
        assert chosen(page.request(token)[1]) == "ko"  # the edition the email was sent in
        assert page.request(token, {"edition": "en"})[0] == 200
        assert editions(config_path) == {"kim@example.com": "ko"}  # not applied anywhere yet
        body = json.loads(moto_events.client("sqs").receive_message(
            QueueUrl=queue_url(moto_events), VisibilityTimeout=0)["Messages"][0]["Body"])
        assert (body["type"], body["address"], body["edition"]) == ("edition_changed", "kim@example.com", "en")
        assert cli_json(config_path, "sync")["edition_changes"] == {"en": 1}
        assert editions(config_path) == {"kim@example.com": "en"}
    finally:
        server.close()
        queue.close()


def test_an_edition_change_and_an_unsubscribe_in_either_queue_order_both_hold(tmp_path, moto_events) -> None:
    from newsletter.events import EditionChanged, Unsubscribe, put_event

    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    for address in ("first@example.com", "second@example.com"):
        assert cli(config_path, "subscribers", "add", address).exit_code == 0
    config = load_config(config_path)
    earlier, later = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=20), dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    # first: the choice, then the unsubscribe; second: the unsubscribe, then the choice (both queued late).
    put_event(config, EditionChanged("first@example.com", "en", at=earlier))
    put_event(config, Unsubscribe("first@example.com", at=later))
    put_event(config, Unsubscribe("second@example.com", at=earlier))
    put_event(config, EditionChanged("second@example.com", "en", at=later))
    # And two choices of one reader, the later one queued first.
    put_event(config, EditionChanged("first@example.com", "ko", at=earlier - dt.timedelta(seconds=5)))
    summary = cli_json(config_path, "sync")
    assert summary["applied"] == {"edition_changed": 3, "unsubscribe": 2}
    assert sorted(query(config_path, "SELECT address, status, edition FROM subscriber")) == [
        ("first@example.com", "unsubscribed", "en"), ("second@example.com", "unsubscribed", "en")]


def test_the_lambda_handler_serves_the_page_and_queues_the_choice(tmp_path, moto_events, monkeypatch) -> None:
    import copy

    from events_fixtures import example
    from newsletter import web

    monkeypatch.setenv(SECRET_ENV, SECRET)
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(config_path))
    token = link_token(config_path, "r@example.com", "en")
    event = copy.deepcopy(example("lambda-function-url-request.json"))
    event.update(rawPath=f"/preferences/{token}", rawQueryString="", body=None)
    event["requestContext"]["http"]["method"] = "GET"
    event["headers"] = {"host": "abc.lambda-url.us-east-1.on.aws"}
    shown = web.lambda_handler(event, None)
    assert shown["statusCode"] == 200 and chosen(shown["body"]) == "en"  # the edition the email was sent in
    posted = {**event, "body": "edition=ko", "headers": {**event["headers"],
                                                        "content-type": "application/x-www-form-urlencoded"}}
    posted["requestContext"] = {**event["requestContext"], "http": {**event["requestContext"]["http"], "method": "POST"}}
    assert web.lambda_handler(posted, None)["statusCode"] == 200
    assert web.lambda_handler({**posted, "rawPath": f"/preferences/{token[:-2]}xx"}, None)["statusCode"] == 400
    bodies = [json.loads(m["Body"]) for m in moto_events.client("sqs").receive_message(
        QueueUrl=queue_url(moto_events), MaxNumberOfMessages=10)["Messages"]]
    assert [(b["type"], b["address"], b["edition"]) for b in bodies] == [("edition_changed", "r@example.com", "ko")]
