"""`newsletter translate`: fill the draft's Korean parts through a command (tests/fake_translator.py
stands in for `llm`), keep every byte the editor wrote, survive failures, timeouts, the editor
saving meanwhile, kill -9 and a second run at once."""

from __future__ import annotations

import os
import random
import shlex
import signal
import sys
import time
from pathlib import Path


from draft_fixtures import FAKE_TRANSLATOR, SAMPLE_LIST, cli, draft_config, newsletter_process, translator
from newsletter.draft import draft_parts
from newsletter.draft.markers import MACHINE, STATE_TO_REVIEW, TO_TRANSLATE, TO_WRITE
from newsletter.parse import parse_issue

PARTS = 29  # 10 titles, 10 summaries, 9 abstracts in the sample week's list
HAND_WRITTEN_INTRO = "이번 주의 흐름: 검색 증강과 수학.  \t\n\n*두 번째* 문단입니다.   "


def new_draft(tmp_path: Path, **options) -> tuple[Path, Path]:
    config = draft_config(tmp_path, **options)
    assert cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST).exit_code == 0
    return config, tmp_path / "issues" / "2023-10-16.md"


def machine(english: str) -> str:
    return f"{MACHINE} KO: {' '.join(english.split())}"


def states(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for part in draft_parts(parse_issue(path)):
        counts[part.state] = counts.get(part.state, 0) + 1
    return counts


def assert_each_part_is_marked_or_filled_once(path: Path, hand_written: tuple[str, ...] = ()) -> int:
    """Every title/summary/abstract is either still to translate, the machine's text exactly once,
    or one of the editor's own texts."""
    issue = parse_issue(path)
    filled = 0
    for paper in issue.papers:
        pairs = [(paper.title_ko, paper.title_en)]
        pairs += [(p.ko.markdown, p.en.markdown) for p in paper.summary + paper.abstract if p.en]
        for korean, english in pairs:
            assert korean in (TO_TRANSLATE, machine(english), *hand_written), korean
            filled += korean.startswith(MACHINE)
    return filled


def test_translate_fills_every_part_and_keeps_the_editors_bytes(tmp_path: Path):
    config, path = new_draft(tmp_path, command=translator())
    # The editor works on the draft first: a BOM and CRLF line ends (their editor's habit),
    # an introduction with trailing spaces and a tab, one summary written by hand.
    text = path.read_text(encoding="utf-8").replace(TO_WRITE, HAND_WRITTEN_INTRO.replace("\n", "\r\n"), 1)
    text = text.replace(f"* {TO_TRANSLATE}\n\n  > a comprehensive survey", "* 손으로 쓴 요약.  \n\n  > a comprehensive survey")
    before = ("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8")
    path.write_bytes(before)

    result = cli(config, "translate", path)
    assert result.exit_code == 0, result.output
    assert f"translated {PARTS - 1} of {PARTS - 1} part(s)" in result.stdout
    after = path.read_bytes()
    assert after.startswith(b"\xef\xbb\xbf") and after.count(b"\r\n") == before.count(b"\r\n")
    old_lines, new_lines = before.split(b"\r\n"), after.split(b"\r\n")
    assert len(old_lines) == len(new_lines)
    for old, new in zip(old_lines, new_lines):
        if TO_TRANSLATE.encode() in old:
            assert new.startswith(old.split(TO_TRANSLATE.encode())[0] + MACHINE.encode() + b" KO: ")
        else:
            assert new == old  # byte for byte, the editor's parts included
    assert assert_each_part_is_marked_or_filled_once(path, ("손으로 쓴 요약.",)) == PARTS - 1
    assert states(path) == {STATE_TO_REVIEW: PARTS - 1}
    check = cli(config, "check", path)
    assert sum(": machine translation to review" in line for line in check.stderr.splitlines()) == PARTS - 1
    assert cli(config, "build", "-o", tmp_path / "build", path).exit_code == 0

    # Reviewed: the markers go (here with `review`; deleting them by hand is the same), the draft is done.
    assert cli(config, "review", "--paper", "1", path).stdout.splitlines()[-1] == \
        f"3 part(s) marked reviewed; {PARTS - 4} Korean part(s) still to finish"
    assert parse_issue(path).papers[0].title_ko == "KO: Llemma"
    assert cli(config, "review", "--all", path).exit_code == 0
    assert draft_parts(parse_issue(path)) == []
    assert "a draft" not in cli(config, "check", path).stdout
    assert cli(config, "build", "-o", tmp_path / "build", path).exit_code == 0


def test_a_part_that_fails_or_times_out_stays_marked_and_the_rest_are_filled(tmp_path: Path):
    config, path = new_draft(tmp_path, command=translator("--fail-on", "GenBench", "--sleep-on", "route queries to LLMs"),
                             timeout=6, retries=0)
    result = cli(config, "translate", path)
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert failed == [
        f"failed: {path}:101: GenBench: title: the command exited with status 3: model refused: GenBench",
        f"failed: {path}:187: AutoMix: summary: no answer within 6 s",
    ]
    assert f"translated {PARTS - 2} of {PARTS} part(s) in {path}; 2 left marked" in result.stdout
    issue = parse_issue(path)
    assert (issue.papers[4].title_ko, issue.papers[8].summary[0].ko.markdown) == (TO_TRANSLATE, TO_TRANSLATE)
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS - 2
    assert cli(config, "build", "-o", tmp_path / "build", path).exit_code == 0  # a half-translated draft builds

    # Run again with a command that works: only the two left are sent.
    config.write_text(config.read_text(encoding="utf-8").replace("--fail-on GenBench --sleep-on 'route queries to LLMs'", ""),
                      encoding="utf-8")
    assert "translated 2 of 2 part(s)" in cli(config, "translate", path).stdout
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS


def test_a_runaway_answer_is_cut_at_the_cap_and_a_binary_stderr_is_shown_escaped(tmp_path: Path):
    # A 12 MB answer for one part once made a 120 MB issue whose built HTML stopped after the
    # contents; a command that sprays bytes and escape sequences on stderr must not reach the
    # editor's terminal as they are.
    config, path = new_draft(tmp_path, retries=0, command=translator(
        "--flood-on", "GenBench", "--garble-on", "route queries to LLMs", "--garble-bytes", "5000000"))
    result = cli(config, "translate", path)
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert failed == [
        f"failed: {path}:101: GenBench: title: the answer passed 4,096 bytes, far more than a translation of this "
        "part can be; the command was stopped and its answer not used",
        f"failed: {path}:187: AutoMix: summary: the command exited with status 3: model said: "
        "\\x1b[31mred\\x1b[0m \\xff\\xfe bye\\x07",
    ]
    assert not any(char in result.stderr for char in "\x1b\x07\r\ufffd")
    assert f"translated {PARTS - 2} of {PARTS} part(s) in {path}; 2 left marked" in result.stdout
    assert path.stat().st_size < 64 * 1024
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS - 2


def test_a_failing_call_is_retried(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    config, path = new_draft(tmp_path, command=translator("--fail-first", "2", "--state", str(state)), retries=2)
    result = cli(config, "translate", path)
    assert result.exit_code == 0, result.output
    assert int((state / "calls").read_text()) == PARTS + 2
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS


def test_a_translation_that_would_break_the_issue_is_not_written(tmp_path: Path):
    config, path = new_draft(tmp_path, command=translator("--prefix", "[x](javascript:alert(1)) "))
    before = path.read_bytes()
    result = cli(config, "translate", path)
    assert result.exit_code == 1
    assert "the translation would break the issue (in the summary: link 'javascript:alert(1)'" in result.stderr
    assert path.read_bytes().count(TO_TRANSLATE.encode()) == before.count(TO_TRANSLATE.encode()) - 10  # titles only
    assert parse_issue(path)


def test_dry_run_shows_what_would_be_sent_and_changes_nothing(tmp_path: Path):
    config, path = new_draft(tmp_path)  # no command configured yet
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    result = cli(config, "translate", "--dry-run", path)
    assert result.exit_code == 0, result.output
    assert f"{path}:13: Llemma: title (6 characters) -> (no command set)" in result.stdout
    assert "    We present Llemma, a large language model for mathematics." in result.stdout
    assert result.stdout.splitlines()[-1] == f"dry run: {PARTS} part(s) would be translated; nothing written"
    assert (path.read_bytes(), path.stat().st_mtime_ns) == (before, stamp)
    result = cli(config, "translate", path)
    assert result.exit_code == 1 and "no translate command; set [translate] command" in result.stderr
    assert path.read_bytes() == before


def test_the_editor_saving_during_the_run_is_merged_not_clobbered(tmp_path: Path):
    issue = tmp_path / "issues" / "2023-10-16.md"
    edit = ["--edit", str(issue), "--edit-on", "presents a new retrieval-augmented framework"]
    config, path = new_draft(tmp_path, command=translator(*edit, "--old", TO_WRITE, "--new", "편집자가 방금 쓴 소개."))
    result = cli(config, "translate", path)
    assert result.exit_code == 0, result.output
    assert "was changed on disk during the run; your changes are kept" in result.stderr
    assert parse_issue(path).intro[0].ko.markdown == "편집자가 방금 쓴 소개."
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS


def test_a_part_the_editor_writes_during_the_run_keeps_their_text(tmp_path: Path):
    issue = tmp_path / "issues" / "2023-10-16.md"
    heading = f"## {TO_TRANSLATE} / AutoMix"
    command = translator("--edit", str(issue), "--edit-on", "We present Llemma", "--old", heading, "--new", "## 오토믹스 / AutoMix")
    config, path = new_draft(tmp_path, command=command)
    result = cli(config, "translate", path)
    assert result.exit_code == 0, result.output
    assert f"note: {path}:183: AutoMix: title: written in the file meanwhile" in result.stderr
    assert parse_issue(path).papers[8].title_ko == "오토믹스"
    assert assert_each_part_is_marked_or_filled_once(path, ("오토믹스",)) == PARTS - 1


def wait_for(condition, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_kill_9_mid_run_then_a_second_run_completes_with_no_part_lost_or_doubled(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    config, path = new_draft(tmp_path, command=translator("--hang-on-call", "5", "--state", str(state)))
    process = newsletter_process(config, "translate", path)
    try:
        wait_for(lambda: (state / "hung").exists() or process.poll() is not None, "the 5th call")
        assert process.poll() is None, process.communicate()
        # While it runs, a second translate in the same folder is refused, not run alongside.
        second = cli(config, "translate", path)
        assert second.exit_code == 1 and "another `newsletter translate` is working" in second.stderr
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
        hung = state / "hung"
        if hung.exists():
            os.kill(int(hung.read_text()), signal.SIGKILL)
    assert assert_each_part_is_marked_or_filled_once(path) == 4  # the 5th was in flight: lost, nothing else
    config.write_text(config.read_text(encoding="utf-8").replace("--hang-on-call 5", ""), encoding="utf-8")
    result = cli(config, "translate", path)
    assert result.exit_code == 0, result.output
    assert f"translated {PARTS - 4} of {PARTS - 4} part(s)" in result.stdout
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS
    assert path.read_text(encoding="utf-8").count(" KO: ") == PARTS
    assert [p.name for p in path.parent.iterdir()] == ["2023-10-16.md"]


def test_kill_9_at_random_moments_never_leaves_a_broken_or_doubled_file(tmp_path: Path):
    config, path = new_draft(tmp_path, command=translator())
    chance = random.Random(13)
    filled = 0
    for _ in range(6):
        process = newsletter_process(config, "translate", path)
        time.sleep(chance.uniform(0.05, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait()
        now = assert_each_part_is_marked_or_filled_once(path)  # parses, each part whole, none twice
        assert now >= filled
        filled = now
    result = cli(config, "translate", path)
    assert result.exit_code == 0, result.output
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS
    assert [p.name for p in path.parent.iterdir()] == ["2023-10-16.md"]  # a killed write's temp file is gone


def test_a_timeout_ends_the_commands_children_too(tmp_path: Path):
    # A shell wrapper with a child of its own: killing only the shell would leave the child running.
    command = "sh -c 'sleep 37.25 </dev/null >/dev/null 2>&1 & wait'"
    config, path = new_draft(tmp_path, command=command, timeout=1, retries=0)
    text = path.read_text(encoding="utf-8")
    head, _, _ = text.partition("\n## ")
    path.write_text(head + "\n## " + text.split("\n## ")[2], encoding="utf-8")  # the intro and one paper
    result = cli(config, "translate", path)
    assert result.exit_code == 1 and result.stderr.count("no answer within 1 s") == 3

    def sleepers() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and b"37.25" in (entry / "cmdline").read_bytes():
                    found.append(entry.name)
            except OSError:
                pass
        return found

    wait_for(lambda: sleepers() == [], "the command's child to be gone", limit=15)


def test_an_english_original_of_several_paragraphs_becomes_one_korean_paragraph(tmp_path: Path):
    config, path = new_draft(tmp_path, command=translator())
    text = path.read_text(encoding="utf-8").replace(
        "## 소개\n\n" + TO_WRITE, f"## 소개\n\n{TO_TRANSLATE}\n\n> First paragraph.\n>\n> Second *paragraph*.")
    path.write_text(text, encoding="utf-8")
    assert cli(config, "translate", path).exit_code == 0
    intro = parse_issue(path).intro[0]
    assert intro.ko.markdown == f"{MACHINE} KO: First paragraph. Second *paragraph*."
    assert intro.en.markdown == "First paragraph.\n\nSecond *paragraph*."


def test_a_relative_translate_command_runs_from_the_configs_folder_whatever_the_current_one(tmp_path: Path, monkeypatch):
    """`command = "./ko.sh"` beside newsletter.toml, and a script that names its own helper by a
    relative path: both mean the config's folder, as the database and drafts do."""
    editor = tmp_path / "editor"
    editor.mkdir()
    (editor / "tools").mkdir()
    (editor / "tools" / "fake_translator.py").write_bytes(FAKE_TRANSLATOR.read_bytes())
    script = editor / "ko.sh"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} tools/fake_translator.py "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    config, path = new_draft(editor, command="./ko.sh")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli(config, "translate", path)
    assert result.exit_code == 0, result.output
    assert f"translated {PARTS} of {PARTS} part(s)" in result.output
    assert assert_each_part_is_marked_or_filled_once(path) == PARTS


def test_new_and_translate_count_the_same_parts_and_name_the_one_left_to_the_editor(tmp_path: Path):
    config = draft_config(tmp_path, command=translator())
    new = cli(config, "new", "2023-10-16", "--from", SAMPLE_LIST)
    path = tmp_path / "issues" / "2023-10-16.md"
    assert new.output.splitlines()[0] == (
        f"wrote {path}: 10 papers, {PARTS + 1} Korean part(s) to write: {PARTS} for `newsletter translate`, "
        "1 for you to write (introduction)")
    translated = cli(config, "translate", path)
    assert (f"translated {PARTS} of {PARTS} part(s) in {path}; 0 left marked; 1 for you to write (introduction)"
            in translated.output)
    skeleton = cli(config, "new", "2023-10-23")
    assert skeleton.output.splitlines() == [
        f"wrote {tmp_path / 'issues' / '2023-10-23.md'}: a skeleton with one paper; 4 Korean part(s) for you to write",
        f"next: write them (copy the paper for each further one), then `newsletter check "
        f"{tmp_path / 'issues' / '2023-10-23.md'}`"]
