"""`newsletter translate`: fill each "(번역 예정 · to be translated)" part of an issue by piping its
English original through the configured command (any program reading stdin, writing stdout).

Safe to stop at any moment and to run again:
- each filled part is written back on its own, atomically (temp file + rename), so a kill -9
  loses at most the part in flight, and a second run starts where the first stopped;
- before each write the file is read again: if the editor saved it meanwhile, the part is put
  into the file as it is now (their edits kept byte for byte), never into the copy read earlier;
- only the marker's own text on its line is replaced: every other byte of the file stays;
- a result that would not parse, or would change anything but that one part, is not written.
A filled part starts with "(기계 번역 · machine translation)" until the editor reviews it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .atomicfile import leftover_temps, write_atomically
from .config import TranslateSettings
from .draft.markers import (
    MACHINE, STATE_TO_REVIEW, STATE_TO_TRANSLATE, TO_TRANSLATE, DraftPart, draft_parts, replace_on_line,
)
from .errors import DraftError, ParseError
from .model import Issue
from .parse import parse_issue_bytes

WRITE_TRIES = 20  # re-reads when the file keeps changing between our read and our rename
# The longest answer taken for a part: ANSWER_FACTOR times the English sent, and never less than
# ANSWER_FLOOR bytes. In the sample week the Korean of a part is 0.8-1.5 times its English in
# UTF-8 bytes (1.16 overall); even a syllable for every English letter would be 3 times (a Hangul
# syllable is 3 bytes). The floor leaves a short title room for a model's preamble. A part is at
# most an arXiv abstract (1,920 characters), so an answer stops at about 8 KB: a runaway model
# cannot make a 120 MB issue whose HTML the email's CSS inliner (libxml2: 10 MB per text) cuts.
ANSWER_FACTOR = 4
ANSWER_FLOOR = 4096
STDERR_KEPT = 4096  # the tail of what a command says on stderr (its last line is shown)
SHOWN_CHARACTERS = 200  # of that line, after escaping


@dataclass(frozen=True)
class Job:
    """One part to translate, as found when the run started."""

    line: int
    where: str
    kind: str  # "title" | "text"
    english: str


@dataclass(frozen=True)
class PartOutcome:
    job: Job
    filled: bool
    error: str | None = None  # why it stays marked
    attempts: int = 0
    merged: bool = False  # the file had changed on disk: written into the editor's newer version
    dropped: bool = False  # the editor wrote this part meanwhile: their text kept, the result dropped


@dataclass
class TranslateSummary:
    path: str
    outcomes: list[PartOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # parts marked but with no English to translate from

    @property
    def filled(self) -> list[PartOutcome]:
        return [outcome for outcome in self.outcomes if outcome.filled]

    @property
    def failed(self) -> list[PartOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.filled and not outcome.dropped]

    @property
    def dropped(self) -> list[PartOutcome]:
        return [outcome for outcome in self.outcomes if outcome.dropped]

    @property
    def merged(self) -> bool:
        return any(outcome.merged for outcome in self.outcomes)


class CommandFailed(Exception):
    """One call of the translate command gave no usable text (worth another try)."""


def plan(path: str | Path) -> tuple[list[Job], list[str]]:
    """The parts to translate, and the marked parts that have no English original to work from."""
    issue = parse_issue_bytes(Path(path).read_bytes(), path)
    jobs, skipped = [], []
    for part in draft_parts(issue):
        if part.state != STATE_TO_TRANSLATE:
            continue
        if not part.english or not part.english.strip():
            skipped.append(f"line {part.line}: {part.where}: no English original to translate from")
            continue
        jobs.append(Job(part.line, part.where, part.kind, part.english))
    return jobs, skipped


def command_line(job: Job, settings: TranslateSettings) -> str | None:
    """The configured command for this part, as written in the config (None: none set)."""
    return (settings.title_command if job.kind == "title" else None) or settings.command


def command_for(job: Job, settings: TranslateSettings) -> list[str]:
    command = command_line(job, settings)
    if not command:
        raise DraftError('no translate command; set [translate] command = "..." in newsletter.toml '
                         "(a program that reads English on stdin and writes Korean to stdout)")
    return shlex.split(command)


def translate_issue(
    path: str | Path, settings: TranslateSettings, on_part: Callable[[PartOutcome], None] | None = None
) -> TranslateSummary:
    path = Path(path)
    with _exclusive(path):
        for leftover in leftover_temps(path):
            leftover.unlink(missing_ok=True)  # a killed run's half-written copy; the file itself is whole
        jobs, skipped = plan(path)
        summary = TranslateSummary(str(path), skipped=skipped)
        last_seen = _read(path)
        for job in jobs:
            outcome, last_seen = _do(job, path, settings, last_seen)
            summary.outcomes.append(outcome)
            if on_part:
                on_part(outcome)
    return summary


def _do(job: Job, path: Path, settings: TranslateSettings, last_seen: bytes) -> tuple[PartOutcome, bytes]:
    argv = command_for(job, settings)
    current = _read(path)
    if current != last_seen and _find(draft_parts(_parse_current(current, str(path))), job) is None:
        # The editor wrote this part meanwhile: no call for it.
        return PartOutcome(job, False, "written in the file meanwhile; not sent to the command", 0,
                           merged=current != last_seen, dropped=True), current
    attempts, error = 0, None
    korean = None
    for attempt in range(settings.retries + 1):
        attempts += 1
        try:
            answer = run_command(argv, job.english, settings.timeout, answer_cap(job.english), settings.folder)
            korean = _clean_output(answer, job.kind)
            break
        except CommandFailed as failure:
            error = str(failure)
            if attempt < settings.retries:
                time.sleep(settings.retry_wait * 2**attempt)
    if korean is None:
        return PartOutcome(job, False, error, attempts), last_seen
    for _ in range(WRITE_TRIES):
        current = _read(path)
        try:
            updated = _fill(current, job, korean, str(path))
        except _Dropped as problem:
            return PartOutcome(job, False, str(problem), attempts, merged=True, dropped=True), current
        except _NotWritten as problem:
            return PartOutcome(job, False, str(problem), attempts, merged=current != last_seen), current
        if write_atomically(path, updated, expect=current):
            return PartOutcome(job, True, None, attempts, merged=current != last_seen), updated
    raise DraftError(f"{path} keeps changing on disk; stopped after {job.where} (run translate again when it is saved)")


class _NotWritten(Exception):
    """The result cannot go into the file as it is: the part stays marked."""


class _Dropped(_NotWritten):
    """The part is no longer marked: the editor filled it meanwhile."""


def _fill(data: bytes, job: Job, korean: str, where: str = "<issue>") -> bytes:
    """`data` with the job's marker replaced by the machine-marked Korean text, or _NotWritten."""
    issue = _parse_current(data, where)
    before = draft_parts(issue)
    target = _find(before, job)
    if target is None:
        raise _Dropped("written in the file meanwhile; the machine's text was dropped, yours kept")
    result = replace_on_line(data, target.line, TO_TRANSLATE, f"{MACHINE} {korean}")
    if result is None:
        raise _NotWritten(f"line {target.line}: the marker is not written as {TO_TRANSLATE!r}; fill this part by hand")
    _check_only_this_part_changed(issue, before, target, result, where)
    return result


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DraftError(f"{path} cannot be read any more ({error.strerror or error}); parts already "
                         "filled were written to it") from None


def _parse_current(data: bytes, where: str) -> Issue:
    try:
        return parse_issue_bytes(data, where)
    except ParseError as error:
        raise DraftError(f"{error}; the file no longer parses, so nothing more is written: fix it and run "
                         "translate again (parts already filled are kept)") from None


def _find(parts: list[DraftPart], job: Job) -> DraftPart | None:
    candidates = [part for part in parts if part.state == STATE_TO_TRANSLATE and part.kind == job.kind
                  and part.english == job.english]
    return next((part for part in candidates if part.where == job.where), candidates[0] if candidates else None)


def _check_only_this_part_changed(issue: Issue, before: list[DraftPart], target: DraftPart, result: bytes, where: str) -> None:
    try:
        after_issue = parse_issue_bytes(result, where)
    except ParseError as error:
        raise _NotWritten(f"the translation would break the issue ({error.message}); not written") from None
    after = draft_parts(after_issue)
    expected = [part for part in before if part is not target]
    remaining = [(part.line, part.state, part.english) for part in after if part.line != target.line]
    if (len(after_issue.papers) != len(issue.papers)
            or remaining != [(part.line, part.state, part.english) for part in expected]
            or not any(part.line == target.line and part.state == STATE_TO_REVIEW and part.english == target.english
                       for part in after)):
        raise _NotWritten("the translation would change more of the issue than this part; not written")


def _clean_output(output: str, kind: str) -> str:
    """The command's answer as one line of text (one paragraph; a title has no ' / ' in it)."""
    printable = "".join(char if char.isprintable() else " " for char in output)
    text = " ".join(printable.split())
    if kind == "title":
        text = text.replace(" / ", "/")
    if not text:
        raise CommandFailed("the command printed nothing")
    return text


def answer_cap(english: str) -> int:
    """The most bytes of stdout taken as the translation of `english` (see ANSWER_FACTOR)."""
    return max(ANSWER_FLOOR, ANSWER_FACTOR * len(english.encode("utf-8")))


def run_command(argv: list[str], english: str, timeout: float, cap: int, folder: Path | None = None) -> str:
    """Run the command (no shell) in `folder` (None: the current one) with `english` on stdin; its
    stdout, or CommandFailed (also for an answer longer than `cap` bytes: the command is stopped
    there, the rest never read)."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   cwd=folder, start_new_session=True)  # its own group: a timeout ends its children too
    except FileNotFoundError:
        raise DraftError(f"translate command {argv[0]!r} not found; check [translate] command") from None
    except PermissionError:
        raise DraftError(f"translate command {argv[0]!r} cannot be run (permission denied)") from None
    try:
        stdout, stderr = _communicate(process, english.encode("utf-8"), timeout, cap)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise CommandFailed(f"no answer within {timeout:g} s") from None
    except BaseException:
        _kill_group(process)
        raise
    if process.returncode != 0:
        said = [line for line in stderr.splitlines() if line.strip()]
        detail = f": {shown(said[-1])}" if said else ""
        raise CommandFailed(f"the command exited with status {process.returncode}{detail}")
    try:
        return stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandFailed("the command's output is not UTF-8") from None


def _communicate(process: subprocess.Popen, data: bytes, timeout: float, cap: int) -> tuple[bytes, bytes]:
    """Popen.communicate with bounds: stdout up to `cap` bytes (CommandFailed past it), only the
    last STDERR_KEPT bytes of stderr (the rest is read and dropped, so the command never blocks on
    a full pipe), subprocess.TimeoutExpired after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    stdout, stderr = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, stdout)
        selector.register(process.stderr, selectors.EVENT_READ, stderr)
        if data:
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        sent = 0
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(process.args, timeout)
            for key, _ in selector.select(remaining):
                if key.fileobj is process.stdin:
                    try:
                        sent += os.write(key.fd, data[sent:sent + select.PIPE_BUF])
                    except BrokenPipeError:  # it stopped reading: what it says is the answer
                        sent = len(data)
                    if sent >= len(data):
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                key.data.extend(chunk)
                if key.data is stdout and len(stdout) > cap:
                    raise CommandFailed(f"the answer passed {cap:,} bytes, far more than a translation of this "
                                        "part can be; the command was stopped and its answer not used")
                if key.data is stderr:
                    del stderr[:-STDERR_KEPT]
    process.wait(max(0.0, deadline - time.monotonic()))
    return bytes(stdout), bytes(stderr)


def shown(said: bytes) -> str:
    """A command's words for one line of ours: undecodable bytes and control characters (a
    terminal's escape sequences) written as escapes, and at most SHOWN_CHARACTERS of them."""
    text = said.decode("utf-8", "backslashreplace").strip()
    escaped = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
    return escaped if len(escaped) <= SHOWN_CHARACTERS else escaped[:SHOWN_CHARACTERS - 1] + "…"


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for stream in (process.stdin, process.stdout, process.stderr):
        stream.close()
    process.wait()


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One translate at a time per folder (a lock on the folder itself: no lock file left behind)."""
    descriptor = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DraftError(f"another `newsletter translate` is working in {path.parent}; wait for it") from None
            raise
        yield
    finally:
        os.close(descriptor)
