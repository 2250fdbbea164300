"""Transports: SES, SMTP, and the dry run's outbox, behind the interface in `base`."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config
from ..errors import ConfigError
from .base import Transport

KINDS = ("ses", "smtp", "outbox")


def make_transport(config: Config, kind: str | None = None) -> Transport:
    """A new transport of `kind` (default: the config's), for one thread's use.

    The provider modules are imported here, on demand, so a dry run never loads boto3.
    """
    kind = kind or config.transport
    if kind == "ses":
        from .ses import SesTransport

        return SesTransport(config.ses)
    if kind == "smtp":
        from .smtp import SmtpTransport

        return SmtpTransport(config.smtp, config.from_address)
    if kind == "outbox":
        from .outbox import OutboxTransport

        return OutboxTransport(config.outbox)
    raise ConfigError(f"unknown transport {kind!r}; expected one of {', '.join(KINDS)}", key="transport.kind")


def transport_factory(config: Config, kind: str | None = None) -> Callable[[], Transport]:
    """Makes the transports of one send (one per worker thread): SES clients from one shared
    session, so that dozens of workers do not each load the service model."""
    if (kind or config.transport) == "ses":
        from .ses import SesTransport, SharedSession

        session = SharedSession(config.ses)
        return lambda: SesTransport(config.ses, session=session)
    return lambda: make_transport(config, kind)
