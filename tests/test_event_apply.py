"""What applying each event does to the list, on a real SQLite store (no queue needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.config import EventSettings
from newsletter.events.apply import Applier
from newsletter.events.model import InboundMail, MailEvent, Unsubscribe
from newsletter.model import Subscriber
from newsletter.store import Store, utc_now
from newsletter.unsubscribe import DEVELOPMENT_KEY, SigningKey, TokenSigner

LIST_ID = "top-ml-papers.newsletter.example.com"
KEY = SigningKey(b"a-test-secret-that-is-long-enough-0123456789", "test")
NOW = utc_now()


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "list.db") as store:
        joined = NOW - dt.timedelta(days=60)
        store.insert([Subscriber(a, None, "subscribed", "test", joined, joined) for a in
                      ("a@example.com", "b@example.com", "c@example.com")])
        yield store


def applier(store, **settings) -> Applier:
    return Applier(store, EventSettings(**settings), TokenSigner(LIST_ID, KEY))


def soft_bounce(address: str, days_ago: float, n: int = 0) -> MailEvent:
    return MailEvent(f"e{address}{days_ago}{n}", "bounce", None, NOW - dt.timedelta(days=days_ago), (address,),
                     bounce_type="Transient", detail="Transient MailboxFull")


def status(store, address: str) -> str:
    return store.get(address).status


def test_transient_bounces_bounce_an_address_only_when_enough_fall_within_the_window(store):
    apply = applier(store, transient_bounce_limit=3, transient_bounce_window_days=30).apply
    for days_ago in (50, 40, 20, 10):  # two inside the window
        assert apply(soft_bounce("a@example.com", days_ago)).kind == "soft_bounce"
    assert status(store, "a@example.com") == "subscribed"
    outcome = apply(soft_bounce("a@example.com", 1))
    assert [(c.before, c.after) for c in outcome.changes] == [("subscribed", "bounced")]
    assert store.get("a@example.com").reason == "3 transient bounces within 30 days"


def test_a_status_only_moves_toward_never_mail_again(store):
    apply = applier(store).apply
    complaint = MailEvent("c1", "complaint", None, NOW, ("a@example.com",), detail="abuse")
    bounce = MailEvent("b1", "bounce", None, NOW, ("a@example.com",), bounce_type="Permanent")
    assert [c.after for c in apply(complaint).changes] == ["complained"]
    assert apply(bounce).changes == () and status(store, "a@example.com") == "complained"
    assert apply(Unsubscribe("a@example.com", at=NOW)).changes == ()


def test_an_event_older_than_a_re_subscription_does_not_undo_it(store):
    store.set_status("b@example.com", "bounced", "old bounce")
    store.set_status("b@example.com", "subscribed", "asked to come back")  # changed_at: now
    stale = MailEvent("b2", "bounce", None, NOW - dt.timedelta(days=2), ("b@example.com",), bounce_type="Permanent")
    assert applier(store).apply(stale).changes == ()
    assert status(store, "b@example.com") == "subscribed"


def test_unsubscribe_mail_with_a_genuine_token_unsubscribes_that_address(store):
    token = TokenSigner(LIST_ID, KEY).token("c@example.com")
    mail = InboundMail("m1", NOW, "someone@else.example", (token,), authenticated=False)
    assert [c.address for c in applier(store).apply(mail).changes] == ["c@example.com"]
    assert store.get("c@example.com").reason == "unsubscribe mail (token)"


def test_unsubscribe_mail_needs_a_real_token_or_an_authenticated_subscriber(store):
    apply = applier(store).apply
    dev_token = TokenSigner(LIST_ID, DEVELOPMENT_KEY).token("a@example.com")  # anyone can make these
    assert apply(InboundMail("m2", NOW, "x@example.org", (dev_token,), authenticated=True)).kind == "ignored"
    assert apply(InboundMail("m3", NOW, "b@example.com", (), authenticated=False)).kind == "unsubscribe_mail_unproven"
    assert status(store, "a@example.com") == status(store, "b@example.com") == "subscribed"
    assert [c.address for c in apply(InboundMail("m4", NOW, "B@example.com", (), authenticated=True)).changes] == [
        "b@example.com"]


def test_a_report_on_a_ledger_row_never_downgrades_it(store):
    from newsletter.store import events as event_table

    store.prepare_issue("2023-10-16")
    row = store.pending_deliveries("2023-10-16")[0]
    store.claim_delivery(row.id)
    store.finish_delivery(row.id, "sent", message_id="ses-1")
    apply = applier(store).apply
    for kind, bounce_type in (("delay", None), ("delivery", None), ("bounce", "Permanent"), ("delivery", None)):
        apply(MailEvent(f"r-{kind}-{bounce_type}", kind, "ses-1", NOW, (row.address,), bounce_type=bounce_type))
    assert event_table.ledger_row(store.connection, "ses-1").feedback == "bounce"
    assert event_table.issue_reports(store.connection, "2023-10-16") == {"delay": (1, 1), "delivery": (1, 2),
                                                                         "bounce": (1, 1)}
