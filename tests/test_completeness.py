"""`build` refuses an email that lost part of the issue on the way (a template that leaves papers
or the unsubscribe link out; under premailer, a text too long for libxml2), through the real CLI."""

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


def test_a_runaway_passage_is_kept_whole_and_build_warns_of_its_size(tmp_path):
    # What a 12 MB translation did under premailer: libxml2 stopped at a 10 MB text, and the HTML
    # ended there. css_inline (html5ever) keeps the text whole, so the email is complete (the
    # check passes) and build says what is wrong with it: its size.
    config_path = write_config(tmp_path / "newsletter.toml")
    source = SAMPLE.read_text(encoding="utf-8")
    assert SECOND_SUMMARY in source
    runaway = tmp_path / "2023-10-16.md"
    runaway.write_text(source.replace(SECOND_SUMMARY, "* " + "번역 " * 1_500_000, 1), encoding="utf-8")

    built = cli(config_path, "build", "-o", str(tmp_path / "build"), str(runaway))
    assert built.exit_code == 0, built.output
    assert "over Gmail's clipping point" in built.output
    email = (tmp_path / "build" / "2023-10-16.html").read_text(encoding="utf-8")
    assert email.count("번역") == 1_500_000 and "비디오 언어 계획" in email.rsplit("번역", 1)[-1]


def test_build_refuses_a_template_that_leaves_out_a_paper_or_the_unsubscribe_link(tmp_path):
    config_path = write_config(tmp_path / "newsletter.toml")
    cases = {
        "_issue.j2": ("{% for paper in issue.papers %}{{ paper_card(", "{% for paper in issue.papers[:-1] %}{{ paper_card(",
                      "error: the rendered email lacks paper 10 of 10 ('비디오 언어 계획', line 221) and what follows it; email.mjml.j2 must show every paper and, after them, the "
                      "unsubscribe link ({{ unsubscribe_url }})\n"),
        "email.mjml.j2": (' <a href="{{ unsubscribe_url }}">{{ both("수신 거부", "Unsubscribe") }}</a>', "",
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
