"""Amazon SES (API v2) transport: one SendEmail call with Raw content per recipient.

Region, profile and endpoint come from the config or from boto3's own settings (so
AWS_ENDPOINT_URL_SESV2 points it at a local SES such as moto with no code change); credentials
only from boto3's chain. botocore's retries are off: SendEmail has no idempotency token, and an
SDK retry after a lost answer can mail someone twice. Retrying is the sending engine's decision,
made from the error class this module picks.
"""

from __future__ import annotations

import re

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ..config import SesSettings
from ..errors import ConfigError, SendError
from .base import (
    AccountStoppedError,
    OutcomeUnknownError,
    OutgoingMessage,
    RecipientRejectedError,
    RetryableSendError,
    SendQuota,
    SendResult,
)

# SES error codes by what they mean for the run (botocore's sesv2 model and SES's documentation).
_ACCOUNT_CODES = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
    "LimitExceededException",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
}
_THROTTLE_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
_RECIPIENT_CODES = {"MessageRejected", "BadRequestException"}
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def classify_client_error(error: ClientError) -> SendError:
    """An SES error answer -> the domain error, keeping SES's code and message."""
    details = error.response.get("Error", {})
    code = details.get("Code") or "Unknown"
    message = details.get("Message") or str(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if "quota" in message.lower():  # "Daily message quota exceeded." arrives as a throttle code
        return AccountStoppedError(message, code=code)
    if code in _THROTTLE_CODES:
        return RetryableSendError(message, code=code)
    if code in _ACCOUNT_CODES:
        return AccountStoppedError(message, code=code)
    if code in _RECIPIENT_CODES:
        return RecipientRejectedError(message, code=code)
    if status >= 500:  # SES answered that it failed: nothing was accepted
        return RetryableSendError(message, code=code)
    return RecipientRejectedError(message, code=code)


def classify_botocore_error(error: BotoCoreError) -> SendError:
    """A failure without an SES answer -> the domain error (did the request go out or not?)."""
    name = type(error).__name__
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return AccountStoppedError(f"{error} (set them the way boto3 reads them)", code=name)
    if isinstance(error, ParamValidationError):
        return RecipientRejectedError(str(error), code=name)
    # The connection never opened: the request cannot have reached SES.
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return RetryableSendError(str(error), code=name)
    # Read timeouts, connections closed mid-answer and anything else: it may have been sent.
    return OutcomeUnknownError(str(error), code=name)


class SesTransport:
    name = "ses"

    def __init__(self, settings: SesSettings, *, connect_timeout: float = 10, read_timeout: float = 30):
        self.settings = settings
        try:
            session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        except ProfileNotFound as error:
            raise ConfigError(str(error), key="transport.ses.profile") from None
        self.client = session.client(
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
            raise classify_client_error(error) from error
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
