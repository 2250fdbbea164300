"""CSV import and export of the subscriber list, and the `newsletter subscribers` commands."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from click.testing import CliRunner

from newsletter import subscribers as subscriber_list
from newsletter.cli import main
from newsletter.errors import StoreError
from newsletter.model import Subscriber
from newsletter.store import Store
from newsletter.subscribers import SKIP_REASON_DUPLICATE, ImportRejected

ROOT = Path(__file__).resolve().parent.parent

# Line numbers matter: the tests check that every bad row is reported by the line it starts on.
MESSY = (
    "이름,이메일 주소,메모\n"  # 1 Korean headers (the email one with a space)
    "김민지,minji@example.com,\n"  # 2
    "\n"  # 3 blank
    "박지훈,not-an-address,\n"  # 4 bad: no @
    '"=HYPERLINK(""http://evil.example"",""클릭"")",formula@example.com,\n'  # 5 formula-looking name
    "Minji Kim,MINJI@Example.com,dup\n"  # 6 duplicate of line 2 (case differs)
    ",,\n"  # 7 blank
    "이서연,\"=cmd|' /C calc'!A0\",\n"  # 8 bad: a formula where the address goes
    '"여러\n'  # 9 a quoted name over two lines
    '줄",multi@example.org,\n'  # 10
    "최하나,,\n"  # 11 bad: no address
    ",홍길동 <hong@example.org>,\n"  # 12 a display name in the address cell
    "Alex,alex@example.com,\n"  # 13
    "Alex M.,Alex@example.com,\n"  # 14 duplicate of line 13
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def dump(store: Store) -> list[Subscriber]:
    return list(store.subscribers())


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "list.db") as opened:
        yield opened


def seed(store: Store, *entries: tuple[str, str]) -> None:
    """Subscribers (address, status) as if they had been imported earlier."""
    now = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)
    store.insert(Subscriber(address, None, status, "seed", now, now, None) for address, status in entries)


def test_a_messy_file_is_refused_whole_with_every_bad_row_and_the_store_unchanged(store: Store, tmp_path: Path) -> None:
    seed(store, ("old@example.com", "subscribed"))
    before = dump(store)
    path = write(tmp_path / "messy.csv", "\ufeff" + MESSY)
    with pytest.raises(ImportRejected) as rejected:
        subscriber_list.import_csv(store, path)
    problems = rejected.value.report.problems
    assert [(p.line, p.value) for p in problems] == [
        (4, "not-an-address"),
        (8, "=cmd|' /C calc'!A0"),
        (11, ""),
    ]
    assert "@-sign" in problems[0].reason
    assert problems[2].reason == "no address"
    assert "3 bad rows, nothing imported" in str(rejected.value)
    assert dump(store) == before


def test_a_messy_file_with_skip_invalid_imports_the_good_rows(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "messy.csv", "\ufeff" + MESSY)
    report = subscriber_list.import_csv(store, path, skip_invalid=True)
    assert report.encoding == "utf-8-sig"
    assert (report.rows, report.blank_lines) == (10, 2)
    assert dict(report.added) == {"subscribed": 5}
    assert (report.updated, report.unchanged, report.resubscribed) == (0, 0, 0)
    assert dict(report.skipped) == {SKIP_REASON_DUPLICATE: 2, "invalid": 3}
    assert report.applied
    names = {s.address: s.name for s in store.subscribed()}
    assert names == {
        "alex@example.com": "Alex",  # the first of the duplicates wins
        "formula@example.com": '=HYPERLINK("http://evil.example","클릭")',  # kept as text
        "hong@example.org": "홍길동",
        "minji@example.com": "김민지",
        "multi@example.org": "여러 줄",
    }
    assert {s.source for s in store.subscribed()} == {"import:messy.csv"}


def test_cp949_from_korean_excel_is_read(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "excel.csv", "성명,메일\r\n김민지,minji@example.com\r\n박지훈,jihoon@example.com\r\n", "cp949")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    report = subscriber_list.import_csv(store, path)
    assert report.encoding == "cp949"
    assert {s.name for s in store.subscribed()} == {"김민지", "박지훈"}


def test_semicolons_tabs_utf16_and_no_header_are_read(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "semi.csv", "lee@example.org;이서연\nkim@example.org;김민지\n")
    write(tmp_path / "tabs.txt", "E-Mail\tFull Name\npark@example.org\t박지훈\n", "utf-16")
    for name in ("semi.csv", "tabs.txt"):
        subscriber_list.import_csv(store, tmp_path / name)
    assert {(s.address, s.name) for s in store.subscribed()} == {
        ("lee@example.org", "이서연"),
        ("kim@example.org", "김민지"),
        ("park@example.org", "박지훈"),
    }


def test_unreadable_files_are_store_errors_that_say_where(store: Store, tmp_path: Path) -> None:
    garbled = tmp_path / "garbled.csv"
    garbled.write_bytes(b"email\na@example.com\n\x80\x80\x80@example.com\n")
    with pytest.raises(StoreError, match=r"garbled\.csv:3: not utf-8 or cp949 text"):
        subscriber_list.import_csv(store, garbled)
    with pytest.raises(StoreError, match=r"headless\.csv:2: no email column"):
        subscriber_list.import_csv(store, write(tmp_path / "headless.csv", "\nname,phone\nKim,010\n"))
    with pytest.raises(StoreError, match="cannot read"):
        subscriber_list.import_csv(store, tmp_path / "missing.csv")
    assert dump(store) == []


def test_addresses_that_left_are_not_resubscribed_unless_asked(store: Store, tmp_path: Path) -> None:
    seed(store, ("gone@example.com", "unsubscribed"), ("bounce@example.com", "bounced"),
         ("angry@example.com", "complained"), ("kept@example.com", "subscribed"))
    path = write(tmp_path / "list.csv", "email,name\ngone@example.com,\nBOUNCE@example.com,\nangry@example.com,\n"
                 "kept@example.com,Kept Name\nnew@example.com,\n")
    report = subscriber_list.import_csv(store, path)
    assert dict(report.added) == {"subscribed": 1}
    assert report.updated == 1  # kept@ got a name
    assert dict(report.skipped) == {"unsubscribed": 1, "bounced": 1, "complained": 1}
    assert {s.address for s in store.subscribed()} == {"kept@example.com", "new@example.com"}

    again = subscriber_list.import_csv(store, path, resubscribe=True)
    assert (again.resubscribed, again.unchanged, sum(again.added.values())) == (3, 2, 0)
    back = store.get("gone@example.com")
    assert (back.status, back.reason) == ("subscribed", f"resubscribed by {path}")
    assert store.count_subscribed() == 5


def test_an_opt_out_in_the_file_is_recorded(store: Store, tmp_path: Path) -> None:
    seed(store, ("a@example.com", "subscribed"))
    path = write(tmp_path / "optout.csv", "email,status\na@example.com,unsubscribed\nb@example.com,bounced\n"
                 "c@example.com,subscribed\nc@example.com,complained\n")
    report = subscriber_list.import_csv(store, path)
    assert report.updated == 1
    assert dict(report.added) == {"bounced": 1, "complained": 1}  # c's opt-out wins over its duplicate
    assert {s.address: s.status for s in store.subscribers()} == {
        "a@example.com": "unsubscribed", "b@example.com": "bounced", "c@example.com": "complained"}
    bad = write(tmp_path / "bad-status.csv", "email,status\nd@example.com,maybe\n")
    with pytest.raises(ImportRejected) as rejected:
        subscriber_list.import_csv(store, bad)
    assert "unknown status 'maybe'" in rejected.value.report.problems[0].reason


def test_a_dry_run_counts_the_same_and_changes_nothing(store: Store, tmp_path: Path) -> None:
    seed(store, ("gone@example.com", "unsubscribed"))
    before = dump(store)
    path = write(tmp_path / "messy.csv", MESSY + ",gone@example.com,\n")
    dry = subscriber_list.import_csv(store, path, skip_invalid=True, dry_run=True)
    assert not dry.applied and dump(store) == before
    real = subscriber_list.import_csv(store, path, skip_invalid=True)
    assert (dry.added, dry.skipped, dry.updated) == (real.added, real.skipped, real.updated)
    assert real.skipped["unsubscribed"] == 1


def test_export_guards_formulas_and_imports_back_to_the_same_store(tmp_path: Path) -> None:
    joined = dt.datetime(2025, 12, 1, 8, 0, tzinfo=dt.UTC)
    changed = dt.datetime(2026, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    originals = [
        Subscriber("=1+2@example.com", "=SUM(A1:A9)", "subscribed", "import:a.csv", joined, joined, None),
        Subscriber("-dash@example.com", "-minus", "unsubscribed", "cli", joined, changed, "one-click"),
        Subscriber("at@example.org", "@at", "bounced", "import:b.csv", joined, changed, "=bounce: 550"),
        Subscriber("quote@example.org", "'=already quoted", "complained", "manual", joined, changed, "abuse"),
        Subscriber("kim@example.com", 'Kim, "MJ" 김민지', "subscribed", "import:a.csv", joined, joined, None),
        Subscriber("plain@example.com", "O'Brien", "subscribed", "cli", joined, joined, None),
        Subscriber("noname@example.com", None, "subscribed", "cli", joined, joined, None),
    ]
    with Store.open(tmp_path / "first.db") as first:
        first.insert(originals)
        exported = io.StringIO()
        assert subscriber_list.export_csv(first, exported) == len(originals)
    text = exported.getvalue()
    for row in list(csv.reader(io.StringIO(text)))[1:]:
        assert not any(cell.startswith(subscriber_list.FORMULA_TRIGGERS) for cell in row), row
    path = write(tmp_path / "export.csv", text, "utf-8-sig")
    with Store.open(tmp_path / "second.db") as second:
        report = subscriber_list.import_csv(second, path)
        assert sum(report.added.values()) == len(originals)
        assert dump(second) == sorted(originals, key=lambda s: s.address.casefold())
        again = io.StringIO()
        subscriber_list.export_csv(second, again)
    assert again.getvalue() == text


def test_add_validates_and_respects_those_who_left(store: Store) -> None:
    report = subscriber_list.add(store, "홍길동 <Hong@Example.ORG>")
    assert dict(report.added) == {"subscribed": 1}
    assert store.get("hong@example.org").name == "홍길동"
    with pytest.raises(StoreError, match="@-sign"):
        subscriber_list.add(store, "nobody")
    store.set_status("hong@example.org", "unsubscribed", "test")
    assert dict(subscriber_list.add(store, "hong@example.org").skipped) == {"unsubscribed": 1}
    assert subscriber_list.add(store, "hong@example.org", resubscribe=True).resubscribed == 1


# Through the command line


@pytest.fixture
def run(newsletter_config: Path):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["--config", str(newsletter_config), *args], catch_exceptions=False)

    return invoke


def test_importing_the_example_list_twice_is_short_and_idempotent(run) -> None:
    example = str(ROOT / "subscribers.example.csv")
    first = run("subscribers", "import", example)
    assert first.exit_code == 0, first.output
    assert "added 6; updated 0; unchanged 0" in first.stdout
    second = run("subscribers", "import", example)
    assert "added 0; updated 0; unchanged 6" in second.stdout
    assert second.stdout.splitlines()[-1] == "subscribed now: 6"
    assert len(second.stdout.splitlines()) <= 3


def test_a_bad_import_exits_non_zero_listing_each_line(run, tmp_path: Path) -> None:
    path = write(tmp_path / "messy.csv", MESSY)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert [line.split(": ")[0] for line in result.stderr.splitlines()[:3]] == [
        f"{path}:4", f"{path}:8", f"{path}:11"]
    assert "nothing imported" in result.stderr.splitlines()[-1]
    assert run("subscribers", "stats").stdout.splitlines()[-1].split() == ["total", "0"]


def test_unsubscribe_by_hand_keeps_the_address_out_of_sends_and_imports(run, newsletter_config: Path, tmp_path: Path) -> None:
    run("subscribers", "import", str(ROOT / "subscribers.example.csv"))
    assert "unsubscribed Minji.Kim@example.com (was subscribed)" in run("unsubscribe", "Minji.Kim@example.com").stdout
    assert "already unsubscribed" in run("unsubscribe", "minji.kim@example.com").stdout
    assert "recorded as unsubscribed" in run("unsubscribe", "stranger@example.net").stdout
    result = run("subscribers", "import", str(write(tmp_path / "s.csv", "email\nstranger@example.net\n")))
    assert "skipped 1: unsubscribed 1" in result.stdout
    with Store.open(newsletter_config.parent / "newsletter.db") as store:
        assert "minji.kim@example.com" not in {s.address for s in store.subscribed()}
        assert store.count_subscribed() == 5
    listed = run("subscribers", "list", "--status", "unsubscribed").stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["minji.kim@example.com", "stranger@example.net"]


def test_add_remove_export_and_stats_commands(run, tmp_path: Path) -> None:
    assert run("subscribers", "add", "a@example.com", "--name", "에이").exit_code == 0
    assert run("subscribers", "add", "b@example.com").exit_code == 0
    run("unsubscribe", "b@example.com")
    refused = run("subscribers", "add", "b@example.com")
    assert refused.exit_code == 1 and "--resubscribe" in refused.stderr
    exported = tmp_path / "out.csv"
    assert run("subscribers", "export", "-o", str(exported)).exit_code == 0
    assert exported.read_bytes().startswith(codecs.BOM_UTF8)
    assert run("subscribers", "remove", "A@example.com").stdout == "removed A@example.com\n"
    assert run("subscribers", "remove", "a@example.com").exit_code == 1
    assert "added 1" in run("subscribers", "import", str(exported)).stdout  # a@ comes back, b@ stays out
    stats = dict(line.split()[:2] for line in run("subscribers", "stats").stdout.splitlines())
    assert stats == {"subscribed": "1", "unsubscribed": "1", "bounced": "0", "complained": "0", "total": "2"}


@given(st.text())
def test_a_guarded_cell_never_starts_a_formula_and_unguards_to_itself(cell: str) -> None:
    guarded = subscriber_list.guard_formula(cell)
    assert not guarded.startswith(subscriber_list.FORMULA_TRIGGERS)
    assert subscriber_list.unguard_formula(guarded) == cell
