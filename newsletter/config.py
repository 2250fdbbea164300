"""`newsletter.toml` -> a typed, validated `Config`.

Secrets never live in the file: AWS credentials come from boto3's own chain, the unsubscribe
signing key from NEWSLETTER_SECRET or a key file, SMTP passwords from an environment variable
named in the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_FILENAME = "newsletter.toml"
CONFIG_ENV = "NEWSLETTER_CONFIG"


@dataclass(frozen=True)
class SesSettings:
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = None  # else boto3's own (AWS_ENDPOINT_URL_SESV2, ...)
    configuration_set: str | None = None
    # Used when SES GetAccount is unavailable (moto, restricted IAM policies).
    max_send_rate: float = 14.0
    max_24h_send: int = 50_000


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    username: str | None = None
    password_env: str = "NEWSLETTER_SMTP_PASSWORD"
    timeout: float = 30.0
    max_send_rate: float = 10.0
    max_24h_send: int = 10_000


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
    transport: str  # ses | smtp
    ses: SesSettings = field(default_factory=SesSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    rate_share: float = 0.9
    workers: int | None = None  # worker threads per process at most; None: "auto" (send/sizing.py)
    processes: int | None = None  # worker processes at most; None: "auto"
    # How long a send keeps retrying while the provider cannot be reached before it stops (the
    # rows stay pending): long enough to ride out a dropped Wi-Fi or a VPN reconnecting.
    outage_budget_seconds: float = 300.0
    serve_host: str = "127.0.0.1"
    serve_port: int = 8025
    outbox: Path = Path("build/outbox")


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


class _Reader:
    """Reads keys out of the parsed TOML, each failure naming `section.key` and the file."""

    KNOWN = {
        "newsletter": {"name", "list_id", "web_base_url", "postal_address"},
        "sender": {"from", "reply_to"},
        "subscribers": {"database"},
        "unsubscribe": {"url", "mailto", "key_file"},
        "transport": {"kind", "ses", "smtp"},
        "sending": {"rate_share", "workers", "processes", "outbox", "outage_budget_seconds"},
        "serve": {"host", "port"},
    }

    def __init__(self, raw: dict[str, Any], path: Path):
        self.raw = raw
        self.path = path
        self.base = path.parent

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=key, path=self.path)

    def get(self, dotted: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        node: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is ...:
                    raise self.fail(dotted, "required key is missing")
                return default
            node = node[part]
        if kind is float and isinstance(node, int) and not isinstance(node, bool):
            node = float(node)
        if not isinstance(node, kind) or (isinstance(node, bool) and kind is not bool):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(dotted, f"expected {expected}, got {type(node).__name__} {node!r}")
        return node

    def text(self, dotted: str, default: Any = ...) -> Any:
        value = self.get(dotted, str, default)
        if isinstance(value, str):
            if not value.strip():
                raise self.fail(dotted, "must not be empty")
            if "\r" in value or "\n" in value:
                raise self.fail(dotted, "must be one line")
        return value

    def url(self, dotted: str, schemes: tuple[str, ...] = ("https://", "http://")) -> str:
        value = self.text(dotted)
        if not value.startswith(schemes):
            raise self.fail(dotted, f"must start with {' or '.join(schemes)}, got {value!r}")
        return value

    def address(self, dotted: str, default: Any = ...) -> Any:
        value = self.text(dotted, default)
        if isinstance(value, str) and "@" not in parseaddr(value)[1]:
            raise self.fail(dotted, f"not an email address: {value!r}")
        return value

    def number(self, dotted: str, kind: type, default: Any, low: float, high: float) -> Any:
        value = self.get(dotted, kind, default)
        if not low <= value <= high:
            raise self.fail(dotted, f"must be between {low:g} and {high:g}, got {value!r}")
        return value

    def auto_or_number(self, dotted: str, low: int, high: int) -> int | None:
        """A whole number in [low, high], or "auto" (the default): None."""
        if self.get(dotted, (int, str), "auto") == "auto":
            return None
        return self.number(dotted, int, None, low, high)

    def local_path(self, dotted: str, default: Any = ...) -> Any:
        value = self.text(dotted, default)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def check_unknown(self) -> None:
        for section, value in self.raw.items():
            if section not in self.KNOWN:
                raise self.fail(section, f"unknown section; expected one of {', '.join(sorted(self.KNOWN))}")
            if not isinstance(value, dict):
                raise self.fail(section, "expected a [section] table")
            for key in value:
                if key not in self.KNOWN[section]:
                    raise self.fail(f"{section}.{key}", "unknown key")

    REQUIRED = (
        "newsletter.name", "newsletter.list_id", "newsletter.web_base_url", "newsletter.postal_address",
        "sender.from", "subscribers.database", "unsubscribe.url", "unsubscribe.mailto",
    )

    def check_required(self) -> None:
        """Name every missing key at once, in the file's order, not one per attempt."""
        missing = [key for key in self.REQUIRED if self.get(key, object, None) is None]
        if len(missing) > 1:
            raise ConfigError(f"required keys are missing: {', '.join(missing)}", path=self.path)

    def config(self) -> Config:
        self.check_unknown()
        self.check_required()
        transport = self.text("transport.kind", "ses")
        if transport not in ("ses", "smtp"):
            raise self.fail("transport.kind", f"must be 'ses' or 'smtp', got {transport!r}")
        security = self.text("transport.smtp.security", "starttls")
        if security not in ("starttls", "ssl", "none"):
            raise self.fail("transport.smtp.security", f"must be starttls, ssl or none, got {security!r}")
        mailto = self.text("unsubscribe.mailto")
        if "@" not in mailto.removeprefix("mailto:"):
            raise self.fail("unsubscribe.mailto", f"not an email address: {mailto!r}")
        unsubscribe_url = self.url("unsubscribe.url")
        if not unsubscribe_url.endswith("/"):
            # Each recipient's token is appended as the last path segment.
            raise self.fail("unsubscribe.url", f"must end with '/', got {unsubscribe_url!r}")
        return Config(
            path=self.path,
            name=self.text("newsletter.name"),
            from_address=self.address("sender.from"),
            reply_to=self.address("sender.reply_to", None),
            list_id=self.text("newsletter.list_id"),
            web_base_url=self.url("newsletter.web_base_url"),
            postal_address=self.text("newsletter.postal_address"),
            database=self.local_path("subscribers.database"),
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=mailto.removeprefix("mailto:"),
            unsubscribe_key_file=self.local_path("unsubscribe.key_file", None),
            transport=transport,
            ses=SesSettings(
                region=self.text("transport.ses.region", "us-east-1"),
                profile=self.text("transport.ses.profile", None),
                endpoint_url=self.text("transport.ses.endpoint_url", None),
                configuration_set=self.text("transport.ses.configuration_set", None),
                max_send_rate=self.number("transport.ses.max_send_rate", float, 14.0, 0.1, 100_000),
                max_24h_send=self.number("transport.ses.max_24h_send", int, 50_000, 1, 10**9),
            ),
            smtp=SmtpSettings(
                host=self.text("transport.smtp.host", "localhost"),
                port=self.number("transport.smtp.port", int, 587, 1, 65535),
                security=security,
                username=self.text("transport.smtp.username", None),
                password_env=self.text("transport.smtp.password_env", "NEWSLETTER_SMTP_PASSWORD"),
                timeout=self.number("transport.smtp.timeout", float, 30.0, 0.1, 600),
                max_send_rate=self.number("transport.smtp.max_send_rate", float, 10.0, 0.1, 100_000),
                max_24h_send=self.number("transport.smtp.max_24h_send", int, 10_000, 1, 10**9),
            ),
            rate_share=self.number("sending.rate_share", float, 0.9, 0.01, 1.0),
            workers=self.auto_or_number("sending.workers", 1, 256),
            processes=self.auto_or_number("sending.processes", 1, 64),
            outage_budget_seconds=self.number("sending.outage_budget_seconds", float, 300.0, 0.0, 86_400.0),
            outbox=self.local_path("sending.outbox", "build/outbox"),
            serve_host=self.text("serve.host", "127.0.0.1"),
            serve_port=self.number("serve.port", int, 8025, 1, 65535),
        )
