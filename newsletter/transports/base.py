"""The one small interface every transport implements (SES, SMTP, the dry-run outbox).

Like django-anymail's backends: the rest of the program hands over a finished message and gets back
either a result or an error that says what the sending engine may do next. A transport never
retries on its own and never decides whether a run goes on; it only classifies what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import SendError


@dataclass(frozen=True)
class OutgoingMessage:
    """One recipient's complete message (compose's output)."""

    issue_id: str
    recipient: str  # the bare address, as on the envelope
    raw: bytes  # the whole RFC 5322 message, CRLF line endings


@dataclass(frozen=True)
class SendResult:
    message_id: str | None  # the provider's id (SES replaces our Message-ID with its own)


@dataclass(frozen=True)
class SendQuota:
    max_send_rate: float  # messages (recipients) per second
    max_24h_send: int  # -1: unlimited
    sent_last_24h: int
    source: str  # "ses GetAccount", or "config" when the provider cannot tell


class Transport(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> SendResult:
        """Deliver one message, or raise one of the SendError subclasses below."""

    def quota(self) -> SendQuota:
        """The account's sending limits (from the provider when it can tell, else the config)."""

    def close(self) -> None:
        """Release connections. The transport is not used afterwards."""


# What went wrong decides what the engine may do; every transport maps its errors onto these.


class RetryableSendError(SendError):
    """Surely not sent (throttled, a 5xx answer, a connection that never opened): safe to retry."""


class RecipientRejectedError(SendError):
    """The provider refused this one message (bad address, rejected content): record, go on."""


class AccountStoppedError(SendError):
    """The account cannot send now (quota, paused, suspended, unverified sender): stop the run."""


class OutcomeUnknownError(SendError):
    """The request may have gone out but no answer came back: never retry automatically."""
