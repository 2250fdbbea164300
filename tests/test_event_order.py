"""The order of events (newsletter/events/apply.py, docs/deploy.md): status changes are ordered by
each event's own time, so the list ends the same whatever order they arrive and are applied in.
End to end against moto's SNS and SQS over HTTP, and the rule itself on a real SQLite store."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from events_fixtures import cli, cli_json, events_config, publish, query, ses_event, statuses
from newsletter.config import EventSettings, load_config
from newsletter.events import EditionChanged, SubscribeConfirmed, Unsubscribe, put_event
from newsletter.events.apply import Applier
from newsletter.events.model import MailEvent
from newsletter.model import EDITIONS, Subscriber
from newsletter.store import Store
from sending_fixtures import ISSUE
from test_feedback_loop import recipients, secret, subscribe  # noqa: F401 - the fixture is used by name

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def ago(**delta) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(**delta)


def test_a_rename_hides_no_older_bounce_complaint_or_unsubscribe(tmp_path, moto_events, secret):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, ["hard@example.com", "angry@example.com", "leaver@example.com", "fine@example.com"])
    # They happen after the readers were added and before their names change.
    happened = dt.datetime.now(dt.UTC).replace(microsecond=0)
    publish(moto_events, ses_event("event-bounce.json", "hard@example.com", "m-1", at=happened),
            ses_event("event-complaint.json", "angry@example.com", "m-2", at=happened))
    put_event(load_config(config_path), Unsubscribe("leaver@example.com", at=happened))
    time.sleep(1.1)  # the store keeps whole seconds: the renames are strictly later
    names = tmp_path / "names.csv"
    names.write_text("email,name\nhard@example.com,Hard Bouncer\nangry@example.com,성난 독자\n", encoding="utf-8")
    assert cli(config_path, "subscribers", "import", str(names)).exit_code == 0
    assert cli(config_path, "subscribers", "add", "leaver@example.com", "--name", "Leaver").exit_code == 0
    assert query(config_path, "SELECT count(*) FROM subscriber WHERE name IS NOT NULL")[0][0] == 3

    summary = cli_json(config_path, "sync")
    assert summary["list_changes"] == {"bounced": 1, "complained": 1, "unsubscribed": 1}
    assert statuses(config_path) == {"hard@example.com": "bounced", "angry@example.com": "complained",
                                     "leaver@example.com": "unsubscribed", "fine@example.com": "subscribed"}
    sent = cli(config_path, "send", "--yes", str(ISSUE))
    assert sent.exit_code == 0, sent.output + sent.stderr
    assert recipients(moto_events.ses.messages()) == ["fine@example.com"]


def test_an_unsubscribe_and_a_re_confirmation_end_by_their_own_times_in_any_queue_order(tmp_path, moto_events):
    config_path = events_config(tmp_path)
    assert cli(config_path, "setup", "aws").exit_code == 0
    config = load_config(config_path)
    earlier, later = ago(seconds=20), ago(seconds=10)

    def leave(address, at):
        return Unsubscribe(address, at=at)

    def rejoin(address, at):
        return SubscribeConfirmed(address, confirmed_at=at)

    cases = {  # address -> the two events, in queue order, and the status they must end in
        "back-queued-in-order@example.com": ((leave, earlier), (rejoin, later), "subscribed"),
        "back-queued-reversed@example.com": ((rejoin, later), (leave, earlier), "subscribed"),
        "left-queued-in-order@example.com": ((rejoin, earlier), (leave, later), "unsubscribed"),
        "left-queued-reversed@example.com": ((leave, later), (rejoin, earlier), "unsubscribed"),
    }
    for address, (first, second, _) in cases.items():
        for make, at in (first, second):
            put_event(config, make(address, at))
    summary = cli_json(config_path, "sync")
    assert summary["applied"] == {"subscribe_confirmed": 4, "unsubscribe": 4}
    assert statuses(config_path) == {address: outcome for address, (_, _, outcome) in cases.items()}
    rows = dict(query(config_path, "SELECT address, status_at FROM subscriber"))
    assert rows["back-queued-reversed@example.com"] == later.isoformat()
    assert rows["left-queued-reversed@example.com"] == later.isoformat()

    # A re-confirmation that only arrives in a later sync still wins over the older unsubscribe.
    put_event(config, leave("late@example.com", ago(seconds=30)))
    cli_json(config_path, "sync")
    time.sleep(1.1)
    put_event(config, rejoin("late@example.com", ago(seconds=25)))
    cli_json(config_path, "sync")
    assert statuses(config_path)["late@example.com"] == "subscribed"


def test_transient_bounces_applied_newest_first_reach_the_limit(tmp_path, moto_events):
    config_path = events_config(tmp_path, transient_bounce_limit=3, transient_bounce_window_days=30)
    assert cli(config_path, "setup", "aws").exit_code == 0
    subscribe(config_path, ["full@example.com"])
    times = {hours: ago(hours=hours) for hours in (1, 2, 3)}
    for hours, at in times.items():  # one sync each, the newest first
        publish(moto_events, ses_event("event-bounce.json", "full@example.com", f"m-{hours}", at=at,
                                       bounceType="Transient", bounceSubType="MailboxFull"))
        cli_json(config_path, "sync")
    assert statuses(config_path) == {"full@example.com": "bounced"}
    # Bounced as of the third bounce in time, the one that filled the window.
    assert query(config_path, "SELECT reason, status_at FROM subscriber") == [
        ("3 transient bounces within 30 days", times[1].isoformat())]


# --- the rule itself, on a real SQLite store ------------------------------------------------------

READER = "reader@example.com"
KINDS = ("unsubscribe", "confirm", "bounce", "complaint", "soft_bounce", "not_spam")
# Edition choices: on the preferences page (`choose:`), and carried by a confirmation (`confirm:`).
CHOICES = tuple(f"{how}:{edition}" for how in ("choose", "confirm") for edition in EDITIONS)


def event_of(kind: str, at: dt.datetime, n: int):
    if kind == "unsubscribe":
        return Unsubscribe(READER, at=at, id=f"u{n}")
    if kind == "confirm":
        return SubscribeConfirmed(READER, confirmed_at=at, id=f"c{n}")
    if kind.startswith("choose:"):
        return EditionChanged(READER, kind.partition(":")[2], at=at, id=f"e{n}")
    if kind.startswith("confirm:"):
        return SubscribeConfirmed(READER, confirmed_at=at, id=f"c{n}", edition=kind.partition(":")[2])
    if kind == "not_spam":
        return MailEvent(f"n{n}", "not_spam", None, at, (READER,), detail="not-spam")
    bounce_type = {"bounce": "Permanent", "soft_bounce": "Transient"}.get(kind)
    return MailEvent(f"m{n}", "complaint" if kind == "complaint" else "bounce", None, at, (READER,),
                     bounce_type=bounce_type)


def final_state(events, *, added_by_editor: bool, limit: int = 2) -> tuple:
    with Store.open(":memory:") as store:
        if added_by_editor:
            joined = NOW - dt.timedelta(days=90)
            store.insert([Subscriber(READER, None, "subscribed", "cli", joined, joined)])
        applier = Applier(store, EventSettings(transient_bounce_limit=limit, transient_bounce_window_days=10))
        for event in events:
            with store.transaction():
                applier.apply(event)
        found = store.get(READER)
        return (found.status, found.status_at, found.edition, found.edition_at) if found else None


# Times from a small set, so that equal times (ties) are common.
events_lists = st.lists(st.tuples(st.sampled_from(KINDS + CHOICES), st.integers(0, 40)), min_size=1, max_size=6)


@settings(max_examples=400, deadline=None)
@given(events_lists, st.booleans(), st.randoms(use_true_random=False))
# Three transient bounces whose two full windows end on different days: applied oldest last, the
# earlier window used to set the status time for good.
@example([("soft_bounce", 1), ("soft_bounce", 10), ("soft_bounce", 0)], False, random.Random(0))
def test_the_list_ends_the_same_whatever_order_the_events_are_applied_in(drawn, added_by_editor, random):
    if not added_by_editor:
        # A preferences-page choice for an address not on the list changes nothing (its link only
        # reaches readers on the list): with no one on the list, it would depend on arrival order.
        drawn = [(kind, days) for kind, days in drawn if not kind.startswith("choose:")] or [("confirm", 0)]
    events = [event_of(kind, NOW - dt.timedelta(days=days), n) for n, (kind, days) in enumerate(drawn)]
    in_time_order = final_state(sorted(events, key=lambda e: e.at), added_by_editor=added_by_editor)
    shuffled = list(events)
    random.shuffle(shuffled)
    assert final_state(shuffled, added_by_editor=added_by_editor) == in_time_order
    assert final_state(events[::-1], added_by_editor=added_by_editor) == in_time_order
    # The edition, by the rule as written: the latest choice; at equal times bilingual, ko, en.
    choices = [(event.at, -EDITIONS.index(event.edition), event.edition) for event in events
               if getattr(event, "edition", None)]
    if in_time_order is not None:  # (a lone transient bounce records no one)
        assert in_time_order[2] == (max(choices)[2] if choices else "bilingual")


def test_equal_times_the_opt_out_wins_in_either_order():
    for order in itertools.permutations([Unsubscribe(READER, at=NOW, id="u"),
                                         SubscribeConfirmed(READER, confirmed_at=NOW, id="c")]):
        assert final_state(order, added_by_editor=True)[:2] == ("unsubscribed", NOW)


def test_an_edition_choice_and_an_unsubscribe_change_each_other_in_neither_order():
    choice, leave = EditionChanged(READER, "en", at=NOW, id="e"), Unsubscribe(READER, at=NOW, id="u")
    for order in ((choice, leave), (leave, choice)):
        assert final_state(order, added_by_editor=True) == ("unsubscribed", NOW, "en", NOW)
    # The latest choice stands, whichever arrives last; equal times: bilingual, then ko, then en.
    earlier = EditionChanged(READER, "ko", at=NOW - dt.timedelta(microseconds=1), id="k")
    for order in ((earlier, choice), (choice, earlier)):
        assert final_state(order, added_by_editor=True)[2:] == ("en", NOW)
    tie = [EditionChanged(READER, edition, at=NOW, id=edition) for edition in ("en", "ko")]
    assert {final_state(order, added_by_editor=True)[2] for order in itertools.permutations(tie)} == {"ko"}


def test_a_time_in_the_future_counts_as_now_and_shields_from_nothing_later():
    with Store.open(":memory:") as store:
        clock = [NOW]
        applier = Applier(store, EventSettings(), clock=lambda: clock[0])
        far = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
        applier.apply(SubscribeConfirmed(READER, confirmed_at=far, id="c", requested_at=far))
        assert store.get(READER).status_at == NOW  # not 2099
        clock[0] = NOW + dt.timedelta(minutes=1)
        applier.apply(Unsubscribe(READER, at=NOW + dt.timedelta(seconds=30), id="u"))
        assert store.get(READER).status == "unsubscribed"


def test_only_a_re_join_shields_and_only_the_editor_lifts_a_bounce_or_complaint():
    def state(*events, resubscribed: bool = False):
        with Store.open(":memory:") as store:
            joined = NOW - dt.timedelta(days=90)
            store.insert([Subscriber(READER, "Reader", "subscribed", "cli", joined, joined)])
            applier = Applier(store, EventSettings())
            if resubscribed:  # the editor's explicit resubscribe, now
                store.set_status(READER, "bounced", "test")
                store.set_status(READER, "subscribed", "resubscribed by cli")
            for event in events:
                applier.apply(event)
            return store.get(READER).status

    old = NOW - dt.timedelta(days=2)
    bounce = MailEvent("b", "bounce", None, old, (READER,), bounce_type="Permanent")
    confirmed = SubscribeConfirmed(READER, confirmed_at=NOW - dt.timedelta(days=1), id="c",
                                   requested_at=NOW - dt.timedelta(days=1))
    assert state(confirmed, bounce) == "bounced"  # a confirmation never lifts a bounce, older or not
    assert state(bounce, resubscribed=True) == "subscribed"  # the editor's resubscribe is newer
    assert state(Unsubscribe(READER, at=old, id="u"), confirmed) == "subscribed"
    assert state(MailEvent("n", "not_spam", None, NOW, (READER,))) == "subscribed"


def test_a_rename_does_not_move_the_time_a_status_is_counted_from(tmp_path):
    from newsletter import subscribers as subscriber_list
    from newsletter.store import events as event_table

    joined = NOW - dt.timedelta(days=10)
    with Store.open(tmp_path / "list.db") as store:
        store.insert([Subscriber(READER, "Old Name", "subscribed", "cli", joined, joined)])
        subscriber_list.add(store, READER, "New Name")
        assert store.get(READER).name == "New Name"
        assert event_table.status_history(store.connection)["subscribed"][1] == joined.isoformat()
