"""CSV import and export of the subscriber list, and the `newsletter subscribers` commands."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import time
import io
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

from newsletter import subscribers as subscriber_list
from newsletter.cli import main
from newsletter.errors import StoreError
from newsletter.model import EDITIONS, STATUS_STRENGTH, SUBSCRIBER_STATUSES, Subscriber
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
        # An opt-out's status time is its change time (what an import of the export gives it).
        Subscriber("-dash@example.com", "-minus", "unsubscribed", "cli", joined, changed, "one-click", changed),
        Subscriber("at@example.org", "@at", "bounced", "import:b.csv", joined, changed, "=bounce: 550", changed),
        Subscriber("quote@example.org", "'=already quoted", "complained", "manual", joined, changed, "abuse", changed),
        Subscriber("kim@example.com", 'Kim, "MJ" 김민지', "subscribed", "import:a.csv", joined, joined, None,
                   edition="ko"),
        Subscriber("plain@example.com", "O'Brien", "subscribed", "cli", joined, joined, None, edition="en"),
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
    assert second.stdout.splitlines()[-1] == "subscribed now: 6 (bilingual 2, ko 2, en 2)"
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
    assert stats == {"subscribed": "1", "bilingual": "1", "ko": "0", "en": "0", "unsubscribed": "1", "bounced": "0",
                     "complained": "0", "total": "2"}


@given(st.text())
def test_a_guarded_cell_never_starts_a_formula_and_unguards_to_itself(cell: str) -> None:
    guarded = subscriber_list.guard_formula(cell)
    assert not guarded.startswith(subscriber_list.FORMULA_TRIGGERS)
    assert subscriber_list.unguard_formula(guarded) == cell


# Addresses SES cannot deliver, cells that hold more than one address, names with control characters


def test_non_ascii_before_the_at_is_refused_per_row_and_a_korean_domain_is_kept_as_xn(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "intl.csv", "email,name\nJosé@example.com,José\n김민지@example.kr,김민지\n"
                 "minji@한국.kr,민지\nplain@example.com,\n")
    with pytest.raises(ImportRejected) as rejected:
        subscriber_list.import_csv(store, path)
    problems = rejected.value.report.problems
    assert [(p.line, p.value) for p in problems] == [(2, "José@example.com"), (3, "김민지@example.kr")]
    assert all("not ASCII" in p.reason and "SMTPUTF8" in p.reason for p in problems)
    report = subscriber_list.import_csv(store, path, skip_invalid=True)
    assert dict(report.skipped) == {"invalid": 2}
    assert {s.address for s in store.subscribed()} == {"minji@xn--3e0b707e.kr", "plain@example.com"}


@pytest.mark.parametrize("cell", ["a@b.c d <e@f.g>", "A <a@example.com>, B <b@example.com>",
                                  "a@example.com, b@example.com", "<a@example.com", "Kim <a@example.com> x",
                                  "a@example.com <>"])
def test_a_cell_with_more_than_one_address_is_refused_never_turned_into_another(store: Store, tmp_path: Path, cell: str) -> None:
    path = tmp_path / "two.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([["email"], [cell], ["ok@example.com"]])
    report = subscriber_list.import_csv(store, path, skip_invalid=True)
    assert [(p.line, p.value) for p in report.problems] == [(2, cell)]
    assert [s.address for s in store.subscribers()] == ["ok@example.com"]


def test_names_in_the_usual_forms_are_still_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([["email"], ['"Kim, MJ" <kim@example.com>'], ['"a@work" <a@example.com>'],
                                   ["Lee, Seo-yeon <lee@example.com>"], ["<bare@example.com>"]])
    subscriber_list.import_csv(store, path)
    assert {(s.address, s.name) for s in store.subscribers()} == {
        ("kim@example.com", "Kim, MJ"), ("a@example.com", "a@work"), ("lee@example.com", "Lee, Seo-yeon"),
        ("bare@example.com", None)}


def test_control_characters_are_cleaned_from_names_with_a_note_and_the_name_can_be_sent(store: Store, tmp_path: Path) -> None:
    from newsletter.compose import check_header_value

    path = write(tmp_path / "ctl.csv", "email,name\nbel@example.com,김\x07민지\nesc@example.com,\x1b[1mBold\x1b[0m\n"
                 "c1@example.com,x\x85\x9by\nfine@example.com,Plain\n"
                 "rlo@example.com,Evil\u202eemanLive\u2066x\u2069\nrtl@example.com,\u200fשרה\u200d\n")
    report = subscriber_list.import_csv(store, path)
    assert [(note.line, note.reason) for note in report.notes] == [
        (line, subscriber_list.NAME_CLEANED) for line in (2, 3, 4, 6)]
    names = {s.address: s.name for s in store.subscribers()}
    assert names == {"bel@example.com": "김민지", "esc@example.com": "[1mBold[0m", "c1@example.com": "x y",
                     "fine@example.com": "Plain", "rlo@example.com": "EvilemanLivex",
                     "rtl@example.com": "\u200fשרה\u200d"}
    for name in names.values():
        check_header_value("To", name)


@given(st.emails())
def test_the_per_domain_cache_gives_email_validators_answer(address: str) -> None:
    import email_validator
    from newsletter import addresses

    try:
        expected = email_validator.validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email
    except email_validator.EmailNotValidError:
        with pytest.raises(addresses.AddressError):
            addresses.normalise(address)
        return
    assert addresses.normalise(address) == expected


def test_a_bad_byte_far_into_a_big_file_names_its_line(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"reader{n}@example.com\n" for n in range(100_000))  # about 2.3 MB: several chunks
    path = tmp_path / "big.csv"
    path.write_bytes(b"email\n" + rows.encode() + b"\x80\x80\x80@example.com\n")
    with pytest.raises(StoreError, match=r"big\.csv:100002: not utf-8 or cp949 text"):
        subscriber_list.import_csv(store, path)
    assert dump(store) == []


def test_add_and_unsubscribe_of_addresses_ses_cannot_deliver_say_so_in_one_line(run) -> None:
    refused = run("subscribers", "add", "José@example.com")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: 'José@example.com': the part before the @ is not ASCII ('José')")
    for address in ("José@example.com", "김민지@example.kr", "not-an-address@", "a@b.c d <e@f.g>"):
        result = run("unsubscribe", address)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{address} is not on the list, and cannot be (")
        assert result.stdout.endswith("); nothing to do\n") and result.stdout.count("\n") == 1
    assert run("unsubscribe", "민지 <Minji@한국.kr>").stdout == "Minji@xn--3e0b707e.kr was not on the list; recorded as unsubscribed\n"
    assert run("subscribers", "stats").stdout.splitlines()[-1].split() == ["total", "1"]


def test_an_import_prints_each_cleaned_name_as_a_note(run, tmp_path: Path) -> None:
    path = write(tmp_path / "ctl.csv", "email,name\nbel@example.com,김\x07민지\n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 0
    assert result.stderr == f"{path}:2: note: {subscriber_list.NAME_CLEANED} ('bel@example.com')\n"


def test_export_into_a_missing_folder_is_one_line(run, tmp_path: Path) -> None:
    run("subscribers", "add", "a@example.com")
    result = run("subscribers", "export", "-o", str(tmp_path / "no" / "such" / "out.csv"))
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot write {tmp_path / 'no' / 'such' / 'out.csv'} (No such file or directory)\n"


def test_preview_on_a_port_in_use_is_one_line(run) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("preview", str(ROOT / "issues" / "2023-10-16.md"), "--port", str(port))
    assert result.exit_code == 1
    assert result.stderr.endswith(f"error: cannot listen on 127.0.0.1:{port}: the port is in use; stop what uses "
                                  "it or pick another port (--port)\n")


def _without_root_privileges() -> list[str]:
    """A command prefix under which file permissions hold: root ignores them unless it gives up
    CAP_DAC_OVERRIDE (what setpriv does here), so a read-only file is read-only."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only file cannot be made")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.parametrize("command", [["subscribers", "add", "b@example.com"], ["unsubscribe", "a@example.com"],
                                     ["subscribers", "remove", "a@example.com"],
                                     ["subscribers", "import", str(ROOT / "subscribers.example.csv")]])
def test_a_read_only_database_is_one_line_not_a_traceback(newsletter_config: Path, tmp_path_factory, command) -> None:
    import shutil
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("readonly")
    folder.chmod(0o777)  # the folder stays writable (SQLite's -wal and -shm files); the file is not
    config = shutil.copy(newsletter_config, folder / "newsletter.toml")
    with Store.open(folder / "newsletter.db") as store:
        seed(store, ("a@example.com", "subscribed"))
    (folder / "newsletter.db").chmod(0o444)
    for leftover in folder.glob("newsletter.db-*"):
        leftover.unlink()
    result = subprocess.run([*_without_root_privileges(), sys.executable, "-m", "newsletter", "--config", str(config),
                             *command], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(f"error: {folder / 'newsletter.db'}: the database is read-only"), result.stderr
    assert len(result.stderr.splitlines()) == 1


# The streaming import against the rules it must keep, on random lists and files


def reference_import(stored: dict[str, Subscriber], rows: list[Subscriber], source: str, resubscribe: bool,
                     editions: bool = False):
    """The import rules as written in docs/subscribers.md, on plain dicts: the first row of an
    address wins (its edition too), a later one may fill in a missing name, the strongest opt-out
    in the file is kept and recorded over a weaker stored one; addresses that left stay out unless
    `resubscribe`. A file with an edition column (`editions`) sets the edition of everyone it names
    but those who stay out; without one, stored subscribers keep theirs. Returns the list after and
    the counts."""
    merged: dict[str, Subscriber] = {}
    counts: Counter = Counter()
    for row in rows:
        key = row.address.casefold()
        first = merged.setdefault(key, row)
        if first is row:
            continue
        counts["duplicate"] += 1
        if first.name is None and row.name:
            first = dataclasses.replace(first, name=row.name)
        if STATUS_STRENGTH[row.status] > STATUS_STRENGTH[first.status]:  # the strongest opt-out wins
            first = dataclasses.replace(first, status=row.status, reason=row.reason)
        merged[key] = first
    after = dict(stored)
    for key, new in merged.items():
        old = stored.get(key)
        edition = new.edition if editions else old.edition if old else new.edition
        if old is None:
            after[key], counts["added"] = new, counts["added"] + 1
        elif STATUS_STRENGTH[new.status] > STATUS_STRENGTH[old.status]:  # a stronger opt-out is recorded
            after[key] = dataclasses.replace(old, status=new.status, reason=new.reason or f"{new.status} in {source}",
                                             edition=edition)
            counts["updated"] += 1
        elif old.status != "subscribed" and new.status == "subscribed":
            if resubscribe:
                after[key] = dataclasses.replace(old, name=new.name or old.name, status="subscribed",
                                                 reason=f"resubscribed by {source}", edition=edition)
                counts["resubscribed"] += 1
            else:
                counts[old.status] += 1
        elif (new.name and new.name != old.name) or edition != old.edition:
            after[key] = dataclasses.replace(old, name=new.name or old.name, edition=edition)
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    return {key: (s.address, s.name, s.status, s.reason, s.edition) for key, s in after.items()}, counts


POOL = ["kim@example.com", "KIM@example.com", "lee@example.org", "park@example.net", "Park@Example.NET", "choi@example.com"]
entries = st.tuples(st.sampled_from(POOL), st.sampled_from([None, "김", "Lee", "박"]), st.sampled_from(SUBSCRIBER_STATUSES),
                    st.sampled_from(EDITIONS))


@settings(max_examples=100, deadline=None)
@given(stored=st.lists(entries, max_size=4, unique_by=lambda e: e[0].casefold()), rows=st.lists(entries, max_size=12),
       resubscribe=st.booleans(), editions=st.booleans())
def test_the_streaming_import_keeps_the_import_rules(tmp_path_factory, stored, rows, resubscribe, editions) -> None:
    folder = tmp_path_factory.mktemp("rules")
    now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    path = folder / "rows.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        # The bilingual edition written as an empty cell, as a spreadsheet leaves it.
        edition_cell = (lambda edition: ["" if edition == "bilingual" else edition]) if editions else (lambda _: [])
        csv.writer(out).writerows([["email", "name", "status", *edition_cell("edition")],
                                   *([a, n or "", s, *edition_cell(e)] for a, n, s, e in rows)])
    before = {a.casefold(): Subscriber(a.lower(), n, s, "seed", now, now, None, edition=e) for a, n, s, e in stored}
    incoming = [Subscriber(a.rpartition("@")[0] + "@" + a.rpartition("@")[2].lower(), n, s, "import:rows.csv",
                           edition=e if editions else "bilingual")
                for a, n, s, e in rows]
    expected, counts = reference_import(before, incoming, str(path), resubscribe, editions)
    with Store.open(folder / "list.db") as store:
        store.insert(before.values())
        report = subscriber_list.import_csv(store, path, resubscribe=resubscribe)
        after = {s.address.casefold(): (s.address, s.name, s.status, s.reason, s.edition) for s in store.subscribers()}
    assert after == expected
    assert (sum(report.added.values()), report.updated, report.unchanged, report.resubscribed) == (
        counts["added"], counts["updated"], counts["unchanged"], counts["resubscribed"])
    assert report.skipped[SKIP_REASON_DUPLICATE] == counts["duplicate"]
    assert all(report.skipped[status] == counts[status] for status in ("unsubscribed", "bounced", "complained"))


@pytest.mark.parametrize("moment", [0.5, 1.5])
def test_an_import_killed_at_any_moment_leaves_all_or_nothing(newsletter_config: Path, tmp_path: Path, moment: float) -> None:
    """kill -9 while a big file streams through the staging table, or while it is applied."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "big.csv"
    path.write_text("email\n" + "".join(f"reader{n}@example.com\n" for n in range(200_000)), encoding="utf-8")
    database = newsletter_config.parent / "newsletter.db"
    with Store.open(database) as store:
        seed(store, ("old@example.com", "subscribed"))
    command = [sys.executable, "-m", "newsletter", "--config", str(newsletter_config), "subscribers", "import", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(moment)  # the adversary's moment; whatever it is, the outcome must be all or nothing
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    with Store.open(database) as store:
        assert store.count_subscribed() in (1, 200_001)
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    with Store.open(database) as store:
        assert store.count_subscribed() == 200_001


# Editions: the edition column, `add --edition`, stats by edition


def editions_of(store: Store) -> dict[str, str]:
    return {subscriber.address: subscriber.edition for subscriber in store.subscribers()}


def test_an_edition_column_sets_each_readers_edition_and_an_odd_value_is_a_bad_row(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "editions.csv", "\ufeffEmail,Name,Edition\n"  # 1 Excel's "CSV UTF-8": a BOM
                 "a@example.com,에이,ko\n"  # 2
                 "b@example.com,,  EN \n"  # 3 case and spaces as a spreadsheet leaves them
                 "c@example.com,,\n"  # 4 empty: bilingual
                 "d@example.com,,English\n"  # 5
                 "e@example.com,,ＫＯ\n"  # 6 full-width, as a Korean keyboard's full-width mode types it
                 "f@example.com,,fr\n"  # 7 bad
                 "g@example.com,,=en\n"  # 8 bad: a formula-looking cell is not an edition
                 "h@example.com,,ko en\n"  # 9 bad: two at once
                 "i@example.com,,'=ko\n")  # 10 bad: guarded by an export, still not an edition
    with pytest.raises(ImportRejected) as rejected:
        subscriber_list.import_csv(store, path)
    assert [(p.line, p.value) for p in rejected.value.report.problems] == [
        (7, "f@example.com"), (8, "g@example.com"), (9, "h@example.com"), (10, "i@example.com")]
    assert "unknown edition 'fr'; expected one of bilingual, ko, en" in rejected.value.report.problems[0].reason
    assert dump(store) == []  # all or nothing
    report = subscriber_list.import_csv(store, path, skip_invalid=True)
    assert report.skipped["invalid"] == 4
    assert editions_of(store) == {"a@example.com": "ko", "b@example.com": "en", "c@example.com": "bilingual",
                                  "d@example.com": "en", "e@example.com": "ko"}
    assert store.count_by_edition() == {"bilingual": 1, "ko": 2, "en": 2}


def test_a_bad_row_names_an_overlong_cell_and_address_by_their_first_characters(run, tmp_path: Path) -> None:
    path = write(tmp_path / "long.csv", f"email,edition\na@example.com,{'k' * 5000}\n{'b' * 3000}@example.com,ko\n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        f"{path}:2: unknown edition '{'k' * 60}'… (5,000 characters); expected one of bilingual, ko, en "
        "(empty: bilingual) ('a@example.com')",
        f"{path}:3: The email address is too long (2758 characters too many). ('{'b' * 60}'… (3,012 characters))"]


def test_a_korean_excel_file_in_cp949_names_editions_in_korean(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "excel.csv", "이메일,이름,에디션\r\nminji@example.com,김민지,영어\r\n"
                 "jihoon@example.com,박지훈,한국어\r\nseoyeon@example.org,이서연,\r\n", "cp949")
    report = subscriber_list.import_csv(store, path)
    assert report.encoding == "cp949" and report.editions
    assert editions_of(store) == {"jihoon@example.com": "ko", "minji@example.com": "en", "seoyeon@example.org": "bilingual"}


def test_a_file_without_an_edition_column_keeps_each_readers_edition_and_one_with_it_changes_them(
        store: Store, tmp_path: Path) -> None:
    first = write(tmp_path / "first.csv", "email,edition\na@example.com,ko\nb@example.com,en\n")
    subscriber_list.import_csv(store, first)
    assert store.get("a@example.com").edition_at is None  # a new reader's edition: nobody chose yet
    plain = subscriber_list.import_csv(store, write(tmp_path / "plain.csv", "email\na@example.com\nb@example.com\n"))
    assert (plain.updated, plain.unchanged) == (0, 2)
    assert editions_of(store) == {"a@example.com": "ko", "b@example.com": "en"}
    changed = subscriber_list.import_csv(store, write(tmp_path / "changed.csv", "email,edition\na@example.com,\n"
                                                      "b@example.com,en\n"))
    assert (changed.updated, changed.unchanged) == (1, 1)  # empty means bilingual: a is changed back
    assert editions_of(store) == {"a@example.com": "bilingual", "b@example.com": "en"}
    assert store.get("a@example.com").edition_at is not None  # the editor's choice, ordered as such


def test_add_with_an_edition_stats_by_edition_and_the_export_column(run, newsletter_config: Path, tmp_path: Path) -> None:
    assert "added 1" in run("subscribers", "add", "a@example.com", "--edition", "EN").stdout  # any case, as a file may
    assert run("subscribers", "add", "b@example.com").exit_code == 0
    assert "updated 1" in run("subscribers", "add", "b@example.com", "--edition", "ko").stdout
    assert "unchanged 1" in run("subscribers", "add", "a@example.com").stdout  # keeps en
    assert run("subscribers", "add", "c@example.com", "--edition", "fr").exit_code == 2  # click names the choices
    with Store.open(newsletter_config.parent / "newsletter.db") as store:
        assert editions_of(store) == {"a@example.com": "en", "b@example.com": "ko"}
    stats = run("subscribers", "stats").stdout.splitlines()
    assert [line.split() for line in stats[:4]] == [["subscribed", "2"], ["bilingual", "0"], ["ko", "1"], ["en", "1"]]
    assert len({len(line) for line in stats[:4]}) == 1  # the counts in one column
    exported = tmp_path / "out.csv"
    run("subscribers", "export", "-o", str(exported))
    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
    assert [(row["email"], row["edition"]) for row in rows] == [("a@example.com", "en"), ("b@example.com", "ko")]


# --- no editor's command weakens an opt-out (subscribed < unsubscribed < bounced < complained) --------


def _status(config_path: Path, address: str) -> str | None:
    with Store.open(config_path.parent / "newsletter.db") as opened:
        found = opened.get(address)
    return found.status if found else None


@pytest.mark.parametrize("held", ["bounced", "complained"])
def test_an_editors_unsubscribe_leaves_a_bounce_or_complaint_which_a_later_confirmation_cannot_lift(
        run, newsletter_config: Path, held: str) -> None:
    from newsletter.config import EventSettings
    from newsletter.events import SubscribeConfirmed
    from newsletter.events.apply import apply_locally

    database = newsletter_config.parent / "newsletter.db"
    with Store.open(database) as opened:
        seed(opened, ("kim@example.com", held), ("lee@example.com", "subscribed"))
    result = run("unsubscribe", "Kim@example.com")
    assert result.exit_code == 0
    assert result.stdout == f"Kim@example.com stays {held}: an unsubscribe never weakens a bounce or a complaint " \
                            "(nothing changed)\n"
    assert run("unsubscribe", "lee@example.com").stdout == "unsubscribed lee@example.com (was subscribed)\n"
    # A confirmation link issued after the editor's unsubscribe (event times are whole seconds)
    # lifts an unsubscribe, never more.
    time.sleep(1.1)
    for address in ("kim@example.com", "lee@example.com"):
        apply_locally(database, EventSettings(), SubscribeConfirmed(address, requested_at=dt.datetime.now(dt.UTC)))
    assert (_status(newsletter_config, "kim@example.com"), _status(newsletter_config, "lee@example.com")) == (
        held, "subscribed")


def test_removing_an_address_that_left_is_refused_unless_forget(run, newsletter_config: Path, tmp_path: Path) -> None:
    with Store.open(newsletter_config.parent / "newsletter.db") as opened:
        seed(opened, ("angry@example.com", "complained"), ("gone@example.com", "unsubscribed"))
    for address, status in (("angry@example.com", "complained"), ("gone@example.com", "unsubscribed")):
        refused = run("subscribers", "remove", address)
        assert refused.exit_code == 1
        assert f"{address} is {status}: deleted, an import or a confirmation could subscribe it again, so it is " \
               "kept; pass --forget" in refused.stderr
    imported = run("subscribers", "import", str(write(tmp_path / "again.csv", "email\nangry@example.com\n")))
    assert "skipped 1: complained 1" in imported.stdout
    assert run("subscribers", "remove", "angry@example.com", "--forget").stdout == "removed angry@example.com\n"
    assert _status(newsletter_config, "angry@example.com") is None


@pytest.mark.parametrize("held", SUBSCRIBER_STATUSES)
@pytest.mark.parametrize("in_file", ["unsubscribed", "bounced", "complained"])
def test_an_imported_status_column_raises_an_opt_out_and_never_lowers_one(store: Store, tmp_path: Path, held: str,
                                                                        in_file: str) -> None:
    seed(store, ("reader@example.com", held))
    subscriber_list.import_csv(store, write(tmp_path / "list.csv", f"email,status\nreader@example.com,{in_file}\n"))
    assert store.get("reader@example.com").status == max(held, in_file, key=STATUS_STRENGTH.__getitem__)


def test_duplicates_in_a_file_keep_the_strongest_opt_out_whatever_their_order(store: Store, tmp_path: Path) -> None:
    rows = "email,status,reason\na@example.com,unsubscribed,left\na@example.com,complained,spam report\n" \
           "a@example.com,subscribed,\nb@example.com,complained,spam report\nb@example.com,unsubscribed,left\n"
    report = subscriber_list.import_csv(store, write(tmp_path / "dupes.csv", rows))
    assert report.skipped[subscriber_list.SKIP_REASON_DUPLICATE] == 3
    assert {s.address: (s.status, s.reason) for s in dump(store)} == {
        "a@example.com": ("complained", "spam report"), "b@example.com": ("complained", "spam report")}
