"""The one small interface every transport implements (SES, SMTP, the dry-run outbox).

Like django-anymail's backends: the rest of the program hands over a finished message and gets back
either a result or an error that says what the sending engine may do next. A transport never
retries on its own and never decides whether a run goes on; it only classifies what happened,
and for an account-level stop says what the editor must fix.
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
    edition: str = "bilingual"  # which edition of the issue it is (newsletter.model.EDITIONS)


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
    """Surely not sent, and the provider's trouble (throttled, a 5xx answer): safe to retry. If it
    lasts through every attempt the run stops, the row still `pending`."""


class RecipientDeferredError(RetryableSendError):
    """Surely not sent; the server asks to try this recipient later (SMTP 4xx at RCPT). If it
    lasts through every attempt the row stays `pending` for the next run; the run goes on."""


class UnreachableError(RetryableSendError):
    """The provider could not be reached (connection refused, DNS failure, network unreachable,
    connect timeout): the request never left, so nothing was sent. Retried for as long as the
    outage budget (`sending.outage_budget_seconds`) allows."""


class RecipientRejectedError(SendError):
    """The provider refused this one message (bad address): record, go on."""


class AccountStoppedError(SendError):
    """The account cannot send now (quota, paused, suspended, unverified sender or domain, missing
    configuration set, bad credentials, the sandbox): stop the run; every row stays `pending`.
    `fix` says what the editor does about it before running the same send again."""

    def __init__(self, message: str, *, code: str | None = None, fix: str):
        self.fix = fix
        super().__init__(message, code=code)


class OutcomeUnknownError(SendError):
    """The request may have gone out but no answer came back: never retry automatically."""


# Words in a refusal that make it about the sender, the account or its settings, not about the one
# recipient: SES answers an unverified sender, and in the sandbox an unverified recipient, with
# MessageRejected "Email address is not verified. The following identities failed the check in
# region ...", and its SMTP interface with the same words after a 554.
_ACCOUNT_PHRASES = (
    "not verified",
    "did not have authority to send",
    "not authorized to send",
    "sending paused",
    "sending is paused",
    "account is suspended",
    "quota exceeded",
    "authentication required",
    "relay access denied",
    "relaying denied",
)


def names_account_condition(text: str) -> bool:
    """Whether a provider's refusal is about the account (stop the run), not one recipient."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _ACCOUNT_PHRASES)


QUOTA_FIX = "wait until the daily sending quota allows more (or ask the provider to raise it)"
