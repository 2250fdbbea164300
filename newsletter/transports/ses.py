"""Amazon SES (API v2) transport: one SendEmail call with Raw content per recipient.

Region, profile and endpoint come from the config or from boto3's own settings (so
AWS_ENDPOINT_URL_SESV2 points it at a local SES such as moto with no code change); credentials
only from boto3's chain. botocore's retries are off: SendEmail has no idempotency token, and an
SDK retry after a lost answer can mail someone twice. Retrying is the sending engine's decision,
made from the error class this module picks.
"""

from __future__ import annotations

import re
import threading

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import SSLError as BotoSSLError

from ..config import SesSettings
from ..errors import ConfigError, SendError
from .base import (
    QUOTA_FIX,
    AccountStoppedError,
    OutcomeUnknownError,
    OutgoingMessage,
    RecipientRejectedError,
    RetryableSendError,
    SendQuota,
    SendResult,
    UnreachableError,
    names_account_condition,
)

_CREDENTIALS_FIX = (
    "check the AWS credentials the send uses (AWS_ACCESS_KEY_ID and its secret, or transport.ses.profile)"
)
# SES error codes (v2 and the v1 spellings) that are about the account or its settings, with the
# fix the editor needs; from botocore's sesv2 model and SES's and IAM's documentation.
_ACCOUNT_FIXES = {
    "AccountSuspendedException": "the SES account is suspended: contact AWS Support",
    "SendingPausedException": "sending is paused for the SES account: see the SES console's reputation page and resume it",
    "AccountSendingPausedException": "sending is paused for the SES account: see the SES console's reputation page and resume it",
    "ConfigurationSetSendingPausedException": "sending is paused for the configuration set: resume it in SES",
    "MailFromDomainNotVerifiedException": "the custom MAIL FROM domain is not verified: fix its MX and SPF records in DNS, or turn it off in SES",
    "MailFromDomainNotVerified": "the custom MAIL FROM domain is not verified: fix its MX and SPF records in DNS, or turn it off in SES",
    "NotFoundException": "create the configuration set transport.ses.configuration_set names in this SES region, or correct the name",
    "ConfigurationSetDoesNotExist": "create the configuration set transport.ses.configuration_set names in this SES region, or correct the name",
    "ConfigurationSetDoesNotExistException": "create the configuration set transport.ses.configuration_set names in this SES region, or correct the name",
    "LimitExceededException": "an SES account limit was reached: see the message, or ask AWS to raise it",
    "AccessDenied": "allow ses:SendEmail for the sender's identity in the IAM policy of the credentials in use",
    "AccessDeniedException": "allow ses:SendEmail for the sender's identity in the IAM policy of the credentials in use",
    "OptInRequired": "the AWS account is not signed up for SES in this region",
    "UnrecognizedClientException": _CREDENTIALS_FIX,
    "InvalidClientTokenId": _CREDENTIALS_FIX,
    "SignatureDoesNotMatch": _CREDENTIALS_FIX,
    "IncompleteSignature": _CREDENTIALS_FIX,
    "InvalidSignatureException": _CREDENTIALS_FIX,
    "MissingAuthenticationToken": _CREDENTIALS_FIX,
    "ExpiredToken": "the AWS session credentials have expired: renew them (e.g. aws sso login)",
    "ExpiredTokenException": "the AWS session credentials have expired: renew them (e.g. aws sso login)",
    "RequestExpired": "this machine's clock is off by more than five minutes: correct it",
}
_UNVERIFIED_FIX = (
    "verify the From address or its domain in SES in region {region}; if the identities named are "
    "recipients, the account is still in the SES sandbox: request production access"
)
_NOT_AUTHORISED_FIX = "verify the From address or its domain in SES in region {region}, or allow this sender in its identity policy"
_THROTTLE_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
_RECIPIENT_CODES = {"MessageRejected", "BadRequestException"}
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _account_fix(code: str, message: str, status: int, region: str) -> str | None:
    """What the editor must fix when the error is the account's or its settings', else None."""
    lowered = message.lower()
    if "quota" in lowered:  # "Daily message quota exceeded." arrives as a throttle code
        return QUOTA_FIX
    if code in _ACCOUNT_FIXES:
        return _ACCOUNT_FIXES[code]
    if "authority to send" in lowered or "not authorized to send" in lowered:
        return _NOT_AUTHORISED_FIX.format(region=region)
    if names_account_condition(message):  # "Email address is not verified. ... failed the check in region ..."
        return _UNVERIFIED_FIX.format(region=region)
    if status in (401, 403):  # an authorisation failure SES named in some other way
        return _CREDENTIALS_FIX
    return None


def classify_client_error(error: ClientError, region: str = "the one in use") -> SendError:
    """An SES error answer -> the domain error, keeping SES's code and message: the account's
    (stop), a throttle or SES's own failure (retry), or this one recipient's."""
    details = error.response.get("Error", {})
    code = details.get("Code") or "Unknown"
    message = details.get("Message") or str(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    fix = _account_fix(code, message, status, region)
    if fix is not None:
        return AccountStoppedError(message, code=code, fix=fix)
    if code in _THROTTLE_CODES or status >= 500:  # SES answered that it did not take it
        return RetryableSendError(message, code=code)
    return RecipientRejectedError(message, code=code)


def classify_botocore_error(error: BotoCoreError) -> SendError:
    """A failure without an SES answer -> the domain error (did the request go out or not?)."""
    name = type(error).__name__
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return AccountStoppedError(
            str(error), code=name, fix="set AWS credentials the way boto3 reads them (environment, ~/.aws, transport.ses.profile)"
        )
    if isinstance(error, ParamValidationError):
        return RecipientRejectedError(str(error), code=name)
    if isinstance(error, BotoSSLError):  # reached something, but TLS failed: a setting, not an outage
        return AccountStoppedError(
            str(error), code=name, fix="check the SES endpoint (transport.ses.region, endpoint_url) and any HTTPS proxy"
        )
    # No connection was made (refused, DNS, unreachable, connect timeout, proxy, TLS handshake):
    # the request cannot have reached SES.
    if isinstance(error, BotoConnectionError):
        return UnreachableError(str(error), code=name)
    # Read timeouts, connections closed mid-answer and anything else: it may have been sent.
    return OutcomeUnknownError(str(error), code=name)


class SharedSession:
    """One boto3 session for the SES clients of one send. A client made from its own session loads
    the service model again (88 ms of CPU each, measured with boto3 1.44.8); clients of one session
    share it (2 ms each), which matters when a send runs dozens of workers. boto3 sessions are not
    thread-safe and the clients they make are, so clients are made under a lock."""

    def __init__(self, settings: SesSettings):
        try:
            self._session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        except ProfileNotFound as error:
            raise ConfigError(str(error), key="transport.ses.profile") from None
        self._lock = threading.Lock()

    def client(self, *arguments, **options):
        with self._lock:
            return self._session.client(*arguments, **options)


class SesTransport:
    name = "ses"

    def __init__(
        self,
        settings: SesSettings,
        *,
        session: SharedSession | None = None,
        connect_timeout: float = 10,
        read_timeout: float = 30,
    ):
        self.settings = settings
        self.client = (session or SharedSession(settings)).client(
            "sesv2",
            endpoint_url=settings.endpoint_url,  # None: boto3's own (AWS_ENDPOINT_URL_SESV2, ...)
            config=BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ),
        )

    def send(self, message: OutgoingMessage) -> SendResult:
        request = {
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": message.raw}},
            "EmailTags": [{"Name": "issue", "Value": _TAG_UNSAFE.sub("_", message.issue_id)[:256]}],
        }
        if self.settings.configuration_set:
            request["ConfigurationSetName"] = self.settings.configuration_set
        try:
            answer = self.client.send_email(**request)
        except ClientError as error:
            raise classify_client_error(error, self.client.meta.region_name) from error
        except BotoCoreError as error:
            raise classify_botocore_error(error) from error
        return SendResult(message_id=answer.get("MessageId"))

    def quota(self) -> SendQuota:
        """GetAccount's SendQuota; the config's values where GetAccount is unavailable (moto,
        an IAM policy without ses:GetAccount)."""
        try:
            account = self.client.get_account()
        except ClientError:
            return SendQuota(
                max_send_rate=self.settings.max_send_rate,
                max_24h_send=self.settings.max_24h_send,
                sent_last_24h=0,
                source="config",
            )
        except BotoCoreError as error:
            raise classify_botocore_error(error) from error
        send_quota = account.get("SendQuota", {})
        return SendQuota(
            max_send_rate=float(send_quota.get("MaxSendRate", self.settings.max_send_rate)),
            max_24h_send=int(send_quota.get("Max24HourSend", self.settings.max_24h_send)),
            sent_last_24h=int(send_quota.get("SentLast24Hours", 0)),
            source="ses GetAccount",
        )

    def close(self) -> None:
        self.client.close()
