"""`newsletter check` through the real console entry point, as an editor runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "issues" / "2023-10-16.md"


def newsletter(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_check_summarises_the_sample():
    result = newsletter("check", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "10 papers" in lines[1]
    assert lines[-1].startswith("ok: 10 papers")
    genbench = lines.index(" 5. GenBench")
    assert lines[genbench + 1].strip() == "[summary paper read-more]"
    assert sum("abstract" in line for line in lines) == 9
    assert len(lines) <= 25  # one screen


def test_check_json_is_the_parsed_issue():
    result = newsletter("check", "--json", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["issue_id"] == "2023-10-16"
    assert len(data["papers"]) == 10
    assert data["papers"][0]["tags"] == ["mathglm"]
    # No subject in the front matter: the email's Subject is derived from the title, as sent.
    assert data["subject"] is None
    assert data["email_subject"] == "Llemma, Self-RAG, GenBench 외 7편"


def test_parse_error_is_one_line_with_path_and_line(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("---\ntitle: x\ndate: 2023-10-16\n---\n## P\n\n### 요약\n", encoding="utf-8")
    result = newsletter("check", str(bad))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"{bad}:7: unknown section heading '### 요약'; expected one of " \
        "'### 논문 소개 / Summary', '### 논문 초록 / Abstract', '### 논문 링크 / Paper', '### 더 읽어보기 / Read more'"
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_usage_error_not_a_traceback(tmp_path):
    result = newsletter("check", str(tmp_path / "none.md"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_check_prints_every_error_one_line_each(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("---\ntitle: x\ndate: 2023-10-16\ndate: 2023-10-17\n---\n## P\n\n### 요약\n\n"
                   "## Q\n\n### Summary\n\n한국어\x07\n", encoding="utf-8")
    result = newsletter("check", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}:4: 'date:' is given twice (first at line 3); keep one",
        f"{bad}:8: unknown section heading '### 요약'; expected one of '### 논문 소개 / Summary', "
        "'### 논문 초록 / Abstract', '### 논문 링크 / Paper', '### 더 읽어보기 / Read more'",
        f"{bad}:14: an invisible control character U+0007 (BEL) at column 4; delete it",
    ]


def test_control_characters_written_as_yaml_escapes_stop_check_and_build_alike(tmp_path):
    from conftest import write_config
    from sending_fixtures import cli

    config_path = write_config(tmp_path / "newsletter.toml")
    front, body = SAMPLE.read_text(encoding="utf-8").split("\n---\n", 1)
    escaped = tmp_path / "escaped.md"
    escaped.write_text(
        front.replace('title: "[2023/10/16', 'title: "[2023/10/16 \\u0008', 1)
        .replace('preheader: "Llemma', 'preheader: "\\e[31mLlemma\\x85', 1)  # ESC, and NEL, a line break
        + "\nsubject: \"\\x7f\"\n---\n" + body, encoding="utf-8")
    expected = [
        f"{escaped}:2: 'title:' holds an invisible control character U+0008 (BS), written as a YAML escape; delete it",
        f"{escaped}:4: 'preheader:' holds an invisible control character U+001B (ESC), written as a YAML escape; "
        "delete it",
        f"{escaped}:10: 'subject:' holds an invisible control character U+007F (DEL), written as a YAML escape; "
        "delete it",
    ]
    for command in (["check"], ["build", "-o", str(tmp_path / "build")]):
        result = cli(config_path, *command, str(escaped))
        assert result.exit_code == 1, result.output
        assert [line for line in result.output.splitlines() if not line.startswith("warning:")] == expected, command
    assert not (tmp_path / "build").exists()

    # A line break written as an escape (Word's page break, FF) is a line break, as it is raw.
    notice = tmp_path / "notice.md"
    notice.write_text(front.split("email_notice:")[0] + 'email_notice: "* 첫째\\f* 둘째"\n---\n' + body,
                      encoding="utf-8")
    for command in (["check"], ["build", "-o", str(tmp_path / "build")]):
        result = cli(config_path, *command, str(notice))
        assert result.exit_code == 0, result.output
    assert "<li>첫째</li>" in (tmp_path / "build" / "2023-10-16.html").read_text(encoding="utf-8")
