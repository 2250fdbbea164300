"""The subscriber list as editors handle it: CSV import and export, adding one address by hand.

An import is planned in full before anything is written (every row read, every address
validated, duplicates merged) and then applied in one transaction: it changes the whole list as
the file says, or nothing. Addresses that unsubscribed, bounced or complained are never
subscribed again by an import unless the editor asks for it (`resubscribe=True`).
"""

from __future__ import annotations

import codecs
import csv
import email.utils
import datetime as dt
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import email_validator

from .errors import StoreError
from .model import SUBSCRIBER_STATUSES, Subscriber
from .store import Store, address_key, utc_now

# Header cells (compared without case, spaces, dots, hyphens or underscores) that name a column.
EMAIL_HEADERS = frozenset(
    {"email", "emailaddress", "mail", "mailaddress", "이메일", "이메일주소", "메일", "메일주소", "전자우편", "전자우편주소", "전자메일"}
)
NAME_HEADERS = frozenset({"name", "fullname", "displayname", "이름", "성명", "성함", "닉네임", "별명"})
# The columns `export` writes; an import reads the optional ones when present, so an export
# imports back to the same list.
EXPORT_COLUMNS = ("email", "name", "status", "source", "joined_at", "changed_at", "reason")

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
    applied: bool = False

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


def decode(data: bytes, source: str) -> tuple[str, str]:
    """(text, encoding): UTF-8 with or without a BOM, UTF-16 with a BOM, else CP949."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    elif data.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    else:
        candidates = ["utf-8", "cp949"]  # Korean Excel saves "CSV" as CP949
    for encoding in candidates:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as error:
            failure = error
    line = data[: failure.start].count(b"\n") + 1
    raise StoreError(f"{source}:{line}: not {' or '.join(candidates)} text ({failure.reason})")


def _delimiter(text: str) -> str:
    """The separator of the first non-blank line: Excel writes ';' in some locales, tabs as text."""
    first = next((line for line in text.splitlines() if line.strip()), "")
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


def validate_address(value: str) -> tuple[str, str | None]:
    """(normalised ASCII address, display name if one was given as `Name <address>`), or
    EmailNotValidError with the reason.

    Addresses must be ASCII before the @ (SES does not take SMTPUTF8); Korean domain names are
    kept in their ASCII (IDNA) form. No DNS lookups: imports must work offline and fast.
    """
    display_name = None
    if value.endswith(">") and "<" in value:
        # Editors paste `홍길동 <hong@example.org>` unquoted, which email-validator refuses.
        display_name, value = email.utils.parseaddr(value)
        if not value:
            raise email_validator.EmailSyntaxError("not an address in the form Name <address>")
    result = email_validator.validate_email(value, check_deliverability=False)
    return result.ascii_email, display_name or None


def checked_address(value: str) -> tuple[str, str | None]:
    """`validate_address` for an address typed on the command line: StoreError if it is bad."""
    try:
        return validate_address(value)
    except email_validator.EmailNotValidError as error:
        raise StoreError(f"{value!r}: {error}") from None


def _clean_name(value: str) -> str | None:
    # Names go into a To: header; newlines and tabs inside a quoted CSV cell become spaces.
    return " ".join(value.split()) or None


def _parse_row(cells: list[str], columns: _Columns, source: str) -> Subscriber:
    """One data row as a subscriber (times None unless the file has them), or ValueError."""
    value = _cell(cells, columns.email)
    if not value:
        raise ValueError("no address")
    try:
        address, display_name = validate_address(value)
    except email_validator.EmailNotValidError as error:
        raise ValueError(str(error)) from None
    status = _cell(cells, columns.extra.get("status")).lower() or "subscribed"
    if status not in SUBSCRIBER_STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(SUBSCRIBER_STATUSES)}")
    return Subscriber(
        address=address,
        name=_clean_name(_cell(cells, columns.name)) or display_name,
        status=status,
        source=_cell(cells, columns.extra.get("source")) or source,
        joined_at=_time(_cell(cells, columns.extra.get("joined_at"))),
        changed_at=_time(_cell(cells, columns.extra.get("changed_at"))),
        reason=_cell(cells, columns.extra.get("reason")) or None,
    )


def read_rows(text: str, source: str, report: ImportReport) -> Iterator[Subscriber]:
    """The good rows of a CSV text; bad rows and blank lines go into `report`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
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
                if is_header:
                    continue
            report.rows += 1
            try:
                yield _parse_row(cells, columns, label)
            except ValueError as error:
                report.problems.append(RowProblem(line, _cell(cells, columns.email), str(error)))
    except csv.Error as error:
        raise StoreError(f"{source}:{reader.line_num}: not valid CSV ({error})") from None


def _merge_duplicates(rows: Iterable[Subscriber], report: ImportReport) -> list[Subscriber]:
    """One subscriber per address: the first row wins, a later one may add a missing name, and an
    opt-out anywhere in the file is kept."""
    merged: dict[str, Subscriber] = {}
    for row in rows:
        key = address_key(row.address)
        first = merged.get(key)
        if first is None:
            merged[key] = row
            continue
        report.skipped[SKIP_REASON_DUPLICATE] += 1
        if first.name is None and row.name:
            first = replace(first, name=row.name)
        if first.status == "subscribed" and row.status != "subscribed":
            first = replace(first, status=row.status, reason=row.reason)
        merged[key] = first
    return list(merged.values())


# Applying


def _apply(
    store: Store, incoming: list[Subscriber], report: ImportReport, *, resubscribe: bool, dry_run: bool = False
) -> None:
    now = utc_now()
    # A dry run makes the same writes and rolls them back: its counts cannot drift from a real one.
    with store.transaction(commit=not dry_run):
        existing = store.find(subscriber.address for subscriber in incoming)
        new: list[Subscriber] = []
        changed: list[Subscriber] = []
        for subscriber in incoming:
            old = existing.get(address_key(subscriber.address))
            if old is None:
                new.append(replace(subscriber, joined_at=subscriber.joined_at or now,
                                   changed_at=subscriber.changed_at or now))
                report.added[subscriber.status] += 1
            elif old.status == "subscribed" and subscriber.status != "subscribed":
                changed.append(replace(old, status=subscriber.status, changed_at=now,
                                       reason=subscriber.reason or f"{subscriber.status} in {report.source}"))
                report.updated += 1
            elif old.status != "subscribed" and subscriber.status == "subscribed":
                if not resubscribe:
                    report.skipped[old.status] += 1
                    continue
                changed.append(replace(old, name=subscriber.name or old.name, status="subscribed",
                                       changed_at=now, reason=f"resubscribed by {report.source}"))
                report.resubscribed += 1
            elif subscriber.name and subscriber.name != old.name:
                changed.append(replace(old, name=subscriber.name, changed_at=now))
                report.updated += 1
            else:
                report.unchanged += 1
        store.insert(new)
        store.update(changed)
    report.applied = not dry_run


def import_csv(
    store: Store, path: str | Path, *, resubscribe: bool = False, skip_invalid: bool = False, dry_run: bool = False
) -> ImportReport:
    """Import a CSV file into the store, all or nothing.

    Raises ImportRejected (nothing changed) if a row is bad, unless `skip_invalid`; the report
    then still lists every bad row. `dry_run` plans and counts but writes nothing.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise StoreError(f"{path}: cannot read ({error.strerror})") from None
    report = ImportReport(source=str(path))
    text, report.encoding = decode(data, str(path))
    incoming = _merge_duplicates(read_rows(text, str(path), report), report)
    if report.problems and not skip_invalid:
        raise ImportRejected(report)
    if report.problems:
        report.skipped["invalid"] = len(report.problems)
    _apply(store, incoming, report, resubscribe=resubscribe, dry_run=dry_run)
    return report


def add(store: Store, address: str, name: str | None = None, *, resubscribe: bool = False, source: str = "cli") -> ImportReport:
    """Add one subscriber by hand (the same rules as an import of a one-row file)."""
    normalised, display_name = checked_address(address)
    report = ImportReport(source=source)
    subscriber = Subscriber(normalised, _clean_name(name or "") or display_name, source=source)
    _apply(store, [subscriber], report, resubscribe=resubscribe)
    return report


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
        )
        writer.writerow([guard_formula(cell) for cell in cells])
        count += 1
    return count
