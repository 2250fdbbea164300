"""`build` and `send` refuse an email that lost part of the issue on the way (a text too long for
the CSS inliner's HTML parser, a template that leaves papers or the unsubscribe link out), through
the real CLI, with SES on moto's server for the send."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import write_config
from newsletter.render import bundled_templates_dir
from sending_fixtures import cli

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2023-10-16.md"
SECOND_SUMMARY = "* 공개 연구 및 기술 과제를 포함하여 소프트웨어 엔지니어링을 위한 LLM에 대한 종합적인 서베이 논문"


def test_build_and_send_refuse_an_email_cut_short_by_a_runaway_passage(tmp_path, moto_ses, monkeypatch):
    # What a 12 MB translation did: libxml2 stops at a 10 MB text, and the HTML ended there.
    monkeypatch.setenv("NEWSLETTER_SECRET", "a-test-secret-that-is-long-enough-0123456789")
    config_path = write_config(tmp_path / "newsletter.toml")
    source = SAMPLE.read_text(encoding="utf-8")
    assert SECOND_SUMMARY in source
    runaway = tmp_path / "2023-10-16.md"
    runaway.write_text(source.replace(SECOND_SUMMARY, "* " + "번역 " * 1_500_000, 1), encoding="utf-8")
    expected = ("error: the rendered email lacks paper 2 of 10 ('소프트웨어 엔지니어링을 위한 대규모 언어 모델: 서베이 및 "
                "공개 문제', line 45) and what follows it; the text at line 49 has 10,499,999 bytes, more than the "
                "HTML tools keep in one piece: shorten it\n")

    built = cli(config_path, "build", "-o", str(tmp_path / "build"), str(runaway))
    assert (built.exit_code, built.output) == (1, expected)
    assert not (tmp_path / "build").exists()

    assert cli(config_path, "subscribers", "add", "reader@example.com").exit_code == 0
    sent = cli(config_path, "send", "--yes", str(runaway))
    assert (sent.exit_code, sent.output) == (1, expected)
    assert moto_ses.raw_messages() == []


def test_build_refuses_a_template_that_leaves_out_a_paper_or_the_unsubscribe_link(tmp_path):
    config_path = write_config(tmp_path / "newsletter.toml")
    cases = {
        "_issue.j2": ("{% for paper in issue.papers %}{{ paper_card(", "{% for paper in issue.papers[:-1] %}{{ paper_card(",
                      "error: the rendered email lacks paper 10 of 10 ('비디오 언어 계획', line 219) and what follows it; email.mjml.j2 must show every paper and, after them, the "
                      "unsubscribe link ({{ unsubscribe_url }})\n"),
        "email.mjml.j2": (' &nbsp;|&nbsp; <a href="{{ unsubscribe_url }}">수신 거부 · Unsubscribe</a>', "",
                          "error: the rendered email has no unsubscribe link after its last paper; email.mjml.j2 must "
                          "show every paper and, after them, the unsubscribe link ({{ unsubscribe_url }})\n"),
    }
    for name, (old, new, expected) in cases.items():
        templates = tmp_path / name / "templates"
        shutil.copytree(bundled_templates_dir(), templates)
        text = (templates / name).read_text(encoding="utf-8")
        assert old in text
        (templates / name).write_text(text.replace(old, new, 1), encoding="utf-8")
        result = cli(config_path, "build", "-o", str(tmp_path / name / "build"), "--templates", str(templates),
                     str(SAMPLE))
        assert (result.exit_code, result.output) == (1, expected), name
        assert not (tmp_path / name / "build").exists()


def test_the_sample_and_a_thirty_paper_issue_pass_the_check(tmp_path):
    config_path = write_config(tmp_path / "newsletter.toml")
    source = SAMPLE.read_text(encoding="utf-8")
    head, *papers = re.split(r"(?m)^(?=## (?!소개$))", source)
    # Every paper three times over (fresh headings): the same first words recur, in order.
    repeated = [re.sub(r"(?m)^## (.*)$", rf"## \1 ({n})", paper, count=1) for n in range(3) for paper in papers]
    thirty = tmp_path / "thirty.md"
    thirty.write_text(head + "".join(repeated), encoding="utf-8")
    for issue in (SAMPLE, thirty):
        result = cli(config_path, "build", "-o", str(tmp_path / "build"), str(issue))
        assert result.exit_code == 0, result.output
