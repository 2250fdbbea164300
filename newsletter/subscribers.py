"""The subscriber list as editors handle it: CSV import and export, adding one address by hand.

An import is planned in full before anything is written (every row read, every address
validated, duplicates merged) and then applied in one transaction: it changes the whole list as
the file says, or nothing. Addresses that unsubscribed, bounced or complained are never
subscribed again by an import unless the editor asks for it (`resubscribe=True`).

The file is streamed: rows go through a temporary SQLite table that merges duplicates as they
arrive (`store.import_staging()`), so memory does not grow with the file, only with its bad rows.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import addresses
from .errors import StoreError
from .model import DEFAULT_EDITION, EDITIONS, SUBSCRIBER_STATUSES, Subscriber, weakens
from .store import Store, utc_now

# Header cells (compared without case, spaces, dots, hyphens or underscores) that name a column.
EMAIL_HEADERS = frozenset(
    {"email", "emailaddress", "mail", "mailaddress", "이메일", "이메일주소", "메일", "메일주소", "전자우편", "전자우편주소", "전자메일"}
)
NAME_HEADERS = frozenset({"name", "fullname", "displayname", "이름", "성명", "성함", "닉네임", "별명"})
EDITION_HEADERS = frozenset({"edition", "에디션"})
# The columns `export` writes; an import reads the optional ones when present, so an export
# imports back to the same list.
EXPORT_COLUMNS = ("email", "name", "status", "source", "joined_at", "changed_at", "reason", "edition")
# An edition cell as editors may write it (compared without case or spaces); empty: bilingual.
EDITION_SPELLINGS = {
    **{edition: edition for edition in EDITIONS},
    "korean": "ko", "koreanonly": "ko", "한국어": "ko", "한국어만": "ko", "한글": "ko",
    "english": "en", "englishonly": "en", "영어": "en", "영어만": "en",
    "both": "bilingual", "한영": "bilingual", "영한": "bilingual",
}

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
SKIP_REASON_DUPLICATE = "duplicate in file (merged)"


@dataclass(frozen=True)
class RowProblem:
    line: int
    value: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.value!r}: {self.reason}"


@dataclass
class ImportReport:
    """What an import found and did; `applied` is False when it changed nothing."""

    source: str
    encoding: str = ""
    rows: int = 0  # data rows read, blank lines not counted
    blank_lines: int = 0
    added: Counter[str] = field(default_factory=Counter)  # by status of the new row
    updated: int = 0  # name changed, or an opt-out in the file recorded
    resubscribed: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    problems: list[RowProblem] = field(default_factory=list)
    notes: list[RowProblem] = field(default_factory=list)  # rows imported with a change, e.g. a cleaned name
    applied: bool = False
    # The file says each row's edition (an edition column): it sets them, stored subscribers
    # included; without one, stored subscribers keep theirs and new ones get the bilingual.
    editions: bool = False

    def summary(self) -> str:
        """One short line for the CLI."""
        added = sum(self.added.values())
        opted_out = added - self.added["subscribed"]
        parts = [f"added {added}" + (f" ({opted_out} not subscribed)" if opted_out else "")]
        parts += [f"updated {self.updated}", f"unchanged {self.unchanged}"]
        if self.resubscribed:
            parts.append(f"resubscribed {self.resubscribed}")
        skipped = sum(self.skipped.values())
        if skipped:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items()))
            parts.append(f"skipped {skipped}: {reasons}")
        return "; ".join(parts)


class ImportRejected(StoreError):
    """The file has rows that cannot be imported; nothing was changed. `report.problems` lists them."""

    def __init__(self, report: ImportReport):
        self.report = report
        count = len(report.problems)
        super().__init__(
            f"{report.source}: {count} bad row{'s' if count != 1 else ''}, nothing imported "
            "(fix them, or pass --skip-invalid to import the rest)"
        )


# Reading


def guard_formula(cell: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula with ' (which `unguard_formula` undoes)."""
    if cell.startswith(FORMULA_TRIGGERS) or cell != unguard_formula(cell):
        return "'" + cell
    return cell


def unguard_formula(cell: str) -> str:
    if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_TRIGGERS):
        return cell[1:]
    return cell


DECODE_CHUNK = 1 << 20


def detect_encoding(path: Path) -> str:
    """UTF-8 with or without a BOM, UTF-16 with a BOM, else CP949: the first that decodes the whole
    file, read a chunk at a time. StoreError with the line where the last candidate failed."""
    with path.open("rb") as binary:
        start = binary.read(4)
        if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            candidates = ["utf-16"]
        elif start.startswith(codecs.BOM_UTF8):
            candidates = ["utf-8-sig"]
        else:
            candidates = ["utf-8", "cp949"]  # Korean Excel saves "CSV" as CP949
        for encoding in candidates:
            binary.seek(0)
            decoder = codecs.getincrementaldecoder(encoding)()
            lines_before = 0
            try:
                while chunk := binary.read(DECODE_CHUNK):
                    decoder.decode(chunk)
                    lines_before += chunk.count(b"\n")
                decoder.decode(b"", final=True)
                return encoding
            except UnicodeDecodeError as error:
                # error.object: the chunk, after at most a few bytes of an unfinished character
                failure = (lines_before + error.object[: error.start].count(b"\n") + 1, error.reason)
    raise StoreError(f"{path}:{failure[0]}: not {' or '.join(candidates)} text ({failure[1]})")


def _delimiter(text: TextIO) -> str:
    """The separator of the first non-blank line: Excel writes ';' in some locales, tabs as text."""
    first = next((line for line in text if line.strip()), "")
    text.seek(0)
    counts = {delimiter: first.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _header_token(cell: str) -> str:
    return re.sub(r"[\s._\-]", "", cell).casefold()


@dataclass(frozen=True)
class _Columns:
    email: int
    name: int | None = None
    extra: dict[str, int] = field(default_factory=dict)  # export columns other than email/name


def _columns(first_row: list[str], source: str, line: int) -> tuple[_Columns, bool]:
    """The columns and whether the first row is a header (a file may have no header at all)."""
    tokens = [_header_token(cell) for cell in first_row]
    email = next((i for i, token in enumerate(tokens) if token in EMAIL_HEADERS), None)
    if email is not None:
        name = next((i for i, token in enumerate(tokens) if token in NAME_HEADERS), None)
        optional = {_header_token(column): column for column in EXPORT_COLUMNS[2:]}
        optional.update(dict.fromkeys(EDITION_HEADERS, "edition"))
        extra = {optional[token]: i for i, token in enumerate(tokens) if token in optional}
        return _Columns(email, name, extra), True
    with_at = [i for i, cell in enumerate(first_row) if "@" in cell]
    if len(with_at) == 1:
        others = [i for i in range(len(first_row)) if i != with_at[0]]
        return _Columns(with_at[0], others[0] if len(others) == 1 else None), False
    raise StoreError(
        f"{source}:{line}: no email column; name it in a header row (email, 이메일, 메일주소, ...)"
    )


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return unguard_formula(cells[index]).strip()


def _time(value: str) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)  # ValueError names the bad value
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def checked_address(value: str) -> tuple[str, str | None]:
    """`addresses.parse` for an address typed on the command line: StoreError if it is bad."""
    try:
        return addresses.parse(value)
    except addresses.AddressError as error:
        raise StoreError(f"{value!r}: {error}") from None


NAME_CLEANED = "control characters removed from the name"
# Unicode's control characters (category Cc: C0, DEL, C1), lone surrogates (Cs), and the bidi
# embeddings, overrides and isolates (U+202A-202E, U+2066-2069), which would reorder the rest of a
# To: line as a client shows it. The marks a right-to-left name needs (LRM, RLM) and the joiners stay.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def clean_name(value: str) -> tuple[str | None, bool]:
    """(the name fit for a To: line, whether invisible control characters had to be removed).

    Newlines and tabs inside a quoted CSV cell become spaces; other control characters (a BEL,
    an ESC from a terminal paste) cannot go into a header and would fail the send, so they go."""
    name = " ".join(value.split())
    if not _CONTROL.search(name):
        return name or None, False
    return " ".join(_CONTROL.sub("", name).split()) or None, True


def quoted(value: str, limit: int = 60) -> str:
    """`value` as Python quotes it, cut to `limit` characters: a message names a bad cell without
    pasting a pasted essay back at the editor."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} characters)"


def read_edition(value: str) -> str:
    """An edition as written in a file or typed (empty: bilingual); ValueError for anything else."""
    # NFKC: the full-width letters of a Korean keyboard's full-width mode ("ＫＯ") are letters too.
    edition = EDITION_SPELLINGS.get(_header_token(unicodedata.normalize("NFKC", value))) if value.strip() else DEFAULT_EDITION
    if edition is None:
        raise ValueError(f"unknown edition {quoted(value)}; expected one of {', '.join(EDITIONS)} (empty: {DEFAULT_EDITION})")
    return edition


def _parse_row(cells: list[str], columns: _Columns, source: str) -> tuple[Subscriber, bool]:
    """One data row as a subscriber (times None unless the file has them) and whether its name
    was cleaned; ValueError with the reason for a bad row."""
    value = _cell(cells, columns.email)
    if not value:
        raise ValueError("no address")
    address, display_name = addresses.parse(value)  # AddressError is a ValueError
    status = "subscribed"
    if "status" in columns.extra:
        status = _cell(cells, columns.extra["status"]).lower() or status
    if status not in SUBSCRIBER_STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(SUBSCRIBER_STATUSES)}")
    name, cleaned = clean_name(_cell(cells, columns.name) or display_name or "")
    if not columns.extra:  # the usual file: no export columns to read
        return Subscriber(address, name, status, source), cleaned
    edition = read_edition(_cell(cells, columns.extra["edition"])) if "edition" in columns.extra else DEFAULT_EDITION
    subscriber = Subscriber(
        address=address,
        name=name,
        status=status,
        source=_cell(cells, columns.extra.get("source")) or source,
        joined_at=_time(_cell(cells, columns.extra.get("joined_at"))),
        changed_at=_time(_cell(cells, columns.extra.get("changed_at"))),
        reason=_cell(cells, columns.extra.get("reason")) or None,
        edition=edition,
    )
    return subscriber, cleaned


def read_rows(text: TextIO, source: str, report: ImportReport) -> Iterator[Subscriber]:
    """The good rows of a CSV text stream; bad rows, notes and blank lines go into `report`."""
    reader = csv.reader(text, delimiter=_delimiter(text))
    columns: _Columns | None = None
    label = f"import:{Path(source).name}"
    try:
        while True:
            line = reader.line_num + 1  # where this record starts (a quoted cell may span lines)
            try:
                cells = next(reader)
            except StopIteration:
                return
            if not any(cell.strip() for cell in cells):
                report.blank_lines += 1
                continue
            if columns is None:
                columns, is_header = _columns(cells, source, line)
                report.editions = "edition" in columns.extra
                if is_header:
                    continue
            report.rows += 1
            try:
                subscriber, cleaned = _parse_row(cells, columns, label)
            except ValueError as error:
                report.problems.append(RowProblem(line, _cell(cells, columns.email), str(error)))
                continue
            if cleaned:
                report.notes.append(RowProblem(line, _cell(cells, columns.email), NAME_CLEANED))
            yield subscriber
    except csv.Error as error:
        raise StoreError(f"{source}:{reader.line_num}: not valid CSV ({error})") from None


# Applying


def _import(
    store: Store, rows: Iterable[Subscriber], report: ImportReport, *,
    resubscribe: bool, skip_invalid: bool = False, dry_run: bool = False,
) -> None:
    """Stage `rows` (merging duplicates), refuse them all if any row was bad (unless
    `skip_invalid`), then apply the plan in one transaction."""
    with store.import_staging() as staging:
        staging.add(rows)
        duplicates = staging.duplicates()
        if duplicates:
            report.skipped[SKIP_REASON_DUPLICATE] = duplicates
        if report.problems and not skip_invalid:
            raise ImportRejected(report)
        if report.problems:
            report.skipped["invalid"] = len(report.problems)
        # A dry run makes the same writes and rolls them back: its counts cannot drift from a real one.
        with store.transaction(commit=not dry_run):
            for (verdict, status), count in staging.plan(resubscribe=resubscribe, editions=report.editions).items():
                _count(report, verdict, status, count)
            staging.apply(utc_now(), report.source)
    report.applied = not dry_run


def _count(report: ImportReport, verdict: str, status: str, count: int) -> None:
    if verdict == "new":
        report.added[status] += count
    elif verdict in ("opt-out", "edit"):
        report.updated += count
    elif verdict == "resubscribe":
        report.resubscribed += count
    elif verdict == "unchanged":
        report.unchanged += count
    else:  # left:STATUS, an address that left and stays out
        report.skipped[verdict.removeprefix("left:")] += count


def import_csv(
    store: Store, path: str | Path, *, resubscribe: bool = False, skip_invalid: bool = False, dry_run: bool = False
) -> ImportReport:
    """Import a CSV file into the store, all or nothing.

    Raises ImportRejected (nothing changed) if a row is bad, unless `skip_invalid`; the report
    then still lists every bad row. `dry_run` plans and counts but writes nothing.
    """
    path = Path(path)
    report = ImportReport(source=str(path))
    try:
        report.encoding = detect_encoding(path)
        text = path.open(encoding=report.encoding, newline="")
    except OSError as error:
        raise StoreError(f"{path}: cannot read ({error.strerror})") from None
    with text:
        rows = read_rows(text, str(path), report)
        _import(store, rows, report, resubscribe=resubscribe, skip_invalid=skip_invalid, dry_run=dry_run)
    return report


def add(store: Store, address: str, name: str | None = None, *, resubscribe: bool = False, source: str = "cli",
        edition: str | None = None) -> ImportReport:
    """Add one subscriber by hand (the same rules as an import of a one-row file); `edition`
    sets theirs (None: bilingual for a new one, unchanged for one on the list)."""
    normalised, display_name = checked_address(address)
    report = ImportReport(source=source, editions=edition is not None)
    cleaned_name, cleaned = clean_name(name or display_name or "")
    if cleaned:
        report.notes.append(RowProblem(0, address, NAME_CLEANED))
    try:
        chosen = read_edition(edition or "")
    except ValueError as error:
        raise StoreError(str(error)) from None
    _import(store, [Subscriber(normalised, cleaned_name, source=source, edition=chosen)], report,
            resubscribe=resubscribe)
    return report


@dataclass(frozen=True)
class Unsubscribed:
    """What `unsubscribe` did for one address."""

    address: str
    previous: str | None  # the status it had; None: it was not on the list
    undeliverable: str | None = None  # why the list cannot hold this address (nothing recorded)

    @property
    def kept_stronger(self) -> bool:
        """It had bounced or complained, which an unsubscribe leaves as it is (the stronger stays)."""
        return self.previous is not None and weakens("unsubscribed", self.previous)


def unsubscribe(store: Store, value: str, reason: str) -> Unsubscribed:
    """Unsubscribe an address as typed; never fails on the address itself.

    An address that bounced or complained keeps that status: an unsubscribe is a weaker opt-out,
    which a later confirmation could lift. An address not on the list is recorded as
    unsubscribed, so that no import adds it later. One
    that the list cannot hold (not an address, or not deliverable by SES) cannot have been mailed
    either: it is unsubscribed if an older list holds it as written, and otherwise nothing is done,
    with the reason."""
    try:
        address, _ = addresses.parse(value)
    except addresses.AddressError as error:
        as_written = value.strip()
        return Unsubscribed(as_written, store.set_status(as_written, "unsubscribed", reason), str(error))
    return Unsubscribed(address, store.set_status(address, "unsubscribed", reason, record_unknown=True))


# Exporting


def export_csv(store: Store, out: TextIO, statuses: Iterable[str] = SUBSCRIBER_STATUSES) -> int:
    """Write the subscribers as CSV (EXPORT_COLUMNS); returns how many. `import_csv` reads it back."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for subscriber in store.subscribers(tuple(statuses)):
        cells = (
            subscriber.address,
            subscriber.name or "",
            subscriber.status,
            subscriber.source,
            subscriber.joined_at.isoformat() if subscriber.joined_at else "",
            subscriber.changed_at.isoformat() if subscriber.changed_at else "",
            subscriber.reason or "",
            subscriber.edition,
        )
        writer.writerow([guard_formula(cell) for cell in cells])
        count += 1
    return count
