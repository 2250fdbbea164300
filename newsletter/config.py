"""`newsletter.toml` -> a typed, validated `Config`.

Secrets never live in the file: AWS credentials come from boto3's own chain, the unsubscribe
signing key from NEWSLETTER_SECRET or a key file, SMTP passwords from an environment variable
named in the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from . import addresses
from .errors import ConfigError, unknown_name_hint

CONFIG_FILENAME = "newsletter.toml"
CONFIG_ENV = "NEWSLETTER_CONFIG"


DEFAULT_DRAFT_TITLE = "[{date:%Y/%m/%d} ~ {end:%m/%d}] 이번 주의 주요 ML 논문 (Top ML Papers of the Week)"
DEFAULT_DRAFT_NOTICE = (
    "이 글은 언어 모델로 자동 번역·요약한 설명으로, 잘못된 내용이 있을 수 있으니 원문을 참고해주세요!",
    "읽으시면서 어색하거나 잘못된 내용을 발견하시면 이 메일에 답장으로 알려주세요!",  # an email has no comments
)


REQUIRED = object()  # a Key's default when the file must give the value


@dataclass(frozen=True)
class Key:
    """How one setting is read: its kind, its default (REQUIRED: no default) and its bounds.

    kind: text (one non-empty line), url (http/https), address (one email address), path
    (relative to the file's folder), int, float, bool, choice (one of `choices`), pattern (a
    str.format pattern for `new`), lines (a list of one-line strings), command (a command line,
    shlex-split), auto_int (an int, or "auto": None)."""

    kind: str
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()


# Every key newsletter.toml may hold: adding a setting is one line here plus where it is read.
# Anything else in the file is an error naming the closest known key.
KEYS: dict[str, Key] = {
    "newsletter.name": Key("text"),
    "newsletter.list_id": Key("text"),
    "newsletter.web_base_url": Key("url"),
    "newsletter.postal_address": Key("text"),
    "newsletter.subscribe_url": Key("url", None),
    "sender.from": Key("address"),
    "sender.reply_to": Key("address", None),
    "subscribers.database": Key("path"),
    "unsubscribe.url": Key("url"),
    "unsubscribe.mailto": Key("text"),
    "unsubscribe.key_file": Key("path", None),
    "preferences.url": Key("url", None),  # default: "preferences/" beside unsubscribe.url
    "preferences.link_days": Key("int", 90, 1, 3650),
    "transport.kind": Key("choice", "ses", choices=("ses", "smtp", "outbox")),
    "transport.ses.region": Key("text", "us-east-1"),
    "transport.ses.profile": Key("text", None),
    "transport.ses.endpoint_url": Key("text", None),
    "transport.ses.configuration_set": Key("text", None),
    "transport.ses.max_send_rate": Key("float", 14.0, 0.1, 100_000),
    "transport.ses.max_24h_send": Key("int", 50_000, 1, 10**9),
    "transport.smtp.host": Key("text", "localhost"),
    "transport.smtp.port": Key("int", 587, 1, 65535),
    "transport.smtp.security": Key("choice", "starttls", choices=("starttls", "ssl", "none")),
    "transport.smtp.username": Key("text", None),
    "transport.smtp.password_env": Key("text", "NEWSLETTER_SMTP_PASSWORD"),
    "transport.smtp.timeout": Key("float", 30.0, 0.1, 600),
    "transport.smtp.max_send_rate": Key("float", 10.0, 0.1, 100_000),
    "transport.smtp.max_24h_send": Key("int", 10_000, 1, 10**9),
    "sending.rate_share": Key("float", 0.9, 0.01, 1.0),
    "sending.workers": Key("auto_int", None, 1, 256),
    "sending.processes": Key("auto_int", None, 1, 64),
    "sending.outbox": Key("path", "build/outbox"),
    "sending.outage_budget_seconds": Key("float", 300.0, 0.0, 86_400),
    "serve.host": Key("text", "127.0.0.1"),
    "serve.port": Key("int", 8025, 1, 65535),
    "serve.trusted_proxy": Key("text", None),
    "events.region": Key("text", None),
    "events.profile": Key("text", None),
    "events.topic": Key("text", "newsletter-events"),
    "events.queue": Key("text", "newsletter-events"),
    "events.dead_letter_queue": Key("text", "newsletter-events-dlq"),
    "events.configuration_set": Key("text", None),
    "events.max_receive_count": Key("int", 5, 1, 1000),
    "events.visibility_timeout": Key("int", 60, 0, 43_200),
    "events.wait_seconds": Key("int", 1, 0, 20),
    "events.transient_bounce_limit": Key("int", 3, 1, 1000),
    "events.transient_bounce_window_days": Key("int", 30, 1, 3650),
    "events.tracking": Key("bool", False),
    "events.inbound_address": Key("address", None),
    "draft.folder": Key("path", "issues"),
    "draft.title": Key("pattern", DEFAULT_DRAFT_TITLE),
    "draft.preheader": Key("pattern", None),
    "draft.notice": Key("lines", DEFAULT_DRAFT_NOTICE),
    "translate.command": Key("command", None),
    "translate.title_command": Key("command", None),
    "translate.timeout": Key("float", 120.0, 0.1, 3600),
    "translate.retries": Key("int", 2, 0, 10),
    "translate.retry_wait": Key("float", 2.0, 0, 600),
    "arxiv.api_url": Key("url", "https://export.arxiv.org/api/query"),
    "arxiv.interval": Key("float", 3.0, 0, 600),
    "arxiv.timeout": Key("float", 30.0, 0.1, 600),
    "arxiv.retries": Key("int", 2, 0, 10),
    "arxiv.batch_size": Key("int", 10, 1, 100),
    "publish.out": Key("path", "build/site"),
    "publish.to": Key("text", None),
    "publish.region": Key("text", None),
    "publish.profile": Key("text", None),
    "publish.page_cache_seconds": Key("int", 86_400, 0, 31_536_000),
    "publish.listing_cache_seconds": Key("int", 300, 0, 31_536_000),
    "publish.check_before_send": Key("bool", True),
    "subscribe.url": Key("url", None),  # required in a [subscribe] table (see `subscribe()`)
    "subscribe.confirm_hours": Key("int", 48, 1, 24 * 14),
    "subscribe.client_requests_per_hour": Key("int", 20, 1, 10_000),
    "backup.to": Key("text", None),  # required in a [backup] table (see `backup()`)
    "backup.region": Key("text", None),
    "backup.profile": Key("text", None),
    "backup.endpoint_url": Key("url", None),
    "backup.lease_seconds": Key("int", 60, 3, 3600),
    "backup.max_lag_seconds": Key("float", 10.0, 1.0, 600),
}
# The tables that hold those keys: "transport", "transport.ses", ...
TABLES = frozenset(key.rsplit(".", n)[0] for key in KEYS for n in range(1, key.count(".") + 1))


def default_of(dotted: str) -> Any:
    """The default of a KEYS entry as the settings below hold it (a path as a Path): KEYS is the
    one place a default is written, and a settings class built in code gets the same one."""
    default = KEYS[dotted].default
    if default is REQUIRED:
        raise KeyError(f"{dotted} has no default")
    return Path(default) if KEYS[dotted].kind == "path" and default is not None else default


# The configuration set SES publishes events from when neither events.configuration_set nor
# transport.ses.configuration_set names one.
DEFAULT_CONFIGURATION_SET = "newsletter"


@dataclass(frozen=True)
class SesSettings:
    region: str = default_of("transport.ses.region")
    profile: str | None = default_of("transport.ses.profile")
    # None: boto3's own (AWS_ENDPOINT_URL_SESV2, ...)
    endpoint_url: str | None = default_of("transport.ses.endpoint_url")
    configuration_set: str | None = default_of("transport.ses.configuration_set")
    # Used when SES GetAccount is unavailable (moto, restricted IAM policies).
    max_send_rate: float = default_of("transport.ses.max_send_rate")
    max_24h_send: int = default_of("transport.ses.max_24h_send")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = default_of("transport.smtp.host")
    port: int = default_of("transport.smtp.port")
    security: str = default_of("transport.smtp.security")  # starttls | ssl | none
    username: str | None = default_of("transport.smtp.username")
    password_env: str = default_of("transport.smtp.password_env")
    timeout: float = default_of("transport.smtp.timeout")
    max_send_rate: float = default_of("transport.smtp.max_send_rate")
    max_24h_send: int = default_of("transport.smtp.max_24h_send")


@dataclass(frozen=True)
class DraftSettings:
    """`newsletter new`: where drafts go and how their front matter and notice start out."""

    folder: Path = default_of("draft.folder")
    title: str = default_of("draft.title")  # str.format fields: date, end (date + 6 days)
    # Fields: titles (the first ones), count, date, end. None: the draft gets no preheader, and the
    # email derives one from the papers the subject leaves out, sized for an inbox preview.
    preheader: str | None = default_of("draft.preheader")
    notice: tuple[str, ...] = default_of("draft.notice")  # one notice bullet each


@dataclass(frozen=True)
class TranslateSettings:
    """`newsletter translate`: the command each English text is piped through (no shell), run in
    `folder` (the config file's), so that every relative path in it means what the file says."""

    # e.g. "llm -s '다음 글을 한국어로 번역해 주세요.'"
    command: str | None = default_of("translate.command")
    title_command: str | None = default_of("translate.title_command")  # for titles; default: command
    timeout: float = default_of("translate.timeout")  # seconds per call
    retries: int = default_of("translate.retries")  # further tries after a failed or timed-out call
    # seconds before the first retry, doubled each time
    retry_wait: float = default_of("translate.retry_wait")
    folder: Path | None = None  # where the command runs; None: the current folder


@dataclass(frozen=True)
class ArxivSettings:
    """Title and abstract for arXiv ids (`newsletter new --from ids.txt`), from the Atom API."""

    api_url: str = default_of("arxiv.api_url")
    interval: float = default_of("arxiv.interval")  # seconds between calls: arXiv asks for at least 3
    timeout: float = default_of("arxiv.timeout")  # seconds per call
    retries: int = default_of("arxiv.retries")  # further tries after a 5xx answer or a timeout
    batch_size: int = default_of("arxiv.batch_size")  # ids per call


@dataclass(frozen=True)
class EventSettings:
    """The feedback loop (`[events]`): SES events and unsubscribes reach the list through SNS and
    SQS (`newsletter setup aws` creates them, `newsletter sync` drains the queue)."""

    region: str = default_of("transport.ses.region")  # events.region, else the SES transport's
    profile: str | None = default_of("events.profile")
    topic: str = default_of("events.topic")
    queue: str = default_of("events.queue")
    dead_letter_queue: str = default_of("events.dead_letter_queue")
    configuration_set: str = DEFAULT_CONFIGURATION_SET
    # A message received this many times without being applied moves to the dead-letter queue.
    max_receive_count: int = default_of("events.max_receive_count")
    # Seconds a received message stays hidden from other readers before it can be received again.
    visibility_timeout: int = default_of("events.visibility_timeout")
    # SQS long polling per receive (0: short polling, which may miss messages on real SQS).
    wait_seconds: int = default_of("events.wait_seconds")
    # This many transient bounces of one address within the window make it `bounced`.
    transient_bounce_limit: int = default_of("events.transient_bounce_limit")
    transient_bounce_window_days: int = default_of("events.transient_bounce_window_days")
    # Also publish Open and Click events (SES rewrites links, adds a pixel).
    tracking: bool = default_of("events.tracking")
    # SES receives unsubscribe mail here (a receipt rule).
    inbound_address: str | None = default_of("events.inbound_address")


@dataclass(frozen=True)
class PublishSettings:
    """The archive (`[publish]`): where `newsletter publish` builds it and uploads it."""

    out: Path = default_of("publish.out")  # the folder that holds the whole site
    # s3://BUCKET/PREFIX, the folder served at newsletter.web_base_url
    to: str | None = default_of("publish.to")
    # None: the SES transport's; credentials from boto3's own chain
    region: str | None = default_of("publish.region")
    profile: str | None = default_of("publish.profile")
    # Cache-Control max-age: issue pages rarely change once sent; the index and feed change weekly.
    page_cache_seconds: int = default_of("publish.page_cache_seconds")
    listing_cache_seconds: int = default_of("publish.listing_cache_seconds")
    # A list send refuses to start until the page is published as it is (false: the
    # pages are hosted some other way; `send --no-publish-check` skips it once).
    check_before_send: bool = default_of("publish.check_before_send")


@dataclass(frozen=True)
class SubscribeSettings:
    """The subscribe form (`[subscribe]`): served by the same web app as the unsubscribe endpoint."""

    url: str  # where the form posts, ending in /subscribe/; the confirmation link is url + "confirm/" + token
    confirm_hours: int = default_of("subscribe.confirm_hours")  # how long a confirmation link works
    # form posts one client address may make
    client_requests_per_hour: int = default_of("subscribe.client_requests_per_hour")


@dataclass(frozen=True)
class PreferenceSettings:
    """The preferences page (`[preferences]`, every key optional): each email's footer links it,
    signed for its reader; served by the same web app as the unsubscribe endpoint."""

    url: str  # ends in /preferences/; a reader's link is url + token
    link_days: int = default_of("preferences.link_days")  # how long the link in an email works


@dataclass(frozen=True)
class BackupSettings:
    """Continuous replication of the database to S3 (`[backup]`, docs/new-editor.md): Litestream
    ships every change within about a second, `newsletter restore` brings it back anywhere, and a
    lease object beside the replica lets one machine at a time write the list."""

    to: str  # s3://BUCKET/PREFIX: the replica is PREFIX/db, the lease PREFIX/lease.json
    region: str | None = default_of("backup.region")  # None: the SES transport's; credentials from boto3's chain
    profile: str | None = default_of("backup.profile")
    endpoint_url: str | None = default_of("backup.endpoint_url")  # else boto3's own (AWS_ENDPOINT_URL_S3, ...)
    # A holder renews its lease every quarter of this; a holder that died blocks the others this
    # long at most (docs/new-editor.md says why 60 s).
    lease_seconds: int = default_of("backup.lease_seconds")
    # A writing command stops when a change of its has not reached S3 for this long.
    max_lag_seconds: float = default_of("backup.max_lag_seconds")


@dataclass(frozen=True)
class Config:
    path: Path  # the file it was read from; relative paths in it are relative to its folder
    name: str
    from_address: str
    reply_to: str | None
    list_id: str
    web_base_url: str
    postal_address: str
    database: Path
    unsubscribe_url: str
    unsubscribe_mailto: str
    unsubscribe_key_file: Path | None
    transport: str  # ses | smtp | outbox (nothing leaves the machine: every send is a dry run)
    ses: SesSettings = field(default_factory=SesSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    rate_share: float = default_of("sending.rate_share")
    # worker threads per process at most; None: "auto" (send/sizing.py)
    workers: int | None = default_of("sending.workers")
    processes: int | None = default_of("sending.processes")  # worker processes at most; None: "auto"
    # How long a send keeps retrying while the provider cannot be reached before it stops (the
    # rows stay pending): long enough to ride out a dropped Wi-Fi or a VPN reconnecting.
    outage_budget_seconds: float = default_of("sending.outage_budget_seconds")
    serve_host: str = default_of("serve.host")
    serve_port: int = default_of("serve.port")
    # the reverse proxy whose X-Forwarded-For names the client
    serve_trusted_proxy: str | None = default_of("serve.trusted_proxy")
    outbox: Path = default_of("sending.outbox")
    events: EventSettings | None = None  # None: no [events] table, no feedback loop
    # Where a reader of a forwarded email or an archive page subscribes; default: the archive
    # index (web_base_url) at its #subscribe form.
    subscribe_url: str = ""
    draft: DraftSettings = field(default_factory=DraftSettings)
    translate: TranslateSettings = field(default_factory=TranslateSettings)
    arxiv: ArxivSettings = field(default_factory=ArxivSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    subscribe: SubscribeSettings | None = None  # None: no [subscribe] table, no subscribe form
    preferences: PreferenceSettings = None  # type: ignore[assignment]  # always set by load_config
    backup: BackupSettings | None = None  # None: no [backup] table, the list lives on this machine only


def find_config_path(explicit: str | Path | None = None) -> Path:
    """--config, else $NEWSLETTER_CONFIG, else ./newsletter.toml."""
    candidate = explicit or os.environ.get(CONFIG_ENV) or CONFIG_FILENAME
    path = Path(candidate)
    if not path.is_file():
        raise ConfigError(
            "no configuration file here; pass --config FILE or set NEWSLETTER_CONFIG",
            path=path,
        )
    return path


def load_config(explicit: str | Path | None = None) -> Config:
    path = find_config_path(explicit)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML ({error})", path=path) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=path) from None
    return _Reader(raw, path).config()


def unknown_keys(raw: dict[str, Any], table: str = "") -> list[tuple[str, str]]:
    """(dotted key, what is wrong) for every key or table of `raw` that KEYS does not know."""
    found: list[tuple[str, str]] = []
    for name, value in raw.items():
        dotted = f"{table}.{name}" if table else name
        if dotted in TABLES:
            if isinstance(value, dict):
                found += unknown_keys(value, dotted)
            else:
                found.append((dotted, f"expected a [{dotted}] table"))
        elif dotted not in KEYS:
            hint = unknown_name_hint(name, _children(table))
            found.append((dotted, f"{'unknown key' if table else 'unknown section'}; {hint}"))
    return found


def _children(table: str) -> list[str]:
    """The names KEYS allows directly inside `table` ("" for the top level)."""
    prefix = f"{table}." if table else ""
    return sorted({key.removeprefix(prefix).split(".")[0] for key in KEYS if key.startswith(prefix)})


class _Reader:
    """Reads keys out of the parsed TOML as KEYS says, each failure naming `section.key` and the file."""

    def __init__(self, raw: dict[str, Any], path: Path):
        self.raw = raw
        self.path = path
        self.base = path.parent

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, path=self.path)

    def raw_value(self, dotted: str) -> Any:
        node: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def read(self, dotted: str) -> Any:
        """The value of a KEYS entry, checked, with its default applied."""
        key = KEYS[dotted]
        value = self.raw_value(dotted)
        if value is None:
            if key.default is REQUIRED:
                raise self.fail(dotted, "required key is missing")
            value = key.default
            if value is None or key.kind != "path":
                return value
        reader = getattr(self, f"read_{key.kind}")
        return reader(dotted, key, value)

    def typed(self, dotted: str, kind: type, value: Any) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.fail(dotted, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value

    def read_text(self, dotted: str, key: Key, value: Any) -> str:
        value = self.typed(dotted, str, value)
        if not value.strip():
            raise self.fail(dotted, "must not be empty")
        if "\r" in value or "\n" in value:
            raise self.fail(dotted, "must be one line")
        return value

    def read_url(self, dotted: str, key: Key, value: Any) -> str:
        value = self.read_text(dotted, key, value)
        if not value.startswith(("https://", "http://")):
            raise self.fail(dotted, f"must start with https:// or http://, got {value!r}")
        return value

    def read_address(self, dotted: str, key: Key, value: Any) -> str:
        value = self.read_text(dotted, key, value)
        try:
            addresses.parse(value)
        except addresses.AddressError as error:
            raise self.fail(dotted, f"not one email address: {value!r} ({error})") from None
        return value

    def read_path(self, dotted: str, key: Key, value: Any) -> Path:
        path = Path(self.read_text(dotted, key, value)).expanduser()
        return path if path.is_absolute() else self.base / path

    def read_choice(self, dotted: str, key: Key, value: Any) -> str:
        value = self.read_text(dotted, key, value)
        if value not in key.choices:
            *others, last = [repr(choice) for choice in key.choices]
            expected = f"{', '.join(others)} or {last}" if others else last
            raise self.fail(dotted, f"must be {expected}, got {value!r}")
        return value

    def read_number(self, dotted: str, key: Key, value: Any) -> Any:
        value = self.typed(dotted, int if key.kind == "int" else float, value)
        if not key.low <= value <= key.high:
            raise self.fail(dotted, f"must be between {key.low:g} and {key.high:g}, got {value!r}")
        return value

    read_int = read_float = read_number

    def read_auto_int(self, dotted: str, key: Key, value: Any) -> int | None:
        """A whole number within the bounds, or "auto": None (the program decides)."""
        if value == "auto":
            return None
        if isinstance(value, str):
            raise self.fail(dotted, f'expected a whole number or "auto", got {value!r}')
        return self.read_number(dotted, dataclasses.replace(key, kind="int"), value)

    def read_bool(self, dotted: str, key: Key, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(dotted, f"expected true or false, got {value!r}")
        return value

    # --- drafts (`newsletter new`, `translate`) ---

    def read_pattern(self, dotted: str, key: Key, value: Any) -> str:
        """A str.format pattern with the fields `new` fills: date, end, titles, count."""
        value = self.read_text(dotted, key, value)
        sample = dt.date(2023, 10, 16)
        try:
            value.format(date=sample, end=sample, titles="A, B", count=2)
        except (KeyError, IndexError, ValueError, AttributeError) as error:
            raise self.fail(dotted, f"not a usable pattern ({error!r}); fields: {{date}}, {{end}}, {{titles}}, {{count}}") from None
        return value

    def read_lines(self, dotted: str, key: Key, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise self.fail(dotted, f"expected a list of one-line strings, got {type(value).__name__}")
        return tuple(self.read_text(dotted, key, line) for line in value)

    def read_command(self, dotted: str, key: Key, value: Any) -> str:
        """A command line; a relative program path in it ("./ko.sh", "tools/ko.sh") becomes the
        file beside the config (a bare name, "llm", is still looked up on PATH). The command also
        runs in the config's folder (TranslateSettings.folder), so relative arguments agree."""
        value = self.read_text(dotted, key, value)
        try:
            argv = shlex.split(value)
        except ValueError as error:
            raise self.fail(dotted, f"not a command line ({error})") from None
        if not argv:
            raise self.fail(dotted, "must not be empty")
        program = Path(argv[0]).expanduser()
        if "/" in argv[0] and not program.is_absolute():
            argv[0] = str(self.base.resolve() / program)
            return shlex.join(argv)
        return value

    def check_unknown(self) -> None:
        unknown = unknown_keys(self.raw)
        if len(unknown) == 1:
            raise self.fail(*unknown[0])
        if unknown:
            listed = "; ".join(f"{key}: {problem}" for key, problem in unknown)
            raise ConfigError(f"{len(unknown)} unknown keys: {listed}", path=self.path)

    def check_required(self) -> None:
        """Name every missing key at once, in the file's order, not one per attempt."""
        missing = [key for key, spec in KEYS.items() if spec.default is REQUIRED and self.raw_value(key) is None]
        if len(missing) > 1:
            raise ConfigError(f"required keys are missing: {', '.join(missing)}", path=self.path)

    def config(self) -> Config:
        self.check_unknown()
        self.check_required()
        read = self.read
        mailto = read("unsubscribe.mailto")
        if "@" not in mailto.removeprefix("mailto:"):
            raise self.fail("unsubscribe.mailto", f"not an email address: {mailto!r}")
        unsubscribe_url = read("unsubscribe.url")
        if not unsubscribe_url.endswith("/"):
            # Each recipient's token is appended as the last path segment.
            raise self.fail("unsubscribe.url", f"must end with '/', got {unsubscribe_url!r}")
        events = self.events()
        ses = SesSettings(**self.table("transport.ses"))
        if events and not ses.configuration_set:
            ses = dataclasses.replace(ses, configuration_set=events.configuration_set)
        web_base_url = read("newsletter.web_base_url")
        return Config(
            path=self.path,
            name=read("newsletter.name"),
            from_address=read("sender.from"),
            reply_to=read("sender.reply_to"),
            list_id=read("newsletter.list_id"),
            web_base_url=web_base_url,
            subscribe_url=read("newsletter.subscribe_url") or web_base_url + "#subscribe",
            postal_address=read("newsletter.postal_address"),
            database=read("subscribers.database"),
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=mailto.removeprefix("mailto:"),
            unsubscribe_key_file=read("unsubscribe.key_file"),
            transport=read("transport.kind"),
            ses=ses,
            smtp=SmtpSettings(**self.table("transport.smtp")),
            rate_share=read("sending.rate_share"),
            workers=read("sending.workers"),
            processes=read("sending.processes"),
            outbox=read("sending.outbox"),
            outage_budget_seconds=read("sending.outage_budget_seconds"),
            serve_host=read("serve.host"),
            serve_port=read("serve.port"),
            serve_trusted_proxy=read("serve.trusted_proxy"),
            events=events,
            draft=DraftSettings(**self.table("draft")),
            translate=TranslateSettings(**self.table("translate"), folder=self.base),
            arxiv=ArxivSettings(**self.table("arxiv")),
            publish=self.publish(),
            subscribe=self.subscribe(),
            preferences=self.preferences(unsubscribe_url),
            backup=self.backup(),
        )

    def preferences(self, unsubscribe_url: str) -> PreferenceSettings:
        settings = self.table("preferences")
        # Beside the unsubscribe endpoint (the same web app): https://host/unsubscribe/ ->
        # https://host/preferences/.
        settings["url"] = settings["url"] or urljoin(unsubscribe_url, "../preferences/")
        if not settings["url"].endswith("/preferences/"):
            # The web app knows the page by the path segment before the token.
            raise self.fail("preferences.url", f"must end with '/preferences/', got {settings['url']!r}")
        return PreferenceSettings(**settings)

    def publish(self) -> PublishSettings:
        settings = self.table("publish")
        if settings["to"] is not None and not settings["to"].startswith("s3://"):
            raise self.fail("publish.to", f"must start with s3:// (the folder is publish.out), got {settings['to']!r}")
        return PublishSettings(**settings)

    def subscribe(self) -> SubscribeSettings | None:
        if "subscribe" not in self.raw:
            return None
        settings = self.table("subscribe")
        if settings["url"] is None:
            raise self.fail("subscribe.url", "required key is missing")
        if not settings["url"].endswith("/subscribe/"):
            # The web app knows the form by its last path segment; the confirmation link is this
            # URL plus "confirm/TOKEN".
            raise self.fail("subscribe.url", f"must end with '/subscribe/', got {settings['url']!r}")
        return SubscribeSettings(**settings)

    def backup(self) -> BackupSettings | None:
        if "backup" not in self.raw:
            return None
        settings = self.table("backup")
        to = settings["to"]
        if to is None:
            raise self.fail("backup.to", "required key is missing (s3://BUCKET/PREFIX)")
        bucket, _, prefix = to.removeprefix("s3://").partition("/")
        if not to.startswith("s3://") or not bucket or not prefix.strip("/") or "?" in to or "#" in to:
            raise self.fail("backup.to", f"must be s3://BUCKET/PREFIX (a folder of its own), got {to!r}")
        settings["region"] = settings["region"] or self.read("transport.ses.region")
        return BackupSettings(**settings)

    def events(self) -> EventSettings | None:
        if "events" not in self.raw:
            return None
        settings = self.table("events")
        sending_set = self.read("transport.ses.configuration_set")
        configuration_set = settings["configuration_set"] or sending_set or DEFAULT_CONFIGURATION_SET
        if sending_set and sending_set != configuration_set:
            raise self.fail("events.configuration_set", f"{configuration_set!r} differs from "
                            f"transport.ses.configuration_set {sending_set!r}; the send must use the set "
                            "that publishes its events")
        settings.update(
            configuration_set=configuration_set,
            # The queue lives where SES sends from unless the file says otherwise.
            region=settings["region"] or self.read("transport.ses.region"),
            profile=settings["profile"] or self.read("transport.ses.profile"),
        )
        return EventSettings(**settings)

    def table(self, table: str) -> dict[str, Any]:
        """Every key of one table, by its name in the table (the settings dataclass's fields)."""
        prefix = f"{table}."
        return {
            key.removeprefix(prefix): self.read(key)
            for key in KEYS
            if key.startswith(prefix) and "." not in key.removeprefix(prefix)
        }
