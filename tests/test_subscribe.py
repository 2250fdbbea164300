"""Subscribing with double opt-in: the form and the confirmation link served by the web app over
real HTTP (waitress on 127.0.0.1), confirmation emails through moto's SES, confirmed subscriptions
through moto's SQS to `newsletter sync`; tokens, limits and the honeypot."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html.parser
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import write_config
from events_fixtures import SECRET, cli, cli_json, events_config, queue_depth, queue_url, statuses
from newsletter.config import load_config
from newsletter.events import EventQueue, SubscribeConfirmed, put_event
from newsletter.store import Store
from newsletter.subscribe import ConfirmationTokens, Subscriptions, TokenState
from newsletter.subscribe_web import form_action, route
from newsletter.unsubscribe import SigningKey, TokenSigner
from newsletter.web import app_for, serve_in_thread
from test_render_browser import browser  # noqa: F401  (real headless Chromium)

KEY = SigningKey(SECRET.encode(), "test")
SUBSCRIBE_URL = "https://newsletter.example.com/subscribe/"
LINK = re.compile(r"(?:https://newsletter\.example\.com|http://127\.0\.0\.1:\d+)(/subscribe/confirm/[A-Za-z0-9_-]+)")


def subscribe_config(folder: Path, *, events: bool = True, url: str = SUBSCRIBE_URL, **subscribe) -> Path:
    """A config with a [subscribe] table; with `events`, an [events] table and its queue (moto)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = events_config(folder) if events else write_config(folder / "newsletter.toml")
    lines = [f'url = "{url}"'] + [f"{key} = {value}" for key, value in subscribe.items()]
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[subscribe]\n" + "\n".join(lines) + "\n")
    if events:
        assert cli(path, "setup", "aws").exit_code == 0
    return path


class WebApp:
    """The web app on a free port: with the database (`newsletter serve`) or without (Lambda)."""

    def __init__(self, config_path: Path, *, with_database: bool, clock=None, port: int = 0,
                 trusted_proxy: str | None = None):
        config = load_config(config_path)
        self.config = config
        queue = EventQueue.from_config(config) if config.events else None
        database = config.database if with_database else None
        app = app_for(config, KEY, database=database, queue=queue)
        self.subscriptions = app.subscribe_pages.subscriptions
        if clock is not None:
            self.subscriptions.clock = clock
        self.server = serve_in_thread(app, port=port, trusted_proxy=trusted_proxy)
        self.base = f"http://127.0.0.1:{self.server.effective_port}"

    def request(self, path: str, fields: dict | None = None, *, method: str | None = None, body: bytes | None = None,
                headers: dict | None = None):
        data = body if body is not None else (urllib.parse.urlencode(fields).encode() if fields is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, answer.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8")

    def subscribe(self, address: str, *, headers: dict | None = None, **extra):
        return self.request("/subscribe/", {"email": address, "website": "", **extra}, headers=headers)

    def close(self):
        self.server.close()


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


@pytest.fixture
def apps():
    started: list[WebApp] = []

    def start(config_path: Path, **options) -> WebApp:
        app = WebApp(config_path, **options)
        started.append(app)
        return app

    yield start
    for app in started:
        app.close()


def confirmation_links(moto_ses, address: str) -> list[str]:
    links = []
    for message in moto_ses.messages():
        if message["To"] == address:
            assert message["Subject"].startswith("구독 확인 · Please confirm your subscription")
            text = message.get_body(("plain",)).get_content()
            html = message.get_body(("html",)).get_content()
            links += LINK.findall(text)
            assert LINK.search(html)
    return links


def test_double_opt_in_end_to_end_without_a_database_on_the_server(tmp_path, moto_events, secret, apps):
    editor = subscribe_config(tmp_path / "editor")
    app = apps(subscribe_config(tmp_path / "lambda"), with_database=False)  # as on AWS Lambda

    status, page = app.subscribe("reader@example.com")
    assert status == 200 and "reader@example.com" in page and "메일함을 확인해 주세요" in page
    [link] = confirmation_links(moto_events.ses, "reader@example.com")
    assert len(moto_events.ses.messages()) == 1

    # A mail scanner opening the link confirms nothing.
    status, page = app.request(link)
    assert status == 200 and 'method="post"' in page and "구독 확인" in page
    assert queue_depth(moto_events) == 0

    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    status, page = app.request(link, {"confirm": "yes"})
    assert status == 200 and "구독이 시작되었습니다" in page
    assert queue_depth(moto_events) == 1
    assert statuses(editor) == {}

    summary = cli_json(editor, "sync")
    assert summary["applied"] == {"subscribe_confirmed": 1}
    with Store.open(load_config(editor).database) as store:
        reader = store.get("reader@example.com")
    assert (reader.status, reader.source) == ("subscribed", "web")
    assert before <= reader.joined_at <= dt.datetime.now(dt.UTC)


def test_with_the_database_a_confirmation_applies_at_once_and_sync_does_not_apply_it_again(
        tmp_path, moto_events, secret, apps):
    config_path = subscribe_config(tmp_path)
    app = apps(config_path, with_database=True)  # `newsletter serve` next to the list
    app.subscribe("reader@example.com")
    [link] = confirmation_links(moto_events.ses, "reader@example.com")
    assert app.request(link, {"confirm": "yes"})[0] == 200
    assert statuses(config_path) == {"reader@example.com": "subscribed"}
    assert cli(config_path, "unsubscribe", "reader@example.com").exit_code == 0
    summary = cli_json(config_path, "sync")  # the queued copy of the confirmation
    assert summary["duplicates"] == 1 and summary["applied"] == {}
    assert statuses(config_path) == {"reader@example.com": "unsubscribed"}


def mac_confirmation_token(address: str, issued: dt.datetime, key: SigningKey = KEY,
                           list_id: str = "top-ml-papers.newsletter.example.com") -> str:
    """A confirmation token as links mailed before the tokens were opaque carry it:
    base64url(address).base64url(issue time).MAC."""
    encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    seconds = int(issued.timestamp())
    mac_key = hmac.new(key.secret, b"newsletter subscribe confirmation v1", hashlib.sha256).digest()
    message = b"token\0" + list_id.encode() + b"\0" + address.encode() + b"\0" + str(seconds).encode()
    mac = hmac.new(mac_key, message, hashlib.sha256).digest()[:16]
    return f"{encode(address.encode())}.{encode(seconds.to_bytes(5, 'big'))}.{encode(mac)}"


def unsubscribe_by_one_click(app: WebApp, address: str) -> int:
    token = TokenSigner(app.config.list_id, KEY).token(address)
    return app.request(f"/unsubscribe/{token}", {"List-Unsubscribe": "One-Click"})[0]


def test_an_old_confirmation_link_posted_again_does_not_bring_back_a_reader_who_left(
        tmp_path, moto_events, secret, apps):
    editor = subscribe_config(tmp_path / "editor")
    app = apps(subscribe_config(tmp_path / "lambda"), with_database=False)
    app.subscribe("reader@example.com")
    [link] = confirmation_links(moto_events.ses, "reader@example.com")
    assert app.request(link, {"confirm": "yes"})[0] == 200
    cli_json(editor, "sync")
    assert statuses(editor) == {"reader@example.com": "subscribed"}
    assert unsubscribe_by_one_click(app, "reader@example.com") == 200
    cli_json(editor, "sync")
    assert statuses(editor) == {"reader@example.com": "unsubscribed"}

    # The same link an hour later (well within its 48 h): taken, queued, and it changes nothing,
    # for it was issued before the reader left.
    app.subscriptions.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert app.request(link, {"confirm": "yes"})[0] == 200
    assert cli_json(editor, "sync")["applied"] == {"subscribe_confirmed": 1}
    assert statuses(editor) == {"reader@example.com": "unsubscribed"}


def test_with_the_database_an_unsubscribe_applies_at_once_and_sync_only_deletes_its_queued_copy(
        tmp_path, moto_events, secret, apps):
    config_path = subscribe_config(tmp_path)
    app = apps(config_path, with_database=True)  # `newsletter serve` next to the list
    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0
    assert unsubscribe_by_one_click(app, "reader@example.com") == 200
    assert statuses(config_path) == {"reader@example.com": "unsubscribed"}
    queued = json.loads(moto_events.client("sqs").receive_message(
        QueueUrl=queue_url(moto_events), VisibilityTimeout=0)["Messages"][0]["Body"])
    # One event both ways: the queued copy has the id and time of the one applied here.
    with Store.open(load_config(config_path).database) as store:
        assert store.connection.execute("SELECT event_id FROM applied_event").fetchall() == [(queued["id"],)]
        assert store.get("reader@example.com").status_at.isoformat() == queued["at"]
    summary = cli_json(config_path, "sync")
    assert summary["duplicates"] == 1 and summary["applied"] == {}


def test_expired_forged_and_foreign_tokens_are_refused(tmp_path, moto_events, secret, apps):
    config_path = subscribe_config(tmp_path, confirm_hours=48)
    app = apps(config_path, with_database=True)
    config = load_config(config_path)
    tokens = ConfirmationTokens(config.list_id, KEY, dt.timedelta(hours=48))
    now = dt.datetime.now(dt.UTC)
    good = tokens.token("forger@example.com", now)
    middle = len(good) // 2
    forged = {
        "expired": tokens.token("late@example.com", now - dt.timedelta(hours=49)),
        "expired, mailed before the tokens were opaque": mac_confirmation_token("late@example.com",
                                                                                 now - dt.timedelta(hours=49)),
        "altered": good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1:],
        "cut short": good[:-4],
        "issued an hour from now": tokens.token("x@example.com", now + dt.timedelta(hours=1)),
        "another key": ConfirmationTokens(config.list_id, SigningKey(b"k" * 40, "other"), dt.timedelta(hours=48)).token(
            "forger@example.com", now),
        "another list": ConfirmationTokens("another.list", KEY, dt.timedelta(hours=48)).token("forger@example.com", now),
        "an unsubscribe token": TokenSigner(config.list_id, KEY).token("forger@example.com"),
        "an old token under another key": mac_confirmation_token("forger@example.com", now, SigningKey(b"k" * 40, "o")),
        "garbage": "a.b.c",
    }
    for what, token in forged.items():
        for fields in (None, {"confirm": "yes"}):
            status, page = app.request(f"/subscribe/confirm/{urllib.parse.quote(token)}", fields)
            expected = "확인 링크가 만료되었습니다" if what.startswith("expired") else "이 확인 링크는 올바르지 않습니다"
            assert status == 400 and expected in page, what
    assert queue_depth(moto_events) == 0 and statuses(config_path) == {}
    assert tokens.check(good, now).state is TokenState.VALID  # the untouched one is fine


def test_a_confirmation_link_does_not_show_the_address_and_old_links_work_until_they_expire(
        tmp_path, moto_events, secret, apps):
    config_path = subscribe_config(tmp_path, confirm_hours=48)
    app = apps(config_path, with_database=True)
    app.subscribe("reader@example.com")
    [link] = confirmation_links(moto_events.ses, "reader@example.com")
    token = link.rpartition("/")[2]
    for start in range(4):  # whatever base64 anyone can read out of it, from any offset
        chunk = token[start:len(token) - (len(token) - start) % 4]
        assert b"reader" not in base64.urlsafe_b64decode(chunk)
    assert len(token) < len(mac_confirmation_token("reader@example.com", dt.datetime.now(dt.UTC)))

    # A link mailed an hour before the upgrade, in the older form, still confirms.
    old = mac_confirmation_token("early@example.com", dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert app.request(f"/subscribe/confirm/{old}")[0] == 200
    assert app.request(f"/subscribe/confirm/{old}", {"confirm": "yes"})[0] == 200
    assert app.request(link, {"confirm": "yes"})[0] == 200
    assert statuses(config_path) == {"early@example.com": "subscribed", "reader@example.com": "subscribed"}


def test_twenty_posts_for_one_address_send_one_email_also_across_restarts(tmp_path, moto_events, secret, apps):
    config_path = subscribe_config(tmp_path, client_requests_per_hour=100)
    first = apps(config_path, with_database=True)
    answers = {first.subscribe("Target@Example.com" if n % 2 else "target@example.com") for n in range(10)}
    second = apps(config_path, with_database=True)  # a restart, or a second process
    answers |= {second.subscribe("target@example.com") for _ in range(10)}
    assert {status for status, _ in answers} == {200}
    assert len(confirmation_links(moto_events.ses, "target@example.com")) + len(
        confirmation_links(moto_events.ses, "Target@example.com")) == 1
    with Store.open(load_config(config_path).database) as store:  # no address in the clear
        rows = store.connection.execute("SELECT record FROM confirmation_request").fetchall()
    assert len(rows) == 1 and "target" not in rows[0][0]


def test_without_a_database_twenty_posts_give_one_email_per_process(tmp_path, moto_events, secret, apps):
    app = apps(subscribe_config(tmp_path, client_requests_per_hour=100), with_database=False)
    for _ in range(20):
        assert app.subscribe("target@example.com")[0] == 200
    assert len(moto_events.ses.messages()) == 1


def test_the_next_day_brings_one_more_email(tmp_path, moto_events, secret, apps):
    today = dt.datetime.now(dt.UTC)
    clock = {"now": today}
    app = apps(subscribe_config(tmp_path), with_database=True, clock=lambda: clock["now"])
    app.subscribe("target@example.com")
    app.subscribe("target@example.com")
    clock["now"] = today + dt.timedelta(days=1)
    app.subscribe("target@example.com")
    assert len(moto_events.ses.messages()) == 2


def test_the_honeypot_gets_the_usual_answer_and_no_email(tmp_path, moto_events, secret, apps):
    app = apps(subscribe_config(tmp_path), with_database=True)
    bot = app.subscribe("victim@example.com", website="http://spam.example")
    person = app.subscribe("someone@example.com")
    assert bot[0] == person[0] == 200
    assert bot[1].replace("victim@example.com", "X") == person[1].replace("someone@example.com", "X")
    assert [m["To"] for m in moto_events.ses.messages()] == ["someone@example.com"]


def test_the_answer_is_the_same_whether_or_not_the_address_is_on_the_list(tmp_path, moto_events, secret, apps):
    config_path = subscribe_config(tmp_path)
    app = apps(config_path, with_database=True)
    with Store.open(load_config(config_path).database) as store:
        for address, status in (("member@example.com", "subscribed"), ("bounced@example.com", "bounced"),
                                ("angry@example.com", "complained"), ("left@example.com", "unsubscribed")):
            store.set_status(address, status, "test", record_unknown=True)
    answers = {address: app.subscribe(address) for address in
               ("member@example.com", "bounced@example.com", "angry@example.com", "left@example.com", "new@example.com")}
    assert {(status, page.replace(address, "X")) for address, (status, page) in answers.items()} == {
        (200, answers["new@example.com"][1].replace("new@example.com", "X"))}
    # Mail goes only where a confirmation can change something; never to a bounce or a complaint.
    assert sorted(m["To"] for m in moto_events.ses.messages()) == ["left@example.com", "new@example.com"]


def test_a_client_past_its_limit_gets_429_and_nothing_is_sent(tmp_path, moto_events, secret, apps):
    app = apps(subscribe_config(tmp_path, client_requests_per_hour=3), with_database=True)
    statuses_seen = [app.subscribe(f"reader{n}@example.com")[0] for n in range(5)]
    assert statuses_seen == [200, 200, 200, 429, 429]
    assert len(moto_events.ses.messages()) == 3


@pytest.mark.parametrize("trusted", [True, False])
def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(tmp_path, moto_events, secret, apps, trusted):
    app = apps(subscribe_config(tmp_path, client_requests_per_hour=1), with_database=True,
               trusted_proxy="127.0.0.1" if trusted else None)
    first = app.subscribe("one@example.com", headers={"X-Forwarded-For": "203.0.113.5"})[0]
    again = app.subscribe("two@example.com", headers={"X-Forwarded-For": "203.0.113.5"})[0]
    other = app.subscribe("three@example.com", headers={"X-Forwarded-For": "198.51.100.7"})[0]
    # Untrusted, the header is dropped: every request is 127.0.0.1's, one bucket for all.
    assert (first, again, other) == ((200, 429, 200) if trusted else (200, 429, 429))


def test_a_large_body_is_refused_before_it_is_read(tmp_path, moto_events, secret, apps):
    app = apps(subscribe_config(tmp_path), with_database=True)
    body = urllib.parse.urlencode({"email": "big@example.com", "website": "", "pad": "x" * 5000}).encode()
    status, _ = app.request("/subscribe/", body=body)
    assert status == 400
    assert moto_events.ses.messages() == []


def test_what_a_reader_types_is_escaped_on_every_page(tmp_path, moto_events, secret, apps):
    app = apps(subscribe_config(tmp_path), with_database=True)
    typed = '"><script>alert(1)</script><img src=x onerror=alert(2)>@example.com'
    status, page = app.subscribe(typed)
    assert status == 400 and "이메일 주소를 확인해 주세요" in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    status, page = app.request("/subscribe/confirm/%3Cscript%3Ealert(1)%3C%2Fscript%3E.a.b")
    assert status == 400 and "<script>alert" not in page
    assert moto_events.ses.messages() == []


def test_sync_never_re_adds_a_bounced_or_complained_address_and_an_unsubscribed_one_only_after_leaving(
        tmp_path, moto_events):
    config_path = subscribe_config(tmp_path)
    config = load_config(config_path)
    with Store.open(config.database) as store:
        for address, status in (("bounced@example.com", "bounced"), ("angry@example.com", "complained"),
                                ("back@example.com", "unsubscribed"), ("stale@example.com", "unsubscribed")):
            store.set_status(address, status, "test", record_unknown=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for address in ("bounced@example.com", "angry@example.com", "back@example.com"):
        put_event(config, SubscribeConfirmed(address, confirmed_at=now + dt.timedelta(seconds=5)))
    put_event(config, SubscribeConfirmed("stale@example.com", confirmed_at=now - dt.timedelta(days=1)))
    cli_json(config_path, "sync")
    assert statuses(config_path) == {"bounced@example.com": "bounced", "angry@example.com": "complained",
                                     "back@example.com": "subscribed", "stale@example.com": "unsubscribed"}


def test_the_form_needs_the_database_or_the_queue(tmp_path):
    config = load_config(subscribe_config(tmp_path, events=False))
    with pytest.raises(Exception, match="needs the database or the event queue"):
        Subscriptions(config, KEY, database=None, queue=None, new_transport=lambda: None)


def test_on_lambda_the_same_handler_serves_the_form_and_the_confirmation(tmp_path, moto_events, secret, monkeypatch):
    """The function URL's payload (AWS's documented example, tests/data/events) through
    `newsletter.web.lambda_handler`: no database, the queue is the record."""
    import json

    from newsletter.lambda_wsgi import _apps
    from newsletter.web import lambda_handler

    example = json.loads((Path(__file__).parent / "data" / "events" / "lambda-function-url-request.json").read_text())
    config_path = subscribe_config(tmp_path)
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(config_path))
    monkeypatch.setitem(_apps, str(config_path), None)

    def call(path: str, body: str) -> dict:
        event = {**example, "rawPath": path, "rawQueryString": "", "body": body,
                 "headers": {"content-type": "application/x-www-form-urlencoded", "host": "example.lambda-url.aws"}}
        return lambda_handler(event, None)

    answer = call("/subscribe/", "email=reader%40example.com&website=")
    assert answer["statusCode"] == 200 and "메일함을 확인해 주세요" in answer["body"]
    [link] = confirmation_links(moto_events.ses, "reader@example.com")
    assert call(link, "confirm=yes")["statusCode"] == 200
    assert queue_depth(moto_events) == 1
    assert cli_json(config_path, "sync")["applied"] == {"subscribe_confirmed": 1}
    assert statuses(config_path) == {"reader@example.com": "subscribed"}


@pytest.mark.parametrize("table, message", [
    ('[subscribe]\nurl = "https://newsletter.example.com/join/"', "subscribe.url: must end with '/subscribe/'"),
    ("[subscribe]\nconfirm_hours = 2", "subscribe.url: required key is missing"),
    ('[subscribe]\nurl = "https://newsletter.example.com/subscribe/"\nconfirm_hours = 0', "subscribe.confirm_hours"),
    ('[subscribe]\nurl = "https://newsletter.example.com/subscribe/"\nlimit = 3', "subscribe.limit: unknown key"),
])
def test_a_bad_subscribe_table_is_one_clear_error(tmp_path, table, message):
    from newsletter.errors import ConfigError

    path = write_config(tmp_path / "newsletter.toml")
    path.write_text(path.read_text(encoding="utf-8") + "\n" + table + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


@pytest.mark.parametrize("with_database", [True, False])
def test_twenty_posts_at_once_for_one_address_send_one_email(tmp_path, moto_events, secret, apps, with_database):
    from concurrent.futures import ThreadPoolExecutor

    config_path = subscribe_config(tmp_path, client_requests_per_hour=100)
    # With the database, two servers share it (as two processes would); without, one process.
    servers = [apps(config_path, with_database=with_database) for _ in range(2 if with_database else 1)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda n: servers[n % len(servers)].subscribe("target@example.com"), range(20)))
    assert {status for status, _ in answers} == {200}
    assert len(moto_events.ses.messages()) == 1


# --- tried locally: the pages post back to where they were served ---------------------------------


class _FormActions(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.actions: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "form":
            self.actions.append(dict(attrs).get("action") or "")


def form_target(page_url: str, page: str) -> str:
    """Where the page's form posts, resolved as a browser resolves it."""
    parser = _FormActions()
    parser.feed(page)
    [action] = parser.actions
    return urllib.parse.urljoin(page_url, action)


@pytest.mark.parametrize("path", ["/subscribe/", "/subscribe", "/newsletter/subscribe/", "/a/b/subscribe"])
def test_the_form_served_on_127_0_0_1_posts_back_to_it_not_to_the_public_url(tmp_path, moto_events, secret, apps, path):
    app = apps(subscribe_config(tmp_path), with_database=True)  # subscribe.url is https://newsletter.example.com/…
    status, page = app.request(path)
    assert status == 200
    target = form_target(app.base + path, page)
    assert target == app.base + path.rstrip("/") + "/"
    status, sent = app.request(target.removeprefix(app.base), {"email": "reader@example.com", "website": ""})
    assert status == 200 and "메일함을 확인해 주세요" in sent
    status, again = app.request(target.removeprefix(app.base), {"email": "not an address", "website": ""})
    assert status == 400 and form_target(target, again) == target  # the form shown again posts there too
    assert len(confirmation_links(moto_events.ses, "reader@example.com")) == 1


def test_an_expired_link_s_form_posts_to_the_subscribe_page_it_belongs_to(tmp_path, moto_events, secret, apps):
    config_path = subscribe_config(tmp_path, confirm_hours=1)
    app = apps(config_path, with_database=True)
    config = load_config(config_path)
    old = ConfirmationTokens(config.list_id, KEY, dt.timedelta(hours=1)).token(
        "late@example.com", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    for prefix in ("", "/newsletter"):
        for tail in ("", "/"):
            page_url = f"{app.base}{prefix}/subscribe/confirm/{old}{tail}"
            status, page = app.request(page_url.removeprefix(app.base))
            assert status == 400 and "확인 링크가 만료되었습니다" in page
            assert form_target(page_url, page) == f"{app.base}{prefix}/subscribe/"


def test_a_confirm_post_without_the_button_s_field_shows_the_button_and_changes_nothing(
        tmp_path, moto_events, secret, apps):
    app = apps(subscribe_config(tmp_path), with_database=True)
    app.subscribe("reader@example.com")
    [link] = confirmation_links(moto_events.ses, "reader@example.com")
    for body in ({}, {"confirm": "no"}):  # e.g. `curl -X POST LINK`
        status, page = app.request(link, body, method="POST")
        assert status == 200 and "구독을 확인하시겠습니까?" in page and "올바르지 않습니다" not in page
    assert queue_depth(moto_events) == 0 and statuses(tmp_path / "newsletter.toml") == {}
    assert app.request(link, {"confirm": "yes"})[0] == 200
    assert statuses(tmp_path / "newsletter.toml") == {"reader@example.com": "subscribed"}


def test_in_chromium_the_form_tried_on_127_0_0_1_subscribes(tmp_path, moto_events, secret, apps, browser):
    """The page's Content-Security-Policy allows posting only to its own origin ("form-action
    'self'"): a form aimed at the public URL would not even leave the browser."""
    app = apps(subscribe_config(tmp_path), with_database=True)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.goto(app.base + "/subscribe/")
    page.fill("#subscribe-email", "reader@example.com")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url == app.base + "/subscribe/"
    assert "메일함을 확인해 주세요" in page.locator("h1").inner_text()
    context.close()
    assert len(moto_events.ses.messages()) == 1


_SEGMENT = st.one_of(
    st.text(alphabet=st.characters(categories=("L", "N"), include_characters="-_~%.\\"), min_size=1, max_size=8),
    st.sampled_from([".", "..", "%2e", "%2E%2e", ".%2E", "%2F", "a%2Fsubscribe"]))


@settings(max_examples=300, deadline=None)
@given(prefix=st.lists(_SEGMENT, max_size=4), confirm=st.booleans(), slash=st.booleans(),
       token=st.one_of(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-%", min_size=1, max_size=20), _SEGMENT))
@example(prefix=[], confirm=True, slash=True, token=".")  # /subscribe/confirm/./ posted to the site's root
@example(prefix=["newsletter"], confirm=True, slash=False, token="..")
@example(prefix=["x"], confirm=True, slash=True, token="%2e")
@example(prefix=["subscribe%2Fconfirm"], confirm=False, slash=True, token="t")
def test_the_form_action_resolves_to_the_subscribe_page_under_any_prefix(prefix, confirm, slash, token):
    """`path` as the browser has it (percent-encoded); where the form posts, resolved by RFC 3986
    (urljoin) and, for the dot-segments browsers also find in %2e, with those decoded first: the
    subscribe page the path names, or the path is not routed at all."""
    base = "/".join(["", *prefix, "subscribe"])
    path = base + (f"/confirm/{token}" if confirm else "") + ("/" if slash else "")
    kind = "confirm" if confirm else "form"
    if route(path) != (kind, urllib.parse.unquote(token) if confirm else None):
        return  # a path the app does not route this way (e.g. the token itself is "subscribe")
    expected = urllib.parse.urljoin("https://host.example", base + "/")
    for page in (path, path.replace("%2e", ".").replace("%2E", ".")):
        assert urllib.parse.urljoin("https://host.example" + page, form_action(path, kind)) == expected


@pytest.mark.parametrize("path", ["/x/subscribe%2F", "/x/subscribe%2Fconfirm%2F{expired}",
                                  "/subscribe/confirm/%2e/", "/subscribe/confirm/{expired}/..", "/subscribe/a\\b/"])
def test_a_path_whose_segments_do_not_resolve_one_for_one_gets_no_subscribe_form(
        tmp_path, moto_events, secret, apps, path):
    """Sent as is (as curl --path-as-is would; a browser removes dot-segments itself, and keeps an
    encoded slash inside its segment): the page there must have no form that posts anywhere but
    a subscribe page. Such a path is not the subscribe app's: the unsubscribe app's 400."""
    import http.client

    config_path = subscribe_config(tmp_path, confirm_hours=1)
    app = apps(config_path, with_database=True)
    expired = ConfirmationTokens(load_config(config_path).list_id, KEY, dt.timedelta(hours=1)).token(
        "late@example.com", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    path = path.format(expired=expired)
    connection = http.client.HTTPConnection("127.0.0.1", app.server.effective_port, timeout=10)
    connection.request("GET", path)
    answer = connection.getresponse()
    page = answer.read().decode("utf-8")
    connection.close()
    parser = _FormActions()
    parser.feed(page)
    targets = [urllib.parse.urljoin(app.base + path, action) for action in parser.actions]
    assert all(urllib.parse.urlsplit(target).path.endswith("/subscribe/") for target in targets), (answer.status, targets)
    assert answer.status == 400 and "구독하기" not in page and "만료" not in page  # not a subscribe page
