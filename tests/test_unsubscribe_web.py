"""Unsubscribe tokens and keys, and the one-click endpoint over real HTTP (waitress on 127.0.0.1)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import http.client
import io
import os
import re
import select
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.store import Store
from newsletter.unsubscribe import (
    DEVELOPMENT_KEY,
    SECRET_ENV,
    SigningKey,
    TokenSigner,
    UnsubscribeLinks,
    load_signing_key,
)
from newsletter.web import UnsubscribeApp, serve_in_thread

SECRET = "k" * 40
LIST_ID = "top-ml-papers.newsletter.example.com"
REAL_KEY = SigningKey(SECRET.encode(), "test")


@pytest.fixture
def config(newsletter_config: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    return load_config(newsletter_config)


# Tokens and keys


def mac_token(address: str, key: SigningKey = REAL_KEY, list_id: str = LIST_ID) -> str:
    """A token as emails sent before the tokens were opaque carry it: base64url(address).MAC."""
    encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    mac = hmac.new(key.secret, list_id.encode() + b"\0" + address.encode(), hashlib.sha256).digest()[:16]
    return f"{encode(address.encode())}.{encode(mac)}"


def readable_in(token: str) -> str:
    """Whatever anyone can decode out of a token without the key."""
    pieces = []
    for piece in re.split(r"[.]", token.removeprefix("dev-")):
        for start in range(4):  # base64 read from any offset
            chunk = piece[start:len(piece) - (len(piece) - start) % 4]  # whole 4-character groups
            pieces.append(base64.urlsafe_b64decode(chunk).decode("latin-1"))
    return "".join(pieces)


def test_a_token_opens_to_its_address_only_with_the_key_and_does_not_show_it() -> None:
    signer = TokenSigner(LIST_ID, REAL_KEY)
    token = signer.token("Kim@Example.com")
    assert token == signer.token("kim@example.com")  # the same subscriber, the same token
    assert signer.address(token) == "kim@example.com"
    assert "kim" not in readable_in(token).lower() and "example" not in readable_in(token).lower()
    assert len(token) <= len(mac_token("kim@example.com"))  # no longer in the List-Unsubscribe header
    for position in range(len(token)):  # the last character too: its unused bits spell no second token
        for other in {"A", "B", "-"} - {token[position]}:
            assert signer.address(token[:position] + other + token[position + 1:]) is None
    assert signer.address(token[:-1]) is None and signer.address(token + "A") is None
    assert TokenSigner("another.list", REAL_KEY).address(token) is None
    assert TokenSigner(LIST_ID, SigningKey(b"x" * 40, "other")).address(token) is None
    # A confirmation link's token is sealed under another key: it never unsubscribes anyone.
    from newsletter.subscribe import ConfirmationTokens
    confirmation = ConfirmationTokens(LIST_ID, REAL_KEY, dt.timedelta(hours=48)).token("kim@example.com", dt.datetime.now(dt.UTC))
    assert signer.address(confirmation) is None
    for malformed in ("", ".", "abc", "a.b.c", "%%%.%%%", "dev-" + token, "x" * 5000, token + "=", " " + token):
        assert signer.address(malformed) is None


def test_links_mailed_before_the_tokens_were_opaque_still_unsubscribe(endpoint) -> None:
    signer = endpoint.signer
    old = mac_token("kim@example.com")
    assert signer.address(old) == "kim@example.com"
    other = mac_token("lee@example.com").split(".")[0]
    assert signer.address(f"{other}.{old.split('.')[1]}") is None  # another address under kim's MAC
    assert signer.address(mac_token("kim@example.com", list_id="another.list")) is None
    assert signer.address(mac_token("kim@example.com", key=SigningKey(b"x" * 40, "other"))) is None
    assert signer.address(mac_token("Kim@example.com")) is None  # never issued: tokens were made for the key
    assert endpoint.one_click(old)[0] == 200
    assert endpoint.subscribed() == {"lee@example.com"}


def test_development_tokens_are_marked_and_rejected_by_a_real_key() -> None:
    dev_token = TokenSigner(LIST_ID, DEVELOPMENT_KEY).token("a@example.com")
    assert dev_token.startswith("dev-")
    assert TokenSigner(LIST_ID, DEVELOPMENT_KEY).address(dev_token) == "a@example.com"
    assert TokenSigner(LIST_ID, REAL_KEY).address(dev_token) is None


def test_links_for_a_recipient(config) -> None:
    https, mailto = UnsubscribeLinks(config, REAL_KEY).for_address("a@example.com")
    token = TokenSigner(config.list_id, REAL_KEY).token("a@example.com")
    assert https == f"https://newsletter.example.com/unsubscribe/{token}"
    assert mailto == f"mailto:{config.unsubscribe_mailto}?subject=unsubscribe-{token}"
    assert urllib.parse.quote(token, safe="") == token  # nothing to escape in a URL or a subject


def test_the_key_comes_from_the_environment_then_the_key_file(config, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    key = load_signing_key(config, allow_development=False)
    assert (key.secret, key.source, key.is_development) == (SECRET.encode(), f"${SECRET_ENV}", False)
    assert SECRET not in repr(key)
    monkeypatch.delenv(SECRET_ENV)
    key_file = tmp_path / "unsubscribe.key"
    key_file.write_text("f" * 48 + "\n")
    from_file = load_signing_key(dataclasses.replace(config, unsubscribe_key_file=key_file), allow_development=False)
    assert (from_file.secret, from_file.source) == (b"f" * 48, str(key_file))


def test_a_real_send_refuses_to_start_without_a_real_key(config, monkeypatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_signing_key(config, allow_development=False)
    assert "unsubscribe.key_file" in str(missing.value) and str(config.path) in str(missing.value)
    assert load_signing_key(config, allow_development=True).is_development

    absent = dataclasses.replace(config, unsubscribe_key_file=tmp_path / "absent.key")
    with pytest.raises(ConfigError, match=r"unsubscribe\.key_file: cannot read key file .*absent\.key"):
        load_signing_key(absent, allow_development=True)
    short = tmp_path / "short.key"
    short.write_text("too short")
    with pytest.raises(ConfigError, match="too short"):
        load_signing_key(dataclasses.replace(config, unsubscribe_key_file=short), allow_development=False)
    monkeypatch.setenv(SECRET_ENV, DEVELOPMENT_KEY.secret.decode())
    with pytest.raises(ConfigError, match="public development key"):
        load_signing_key(config, allow_development=False)


# The endpoint over HTTP


@pytest.fixture
def endpoint(tmp_path: Path):
    """A waitress server on a free port of 127.0.0.1 with a two-address list."""
    database = tmp_path / "list.db"
    with Store.open(database) as store:
        for address in ("kim@example.com", "lee@example.com"):
            store.set_status(address, "subscribed", None, record_unknown=True)
    signer = TokenSigner(LIST_ID, REAL_KEY)
    server = serve_in_thread(UnsubscribeApp(database, signer, "이번 주의 주요 ML 논문"))
    yield Endpoint(server.effective_port, signer, database)
    server.close()


@dataclasses.dataclass
class Endpoint:
    port: int
    signer: TokenSigner
    database: Path

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        headers = {"Content-Type": content_type} if content_type else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        result = (response.status, response.read(), dict(response.getheaders()))
        connection.close()
        return result

    def one_click(self, token: str):
        return self.request("POST", f"/unsubscribe/{token}", b"List-Unsubscribe=One-Click",
                            "application/x-www-form-urlencoded")

    def status(self, address: str) -> str | None:
        with Store.open(self.database) as store:
            found = store.get(address)
            return found.status if found else None

    def subscribed(self) -> set[str]:
        with Store.open(self.database) as store:
            return {s.address for s in store.subscribed()}


def test_one_click_post_unsubscribes_and_the_address_is_never_selected_again(endpoint: Endpoint) -> None:
    status, body, headers = endpoint.one_click(endpoint.signer.token("kim@example.com"))
    assert status == 200
    assert "구독이 취소되었습니다" in body.decode() and "You have been unsubscribed" in body.decode()
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert endpoint.status("kim@example.com") == "unsubscribed"
    assert endpoint.subscribed() == {"lee@example.com"}
    with Store.open(endpoint.database) as store:
        assert store.get("kim@example.com").reason == "one-click (List-Unsubscribe-Post)"


def test_unsubscribing_twice_is_fine(endpoint: Endpoint) -> None:
    token = endpoint.signer.token("kim@example.com")
    first, second = endpoint.one_click(token), endpoint.one_click(token)
    assert (first[0], second[0]) == (200, 200) and first[1] == second[1]
    assert endpoint.status("kim@example.com") == "unsubscribed"


def test_multipart_one_click_post_is_accepted(endpoint: Endpoint) -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()
    status, _, _ = endpoint.request("POST", "/" + endpoint.signer.token("lee@example.com"), body,
                                    f"multipart/form-data; boundary={boundary}")
    assert status == 200 and endpoint.status("lee@example.com") == "unsubscribed"


def test_get_and_head_show_a_confirm_page_and_change_nothing(endpoint: Endpoint) -> None:
    path = "/unsubscribe/" + endpoint.signer.token("kim@example.com")
    status, body, _ = endpoint.request("GET", path)
    page = body.decode()
    assert status == 200
    assert "구독을 취소하시겠습니까?" in page and "Do you want to unsubscribe" in page
    assert '<form method="post">' in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert endpoint.request("HEAD", path)[:2] == (200, b"")
    assert endpoint.status("kim@example.com") == "subscribed"
    # The page's button posts the form as a browser would.
    status, _, _ = endpoint.request("POST", path, b"List-Unsubscribe=One-Click&via=page",
                                    "application/x-www-form-urlencoded")
    assert status == 200
    with Store.open(endpoint.database) as store:
        assert store.get("kim@example.com").reason == "unsubscribe page"


def test_forged_and_malformed_tokens_get_the_same_400_whether_or_not_the_address_exists(endpoint: Endpoint) -> None:
    forger = TokenSigner(LIST_ID, SigningKey(b"guessed" * 6, "forger"))
    answers = [
        endpoint.one_click(forger.token("kim@example.com")),  # on the list
        endpoint.one_click(forger.token("nobody@example.com")),  # not on the list
        endpoint.one_click("not-a-token"),
        endpoint.one_click(""),
        endpoint.request("GET", "/unsubscribe/" + forger.token("kim@example.com")),
        endpoint.request("GET", "/unsubscribe/" + forger.token("nobody@example.com")),
    ]
    assert {status for status, _, _ in answers} == {400}
    assert len({body for _, body, _ in answers}) == 1
    assert "올바르지 않습니다" in answers[0][1].decode()
    assert endpoint.subscribed() == {"kim@example.com", "lee@example.com"}
    with Store.open(endpoint.database) as store:
        assert store.get("nobody@example.com") is None


def test_a_post_without_the_one_click_field_or_with_another_method_changes_nothing(endpoint: Endpoint) -> None:
    path = "/" + endpoint.signer.token("kim@example.com")
    assert endpoint.request("POST", path, b"", "application/x-www-form-urlencoded")[0] == 400
    assert endpoint.request("POST", path, b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded")[0] == 400
    status, _, headers = endpoint.request("PUT", path, b"List-Unsubscribe=One-Click")
    assert status == 405 and headers["Allow"] == "GET, HEAD, POST"
    assert endpoint.status("kim@example.com") == "subscribed"


def test_an_unsubscribe_the_list_cannot_take_asks_the_reader_to_try_again(tmp_path: Path) -> None:
    # No queue, and a database that cannot be opened (a folder stands where the file should be):
    # a 503 with Retry-After, not a 500.
    signer = TokenSigner(LIST_ID, REAL_KEY)
    database = tmp_path / "list.db"
    database.mkdir()
    server = serve_in_thread(UnsubscribeApp(database, signer, "이번 주의 주요 ML 논문"))
    try:
        endpoint = Endpoint(server.effective_port, signer, database)
        status, _body, headers = endpoint.one_click(signer.token("kim@example.com"))
    finally:
        server.close()
    assert status == 503 and headers["Retry-After"] == "60"


def test_a_genuine_token_for_an_address_not_on_the_list_records_the_opt_out(endpoint: Endpoint) -> None:
    assert endpoint.one_click(endpoint.signer.token("removed@example.com"))[0] == 200
    assert endpoint.status("removed@example.com") == "unsubscribed"


def test_the_unsubscribe_command_takes_a_token_from_a_mailto_subject(newsletter_config: Path, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = load_config(newsletter_config)
    _, mailto = UnsubscribeLinks(config, REAL_KEY).for_address("kim@example.com")
    subject = urllib.parse.parse_qs(urllib.parse.urlsplit(mailto).query)["subject"][0]
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(newsletter_config), "unsubscribe", subject])
    assert result.exit_code == 0, result.output
    assert "kim@example.com was not on the list; recorded as unsubscribed" in result.stdout
    forged = runner.invoke(main, ["--config", str(newsletter_config), "unsubscribe", subject[:-3] + "xyz"])
    assert forged.exit_code == 1 and "not a valid unsubscribe token" in forged.stderr


@pytest.fixture
def served(newsletter_config: Path):
    """`newsletter serve` in its own process, as an editor starts it, with kim on the list."""
    env = {**os.environ, SECRET_ENV: SECRET}
    database = newsletter_config.parent / "newsletter.db"
    with Store.open(database) as store:
        store.set_status("kim@example.com", "subscribed", None, record_unknown=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(newsletter_config), "serve", "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        banner = server.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/TOKEN \(key: \$NEWSLETTER_SECRET\)", banner)
        assert found, banner
        yield Endpoint(int(found.group(1)), TokenSigner(LIST_ID, REAL_KEY), database)
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()


def test_newsletter_serve_runs_the_endpoint_on_127_0_0_1(served: Endpoint) -> None:
    """The real command in its own process; one-click POST to it."""
    assert served.one_click(served.signer.token("kim@example.com"))[0] == 200
    assert served.subscribed() == set()


def raw_request(port: int, head: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=15)  # the test's patience
    connection.sendall(head.encode("latin-1"))
    return connection


def test_serve_refuses_a_200_mb_content_length_without_reading_the_body(served: Endpoint) -> None:
    path = "/unsubscribe/" + served.signer.token("kim@example.com")
    connection = raw_request(served.port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                          "application/x-www-form-urlencoded\r\nContent-Length: 200000000\r\n\r\n")
    with connection:  # not one byte of the body is sent: the answer comes, and then the end
        answer = b"".join(iter(lambda: connection.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert served.status("kim@example.com") == "subscribed"
    assert served.one_click(served.signer.token("kim@example.com"))[0] == 200  # still serving


def test_serve_stops_reading_a_chunked_body_at_the_cap(served: Endpoint) -> None:
    path = "/unsubscribe/" + served.signer.token("kim@example.com")
    connection = raw_request(served.port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent, answer = 0, b""
    chunk = b"10000\r\n" + b"List-Unsubscribe=One-Click&" * 2427 + b"x" * 7 + b"\r\n"  # 0x10000 bytes
    with connection:
        try:
            while sent < 200_000_000 and not select.select([connection], [], [], 0)[0]:
                connection.sendall(chunk)
                sent += 0x10000
            answer = connection.recv(4096)
        except (ConnectionResetError, BrokenPipeError):  # closed with what was sent unread: a reset, no answer
            pass
    # The server closed the connection once the body passed the cap (what was sent beyond it sat
    # in the sockets' buffers), and answered 413 if the answer outran the reset.
    assert sent < 16_000_000
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413 ")
    assert served.status("kim@example.com") == "subscribed"


def test_serve_answers_while_120_idle_connections_are_open_and_closes_them(served: Endpoint) -> None:
    idle = [socket.create_connection(("127.0.0.1", served.port), timeout=60) for _ in range(120)]
    try:
        status, _, _ = served.one_click(served.signer.token("kim@example.com"))  # http.client, 15 s patience
        assert status == 200 and served.subscribed() == set()
        for connection in idle:  # the server ends each once it has been idle a while
            assert connection.recv(1) == b""
    finally:
        for connection in idle:
            connection.close()


def test_newsletter_serve_refuses_the_development_key_unless_asked(newsletter_config: Path, monkeypatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    result = CliRunner().invoke(main, ["--config", str(newsletter_config), "serve"])
    assert result.exit_code == 1 and "no unsubscribe signing key" in result.stderr


@given(st.emails())
def test_every_address_has_a_token_that_leads_back_to_it(address: str) -> None:
    signer = TokenSigner(LIST_ID, REAL_KEY)
    token = signer.token(address)
    assert signer.address(token) == address.casefold()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert address.casefold().encode() not in readable_in(token).encode("latin-1")
    assert signer.address(mac_token(address.casefold())) == address.casefold()


# Hostile request bodies: a short 400 page, never a 500, and nothing changed


def _multipart(boundary: str, *parts: bytes) -> bytes:
    return b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts) + \
        b"--" + boundary.encode() + b"--\r\n"


ONE_CLICK_PART = b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click'
MALFORMED_BODIES = {
    "unknown charset": ("multipart/form-data; boundary=b", _multipart(
        "b", b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
             b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nOne-Click?")),
    "nested multipart": ("multipart/form-data; boundary=b", _multipart(
        "b", b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
             b"Content-Type: multipart/mixed; boundary=c\r\n\r\n" + _multipart("c", ONE_CLICK_PART))),
    "message/rfc822": ("multipart/form-data; boundary=b", _multipart(
        "b", b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
             b"Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nOne-Click")),
    "no boundary": ("multipart/form-data", _multipart("b", ONE_CLICK_PART)),
    "bad transfer encoding": ("multipart/form-data; boundary=b", _multipart(
        "b", b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
             b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!")),
    "rfc 2231 name": ("multipart/form-data; boundary=b", _multipart(
        "b", b"Content-Disposition: form-data; name*=no-such-charset''List-Unsubscribe\r\n\r\nNope")),
    "garbage": ("multipart/form-data; boundary=b", bytes(range(256)) * 4),
    "bad utf-8 form": ("application/x-www-form-urlencoded", b"List-Unsubscribe=\xff\xfe"),
}


@pytest.mark.parametrize("case", MALFORMED_BODIES, ids=list(MALFORMED_BODIES))
def test_a_malformed_post_gets_a_short_400_page_and_changes_nothing(endpoint: Endpoint, case: str) -> None:
    content_type, body = MALFORMED_BODIES[case]
    status, page, headers = endpoint.request("POST", "/" + endpoint.signer.token("kim@example.com"), body, content_type)
    assert status == 400
    assert "올바르지 않습니다" in page.decode() and headers["Content-Type"] == "text/html; charset=utf-8"
    assert endpoint.status("kim@example.com") == "subscribed"


def test_one_click_under_a_charset_label_nobody_knows_still_unsubscribes(endpoint: Endpoint) -> None:
    body = _multipart("b", b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
                           b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nOne-Click")
    token = endpoint.signer.token("kim@example.com")
    assert endpoint.request("POST", "/" + token, body, "multipart/form-data; boundary=b")[0] == 200
    assert endpoint.status("kim@example.com") == "unsubscribed"


@given(
    content_type=st.sampled_from(["multipart/form-data; boundary=b", "multipart/form-data",
                                  'multipart/form-data; boundary="b"; charset=x', "multipart/mixed; boundary=b"]),
    parts=st.lists(st.lists(st.sampled_from([
        b"Content-Disposition: form-data; name=\"List-Unsubscribe\"", b"Content-Disposition: form-data; name*=x''y",
        b"Content-Type: text/plain; charset=utf-7", b"Content-Type: message/rfc822", b"Content-Type: multipart/mixed",
        b"Content-Transfer-Encoding: quoted-printable", b"Content-Transfer-Encoding: x-uuencode", b"", b"One-Click",
        b"--b", b"\xff\xfe", b"=?utf-8?b?T25lLUNsaWNr?=", b"\r\n", b"Content-Type: text/plain; charset=\"\"",
    ]), max_size=8).map(b"\r\n".join), max_size=4),
)
def test_no_multipart_body_makes_the_endpoint_fail(tmp_path_factory, content_type: str, parts: list[bytes]) -> None:
    database = tmp_path_factory.getbasetemp() / "fuzz.db"
    app = UnsubscribeApp(database, TokenSigner(LIST_ID, REAL_KEY), "뉴스레터")
    body = _multipart("b", *parts)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/" + app.signer.token("kim@example.com"),
               "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    statuses = []
    app(environ, lambda status, headers: statuses.append(status))
    assert statuses[0] in ("200 OK", "400 Bad Request")


def test_serve_on_a_port_in_use_is_one_line(newsletter_config: Path, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--config", str(newsletter_config), "serve", "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: the port is in use; stop what uses it " \
        "or pick another port (--port)\n"
