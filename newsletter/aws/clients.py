"""boto3 clients for the feedback loop, and the one place that turns their failures into
`AwsError`s a person can act on.

Region and profile come from `[events]` (default: the SES transport's) or, for the account's own
state (`newsletter doctor`, SES's reputation metrics), from the SES transport; credentials and
endpoints from boto3's own chain, so AWS_ENDPOINT_URL_SQS / _SNS / _SES / _CLOUDWATCH point them
at a local server such as moto with no code change.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Protocol

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ..errors import AwsError, ConfigError

_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "AuthorizationError", "AuthorizationErrorException"}
_BAD_CREDENTIALS = {
    "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken",
    "ExpiredTokenException", "InvalidAccessKeyId",
}
_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


def error_code(error: ClientError) -> str:
    details = error.response.get("Error", {})
    # SQS's JSON protocol answers the legacy code in QueryErrorCode and a namespaced one in Code.
    return details.get("QueryErrorCode") or details.get("Code") or "Unknown"


def _one_line(message: str) -> str:
    """AWS's message on one line (an emulator may answer a whole XML error document)."""
    found = re.search(r"<Message>(.*?)</Message>", message, re.DOTALL)
    return " ".join((found.group(1) if found else message).split())


def is_missing(error: ClientError, *codes: str) -> bool:
    return error_code(error) in codes or error.response.get("Error", {}).get("Code") in codes


class Place(Protocol):
    """Where the clients work: `[events]` (EventSettings) or the SES transport (SesSettings)."""

    region: str
    profile: str | None


class Clients:
    """One boto3 session for a region and profile; clients made on first use. `profile_key` is the
    setting a missing profile is blamed on; `attempts` counts the first call and botocore's retries."""

    def __init__(self, settings: Place, *, profile_key: str = "events.profile", attempts: int = 4,
                 connect_timeout: float = 10, read_timeout: float = 30):
        self.settings = settings
        try:
            self.session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        except ProfileNotFound as error:
            raise ConfigError(str(error), key=profile_key) from None
        # A pool for the concurrent calls of `sync`'s receivers (a client is thread-safe).
        self._config = BotoConfig(retries={"mode": "standard", "total_max_attempts": attempts},
                                  connect_timeout=connect_timeout, read_timeout=read_timeout,
                                  max_pool_connections=32)
        self._clients: dict[str, object] = {}

    def __call__(self, service: str, endpoint_url: str | None = None):
        """The client for `service` (endpoint_url: a configured one, else boto3's own chain)."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=endpoint_url, config=self._config)
        return self._clients[service]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def describe(error: Exception, doing: str, settings: Place) -> AwsError:
    """A boto3/botocore failure while `doing` (e.g. "receive from queue 'x'") -> one line."""
    region = settings.region
    if isinstance(error, ClientError):
        code = error_code(error)
        message = _one_line(error.response.get("Error", {}).get("Message") or str(error))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _BAD_CREDENTIALS:
            return AwsError(f"cannot {doing}: AWS rejected the credentials ({code}: {message})", code=code)
        if code in _ACCESS_DENIED or "AccessDenied" in code or status == 403:
            return AwsError(f"cannot {doing}: access denied ({message}); the IAM policy needs this permission, "
                            "see docs/deploy.md", code="AccessDenied")
        if code in _MISSING_QUEUE:
            return AwsError(f"cannot {doing}: the queue does not exist in {region}; run `newsletter setup aws` "
                            "(or check events.region and events.queue)", code="QueueDoesNotExist")
        return AwsError(f"cannot {doing}: {code}: {message}", code=code)
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return AwsError(f"cannot {doing}: no AWS credentials (set them the way boto3 reads them: "
                        "AWS_PROFILE, ~/.aws/credentials, an instance or Lambda role)", code=type(error).__name__)
    if isinstance(error, NoRegionError):
        return AwsError(f"cannot {doing}: no AWS region; set events.region", code="NoRegionError")
    if isinstance(error, EndpointConnectionError):
        return AwsError(f"cannot {doing}: cannot reach {error.kwargs.get('endpoint_url')} (is {region!r} a "
                        "real region, and is the network up?)", code="EndpointConnectionError")
    return AwsError(f"cannot {doing}: {error}", code=type(error).__name__)


@contextlib.contextmanager
def failures_as(doing: str, settings: Place) -> Iterator[None]:
    """Raise every boto3 failure inside the block as an `AwsError` saying what was being done."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise describe(error, doing, settings) from error
