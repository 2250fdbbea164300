"""arXiv metadata through a real HTTP server on 127.0.0.1 that serves recorded Atom answers (the
real service is never called): batching, the pause between calls, 503s, timeouts, bad XML."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from draft_fixtures import DATA, cli, draft_config
from newsletter.arxiv import fetch_arxiv
from newsletter.config import ArxivSettings
from newsletter.draft.markers import TO_TRANSLATE, TO_WRITE
from newsletter.parse import parse_issue

RECORDED = (DATA / "arxiv-2310.10631-2310.11511.atom.xml").read_bytes()
ERROR_FEED = (DATA / "arxiv-error.atom.xml").read_bytes()
LLEMMA_ABSTRACT = (
    "We present Llemma, a large language model for mathematics. We continue pretraining Code Llama on the "
    "Proof-Pile-2, a mixture of scientific papers, web data containing mathematics, and mathematical code, "
    "yielding Llemma. On the MATH benchmark Llemma outperforms all known open base models, as well as the "
    "unreleased Minerva model suite on an equi-parameter basis. Moreover, Llemma is capable of tool use and "
    "formal theorem proving without any further finetuning. We openly release all artifacts, including 7 "
    "billion and 34 billion parameter models, the Proof-Pile-2, and code to replicate our experiments."
)


@dataclass
class Answer:
    status: int = 200
    body: bytes = RECORDED
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # answer only once this is set (for timeouts)


@dataclass
class FakeArxiv:
    url: str
    answers: list[Answer] = field(default_factory=list)  # served in order; the last one repeats
    requests: list[tuple[float, dict[str, list[str]]]] = field(default_factory=list)  # (monotonic time, query)


@pytest.fixture
def arxiv_server() -> Iterator[FakeArxiv]:
    fake = FakeArxiv("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            fake.requests.append((time.monotonic(), parse_qs(urlsplit(self.path).query)))
            answer = fake.answers.pop(0) if len(fake.answers) > 1 else fake.answers[0]
            if answer.hold is not None:
                answer.hold.wait(30)
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/atom+xml; charset=utf-8")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            try:
                self.wfile.write(answer.body)
            except BrokenPipeError:
                pass  # the client gave up waiting: what a timeout test wants

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/api/query"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def settings(server: FakeArxiv, **changes) -> ArxivSettings:
    values = dict(api_url=server.url, interval=0.0, timeout=5.0, retries=1, batch_size=10)
    values.update(changes)
    return ArxivSettings(**values)


def write_ids(folder: Path, *lines: str) -> Path:
    path = folder / "ids.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_new_from_arxiv_ids_fills_title_and_abstract_from_one_batched_call(arxiv_server: FakeArxiv, tmp_path: Path):
    arxiv_server.answers = [Answer()]
    config = draft_config(tmp_path, arxiv_url=arxiv_server.url)
    ids = write_ids(tmp_path, "# week of 2023-10-16", "https://arxiv.org/abs/2310.10631", "arXiv:2310.11511v1")
    result = cli(config, "new", "2023-10-16", "--from", ids)
    assert result.exit_code == 0, result.output
    assert [query["id_list"] for _, query in arxiv_server.requests] == [["2310.10631,2310.11511"]]
    issue = parse_issue(tmp_path / "issues" / "2023-10-16.md")
    llemma, selfrag = issue.papers
    assert llemma.title_en == "Llemma: An Open Language Model For Mathematics"
    assert selfrag.title_en == "Self-RAG: Learning to Retrieve, Generate, and Critique through Self-Reflection"
    assert llemma.abstract[0].en.markdown == LLEMMA_ABSTRACT and llemma.abstract[0].ko.markdown == TO_TRANSLATE
    assert selfrag.abstract[0].en.markdown.endswith("Our code and trained models are available at https://selfrag.github.io/.")
    assert llemma.summary[0].ko.markdown == TO_WRITE and llemma.summary[0].en is None  # no Description to translate
    assert [link.url for link in llemma.links] == ["https://arxiv.org/abs/2310.10631"]
    assert [link.url for link in selfrag.links] == ["https://arxiv.org/abs/2310.11511v1"]


def test_an_id_arxiv_does_not_answer_for_is_named_on_its_line_and_nothing_is_written(arxiv_server, tmp_path):
    arxiv_server.answers = [Answer()]
    config = draft_config(tmp_path, arxiv_url=arxiv_server.url)
    ids = write_ids(tmp_path, "2310.10631", "2310.99999", "2310.11511")
    result = cli(config, "new", "2023-10-16", "--from", ids)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{ids}:2: arXiv 2310.99999: arXiv has no paper with this id"]
    assert not (tmp_path / "issues").exists()


def test_a_503_is_tried_again_after_the_pause_then_succeeds(arxiv_server: FakeArxiv):
    arxiv_server.answers = [Answer(503, b"Service Unavailable", {"Retry-After": "0.5"}), Answer()]
    result = fetch_arxiv(["2310.10631", "2310.11511"], settings(arxiv_server, interval=0.2))
    assert sorted(result.found) == ["2310.10631", "2310.11511"] and result.failures == {}
    (first, _), (second, _) = arxiv_server.requests
    assert second - first >= 0.5  # the server's Retry-After, longer than the interval


def test_503_on_every_try_fails_each_id_of_the_batch_with_the_reason(arxiv_server: FakeArxiv, tmp_path: Path):
    arxiv_server.answers = [Answer(503, b"Service Unavailable")]
    config = draft_config(tmp_path, arxiv_url=arxiv_server.url, arxiv_retries=2)
    ids = write_ids(tmp_path, "2310.10631", "2310.11511")
    result = cli(config, "new", "2023-10-16", "--from", ids)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{ids}:{line}: arXiv {arxiv_id}: the arXiv API answered HTTP 503 Service Unavailable (after 3 tries)"
        for line, arxiv_id in ((1, "2310.10631"), (2, "2310.11511"))
    ]
    assert len(arxiv_server.requests) == 3


def test_a_malformed_atom_answer_is_an_error_per_id_not_a_traceback(arxiv_server: FakeArxiv, tmp_path: Path):
    arxiv_server.answers = [Answer(body=RECORDED[: len(RECORDED) // 2])]
    config = draft_config(tmp_path, arxiv_url=arxiv_server.url)
    ids = write_ids(tmp_path, "2310.10631")
    result = cli(config, "new", "2023-10-16", "--from", ids)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{ids}:1: arXiv 2310.10631: the arXiv API's answer is not valid Atom XML (")
    assert len(arxiv_server.requests) == 1  # a bad answer is not asked for again
    arxiv_server.answers = [Answer(body=b"<html><body>maintenance</body></html>")]
    result = fetch_arxiv(["2310.10631"], settings(arxiv_server))
    assert result.failures == {"2310.10631": "the arXiv API's answer is not an Atom feed (its root is <html>)"}


def test_arxivs_own_error_entry_names_the_bad_id(arxiv_server: FakeArxiv):
    arxiv_server.answers = [Answer(body=ERROR_FEED)]
    result = fetch_arxiv(["2310.1063"], settings(arxiv_server))
    assert result.failures == {"2310.1063": "arXiv says: incorrect id format for 2310.1063"}


def test_a_call_that_does_not_answer_in_time_fails_after_its_retries(arxiv_server: FakeArxiv):
    release = threading.Event()
    arxiv_server.answers = [Answer(hold=release)]
    try:
        result = fetch_arxiv(["2310.10631"], settings(arxiv_server, timeout=0.3, retries=1))
    finally:
        release.set()
    assert result.failures == {"2310.10631": "the arXiv API did not answer within 0.3 s (after 2 tries)"}
    assert len(arxiv_server.requests) == 2


def test_calls_are_at_least_the_interval_apart(arxiv_server: FakeArxiv):
    arxiv_server.answers = [Answer()]
    result = fetch_arxiv(["2310.10631", "2310.11511", "2310.12150"], settings(arxiv_server, interval=0.25, batch_size=1))
    assert len(arxiv_server.requests) == 3
    starts = [moment for moment, _ in arxiv_server.requests]
    assert all(later - earlier >= 0.25 for earlier, later in zip(starts, starts[1:]))
    assert sorted(result.found) == ["2310.10631", "2310.11511"]
    assert result.failures == {"2310.12150": "arXiv has no paper with this id"}


def test_the_default_is_three_seconds_between_calls_to_the_real_api():
    default = ArxivSettings()
    assert default.interval >= 3 and default.api_url == "https://export.arxiv.org/api/query"
