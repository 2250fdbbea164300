"""newsletter.toml -> Config: the repo's example loads; every bad or missing key names itself and the file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "newsletter.toml").read_text(encoding="utf-8")


def test_the_repos_example_is_a_working_config() -> None:
    config = load_config(ROOT / "newsletter.toml")
    assert config.list_id == "top-ml-papers.newsletter.example.com"
    assert config.database == ROOT / "newsletter.db"  # relative to the file, not the current folder
    assert config.unsubscribe_url.endswith("/")
    assert config.unsubscribe_mailto == "unsubscribe@newsletter.example.com"
    assert (config.serve_host, config.serve_port) == ("127.0.0.1", 8025)
    assert config.unsubscribe_key_file is None  # secrets never live in the repo


def test_the_config_is_found_by_option_then_environment_then_current_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "newsletter.toml").write_text(EXAMPLE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    assert load_config().path == Path("newsletter.toml")
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(ROOT / "newsletter.toml"))
    assert load_config().path == ROOT / "newsletter.toml"
    with pytest.raises(ConfigError, match="no configuration file here"):
        load_config(tmp_path / "absent.toml")


def _edit(old: str, new: str) -> str:
    assert re.search(old, EXAMPLE, flags=re.M), old
    return re.sub(old, new, EXAMPLE, count=1, flags=re.M)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (_edit(r"^list_id = .*$", ""), "newsletter.list_id", "required key is missing"),
        (_edit(r"^url = .*$", ""), "unsubscribe.url", "required key is missing"),
        (_edit(r"^database = .*$", "database = 5"), "subscribers.database", "expected str, got int 5"),
        (_edit(r"^url = .*$", 'url = "https://x.example/unsubscribe"'), "unsubscribe.url", "must end with '/'"),
        (_edit(r"^url = .*$", 'url = "ftp://x.example/"'), "unsubscribe.url", "must start with https://"),
        (_edit(r"^mailto = .*$", 'mailto = "nobody"'), "unsubscribe.mailto", "not an email address"),
        (_edit(r"^port = 8025$", "port = 70000"), "serve.port", "must be between 1 and 65535"),
        (_edit(r"^host = \"127.0.0.1\"$", 'host = ""'), "serve.host", "must not be empty"),
        (_edit(r"^kind = .*$", 'kind = "carrier-pigeon"'), "transport.kind", "must be 'ses', 'smtp' or 'outbox'"),
        (EXAMPLE + '\n[subscribers.extra]\n', "subscribers.extra", "unknown key"),
        (EXAMPLE.replace("[serve]", "[served]"), "served", "unknown section"),
    ],
)
def test_a_bad_or_missing_key_is_a_config_error_naming_key_and_file(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.key, caught.value.path) == (key, str(path))
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert message in str(caught.value)


def test_a_file_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text("[newsletter\nname = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": not valid TOML"):
        load_config(path)


def test_every_missing_key_is_named_at_once(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text('[newsletter]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: required keys are missing: newsletter.list_id, newsletter.web_base_url, "
        "newsletter.postal_address, sender.from, subscribers.database, unsubscribe.url, unsubscribe.mailto"
    )


@pytest.mark.parametrize(
    ("old", "new", "key", "hint"),
    [
        (r'^region = "us-east-1"$', 'regoin = "us-east-1"', "transport.ses.regoin", "did you mean 'region'?"),
        (r"^max_send_rate = 14 .*$", "max_sned_rate = 14", "transport.ses.max_sned_rate", "did you mean 'max_send_rate'?"),
        (r'^security = "starttls"$', 'securty = "starttls"', "transport.smtp.securty", "did you mean 'security'?"),
        (r'^workers = "auto"$', 'worker = "auto"', "sending.worker", "did you mean 'workers'?"),
        (r"^\[serve\]$", "[server]", "server", "did you mean 'serve'?"),
        (r"^\[transport.smtp\]$", "[transport.smpt]", "transport.smpt", "did you mean 'smtp'?"),
    ],
)
def test_a_typo_in_any_table_names_the_key_and_the_closest_known_one(tmp_path: Path, old, new, key, hint) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(_edit(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert str(caught.value).endswith(hint), str(caught.value)


def test_every_unknown_key_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(_edit(r'^region = "us-east-1"$', 'regoin = "x"\nzzz = 1'), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 2 unknown keys: transport.ses.regoin: unknown key; did you mean 'region'?")
    assert "transport.ses.zzz: unknown key; expected one of configuration_set, endpoint_url" in message


@pytest.mark.parametrize(
    "sender",
    ["a@example.com, b@example.com", "A <a@example.com>, B <b@example.com>", "a@b.c d <e@f.g>",
     "José <josé@example.com>", "nobody"],
)
def test_the_sender_is_exactly_one_deliverable_address(tmp_path: Path, sender: str) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(_edit(r"^from = .*$", f'from = "{sender}"'), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "sender.from"
    assert "not one email address" in str(caught.value)



@pytest.mark.parametrize(
    ("line", "workers", "processes"),
    [('workers = "auto"', None, None), ("workers = 32\nprocesses = 2", 32, 2), ('processes = "auto"', None, None)],
)
def test_sending_workers_and_processes_are_a_bound_or_auto(tmp_path, line, workers, processes):
    path = tmp_path / "newsletter.toml"
    path.write_text(EXAMPLE.replace('workers = "auto"\nprocesses = "auto"', line), encoding="utf-8")
    config = load_config(path)
    assert (config.workers, config.processes) == (workers, processes)


@pytest.mark.parametrize(
    ("line", "key"),
    [('workers = "many"', "workers"), ("workers = 0", "workers"), ("processes = 65", "processes"), ("workers = 2.5", "workers")],
)
def test_a_bad_workers_or_processes_value_names_the_key(tmp_path, line, key):
    path = tmp_path / "newsletter.toml"
    path.write_text(EXAMPLE.replace(f'{key} = "auto"', line), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"sending\.{key}"):
        load_config(path)


# --- one source for every default, and every relative path from the file's folder --------------


def _settings_classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse((ROOT / "newsletter" / "config.py").read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)
            and (node.name.endswith("Settings") or node.name == "Config")}


def test_no_settings_class_writes_a_default_of_its_own_beside_the_keys_table():
    """KEYS holds each default once; a settings class reads it from there (`default_of`), so the
    two cannot drift apart (`SesSettings()` in code and an empty [transport.ses] agree)."""
    classes = _settings_classes()
    assert {"SesSettings", "SmtpSettings", "EventSettings", "Config"} <= set(classes)
    literal = [f"{name}.{field.target.id} = {ast.unparse(field.value)}"
               for name, node in classes.items() for field in node.body
               if isinstance(field, ast.AnnAssign) and isinstance(field.value, ast.Constant)
               and field.value.value not in (None, "")]  # None: "not set"; "": filled in by the reader
    assert literal == []


MINIMAL = """
[newsletter]
name = "n"
list_id = "n.example.com"
web_base_url = "https://n.example.com/"
postal_address = "1 Road"
[sender]
from = "a@n.example.com"
[subscribers]
database = "n.db"
[unsubscribe]
url = "https://n.example.com/u/"
mailto = "u@n.example.com"
"""


def test_settings_built_in_code_have_the_defaults_a_file_without_them_gets(tmp_path: Path):
    from newsletter.config import (ArxivSettings, DraftSettings, EventSettings, PublishSettings, SesSettings,
                                   SmtpSettings)

    path = tmp_path / "newsletter.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    config = load_config(path)
    assert (config.ses, config.smtp, config.arxiv, config.publish) == (
        SesSettings(), SmtpSettings(), ArxivSettings(), PublishSettings(out=tmp_path / "build/site"))
    assert config.draft == DraftSettings(folder=tmp_path / "issues")
    path.write_text(MINIMAL + "[events]\n", encoding="utf-8")
    assert load_config(path).events == EventSettings()


def test_transport_kind_outbox_is_accepted(tmp_path: Path):
    path = tmp_path / "newsletter.toml"
    path.write_text(_edit(r"^kind = .*$", 'kind = "outbox"'), encoding="utf-8")
    assert load_config(path).transport == "outbox"


@pytest.mark.parametrize(
    ("command", "expected"),
    [("./ko.sh --flag", "{base}/ko.sh --flag"), ("tools/ko.sh", "{base}/tools/ko.sh"), ("llm -s 'x y'", "llm -s 'x y'"),
     ("/usr/bin/env ko", "/usr/bin/env ko")],
)
def test_a_relative_translate_program_is_the_one_beside_the_config(tmp_path: Path, monkeypatch, command, expected):
    folder = tmp_path / "editor"
    folder.mkdir()
    (folder / "newsletter.toml").write_text(MINIMAL + f'[translate]\ncommand = "{command}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings = load_config(Path("editor/newsletter.toml")).translate
    assert settings.command == expected.format(base=folder)
    assert settings.folder == Path("editor")
