"""Composed messages: the sample issue rendered for real, personalised, parsed back."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import html
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.compose import GMAIL_CLIP_BYTES, MAX_LINE_BYTES, MessageTemplate
from newsletter.config import load_config
from newsletter.errors import MessageError, TemplateError
from newsletter.model import PREFERENCES_URL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER
from newsletter.parse import parse_issue
from newsletter.render import render_issue

ROOT = Path(__file__).resolve().parents[1]
URL = "https://newsletter.example.com/unsubscribe/TOKEN-1?a=1&b=2"
MAILTO = "mailto:unsubscribe@newsletter.example.com?subject=unsubscribe-TOKEN-1"
PREFERENCES = "https://newsletter.example.com/preferences/PTOKEN-1"


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "newsletter.toml")


@pytest.fixture(scope="module")
def rendered(config):
    return render_issue(parse_issue(ROOT / "issues" / "2023-10-16.md"), config)


@pytest.fixture(scope="module")
def template(rendered, config):
    return MessageTemplate(rendered, config)


def personal(template, address="minji.kim@example.com", name="김민지", url=URL, mailto=MAILTO, preferences=PREFERENCES):
    return template.message_for(address, name=name, unsubscribe_url=url, unsubscribe_mailto=mailto,
                                preferences_url=preferences)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def parse_headers(raw: bytes) -> email.message.EmailMessage:
    return BytesHeaderParser(policy=email.policy.default).parsebytes(raw)


def test_message_parses_back_with_every_header(template, rendered, config):
    message = parse(personal(template).raw)
    assert message["To"] == "김민지 <minji.kim@example.com>"
    assert message["To"].addresses[0].display_name == "김민지"
    assert message["From"] == config.from_address
    assert message["Reply-To"] == config.reply_to
    assert message["Subject"] == rendered.subject
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@newsletter.example.com>")
    assert message["List-Id"] == f"{config.name} <{config.list_id}>"
    assert message["List-Unsubscribe"] == f"<{URL}>, <{MAILTO}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"


def test_both_parts_are_base64_utf8_and_decode_to_the_rendered_issue(template, rendered):
    message = parse(personal(template).raw)
    text_part, html_part = message.iter_parts()
    assert [part.get_content_type() for part in (text_part, html_part)] == ["text/plain", "text/html"]
    for part in (text_part, html_part):
        assert part["Content-Transfer-Encoding"] == "base64"
        assert part.get_content_charset() == "utf-8"
    assert text_part.get_content() == rendered.text.replace(UNSUBSCRIBE_URL_PLACEHOLDER, URL).replace(
        PREFERENCES_URL_PLACEHOLDER, PREFERENCES)
    # In HTML the URL sits in an attribute, so its & must arrive escaped.
    assert html_part.get_content() == rendered.html.replace(UNSUBSCRIBE_URL_PLACEHOLDER, html.escape(URL)).replace(
        PREFERENCES_URL_PLACEHOLDER, PREFERENCES)
    assert PREFERENCES_URL_PLACEHOLDER in rendered.html and PREFERENCES_URL_PLACEHOLDER in rendered.text
    assert "&amp;" in html.escape(URL)


def test_lines_are_crlf_and_at_most_998_bytes_even_for_long_names(template, rendered):
    assert max(map(len, rendered.html.encode().splitlines())) > MAX_LINE_BYTES  # rendered HTML has long lines
    raw = personal(template, name="아주 긴 이름을 가진 구독자 " * 12).raw
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
    assert max(map(len, lines)) <= MAX_LINE_BYTES
    # Several encoded words. CPython's address parser puts a space between adjacent encoded words
    # in a name, against RFC 2047 6.2; its RFC-following decoder shows the name is intact.
    folded_to = raw.split(b"\r\nMessage-ID:")[0].decode().removeprefix("To: ")
    encoded_name = folded_to.rsplit(" <", 1)[0]
    assert str(make_header(decode_header(encoded_name))) == ("아주 긴 이름을 가진 구독자 " * 12).strip()


def test_each_recipient_gets_their_own_url_and_message_id_and_nothing_else_changes(template):
    first = personal(template, "a@example.org", None, URL, MAILTO)
    second = personal(template, "b@example.org", None, URL.replace("TOKEN-1", "TOKEN-2"), MAILTO.replace("1", "2"))
    one, two = parse(first.raw), parse(second.raw)
    assert (first.recipient, second.recipient) == ("a@example.org", "b@example.org")
    assert one["To"] == "a@example.org" and two["To"] == "b@example.org"
    assert one["Message-ID"] != two["Message-ID"]
    assert "TOKEN-2" in two.get_body(("html",)).get_content() and "TOKEN-1" not in two.as_string()
    per_recipient = {"To", "Message-ID", "List-Unsubscribe"}
    assert [(k, v) for k, v in one.items() if k not in per_recipient] == [
        (k, v) for k, v in two.items() if k not in per_recipient
    ]


def test_encoded_html_size_is_what_gmail_sees(template):
    html_part = parse(personal(template).raw).get_body(("html",))
    sent_size = len(html_part.get_payload().encode())  # the base64 text as it travels
    assert abs(template.encoded_html_size() - sent_size) < 200  # only the URL's length differs
    assert template.encoded_html_size() < GMAIL_CLIP_BYTES


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "이번 주 논문\r\nBcc: everyone@example.org"}, "subject"),
        ({"subject": "Hello\nX-Injected: yes"}, "subject"),
    ],
)
def test_header_injection_in_the_subject_is_refused(rendered, config, changes, field):
    with pytest.raises(MessageError, match=field):
        MessageTemplate(dataclasses.replace(rendered, **changes), config)


@pytest.mark.parametrize(
    ("address", "name", "url"),
    [
        ("reader@example.org", "Kim\r\nBcc: everyone@example.org", URL),
        ("reader@example.org\r\nBcc: x@example.org", None, URL),
        ("reader@example.org", None, URL + "\r\nBcc: x@example.org"),
        ("reader@example.org", "Kim\x00", URL),
        ("not an address", None, URL),
    ],
)
def test_header_injection_per_recipient_is_refused(template, address, name, url):
    with pytest.raises(MessageError):
        personal(template, address, name, url)


def test_sender_from_config_with_a_line_break_is_refused(rendered, config):
    with pytest.raises(MessageError, match="sender.from"):
        MessageTemplate(rendered, dataclasses.replace(config, from_address="A <a@example.org>\nBcc: b@example.org"))


def test_rendered_issue_without_an_unsubscribe_link_is_refused(rendered, config):
    without_link = dataclasses.replace(rendered, html=rendered.html.replace(UNSUBSCRIBE_URL_PLACEHOLDER, "#"))
    with pytest.raises(TemplateError, match="unsubscribe"):
        MessageTemplate(without_link, config)


@settings(max_examples=150, deadline=None)
@given(name=st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=80))
def test_any_display_name_survives_the_round_trip(template, name):
    """Quotes, commas, backslashes, encoded-word look-alikes, Hangul: the reader sees their name."""
    raw = personal(template, "reader@example.org", name).raw
    assert max(map(len, raw.split(b"\r\n"))) <= MAX_LINE_BYTES
    to = parse_headers(raw)["To"]
    expected = " ".join(name.split())
    assert to.addresses[0].addr_spec == "reader@example.org"
    if raw.startswith(b"To: =?") and b"?=\r\n =?" in raw.split(b"Message-ID")[0]:
        # Several encoded words: see the test above for why spaces cannot be compared here.
        assert to.addresses[0].display_name.replace(" ", "") == expected.replace(" ", "")
    else:
        assert to.addresses[0].display_name == expected
