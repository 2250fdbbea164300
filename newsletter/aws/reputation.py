"""SES's own view of the account: its reputation metrics in CloudWatch.

SES publishes the account's bounce and complaint rates as `AWS/SES` `Reputation.BounceRate` and
`Reputation.ComplaintRate` (a fraction: 0.05 is 5%), measured over a representative volume of the
account's mail rather than one send. These are the numbers SES reviews and pauses accounts by, so
a send gates on them where they can be read; CloudWatch answers with no data points for an
account that has sent too little, and then there is nothing to read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from ..config import SesSettings
from .clients import Clients, describe

NAMESPACE = "AWS/SES"
BOUNCE_RATE = "Reputation.BounceRate"
COMPLAINT_RATE = "Reputation.ComplaintRate"
LOOKBACK = dt.timedelta(days=14)  # a point older than this says little about the account today
PERIOD_SECONDS = 3600


@dataclass(frozen=True)
class Reputation:
    """The newest value of each metric (None: CloudWatch has none for it)."""

    bounce_rate: float | None
    complaint_rate: float | None
    as_of: dt.datetime | None  # the newest point's time

    @property
    def known(self) -> bool:
        return self.bounce_rate is not None or self.complaint_rate is not None


def read_reputation(settings: SesSettings, *, now: dt.datetime | None = None) -> Reputation:
    """The account's reputation in the SES region, or AwsError saying why it cannot be read (no
    permission for cloudwatch:GetMetricData, no network)."""
    now = now or dt.datetime.now(dt.UTC)
    # Short timeouts, two tries: this runs before every send, and without it the send goes on.
    clients = Clients(settings, profile_key="transport.ses.profile", attempts=2, connect_timeout=5,
                      read_timeout=10)
    queries = [
        {"Id": name, "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": metric},
                                    "Period": PERIOD_SECONDS, "Stat": "Maximum"}}
        for name, metric in (("bounce", BOUNCE_RATE), ("complaint", COMPLAINT_RATE))
    ]
    try:
        answer = clients("cloudwatch").get_metric_data(
            MetricDataQueries=queries, StartTime=now - LOOKBACK, EndTime=now + dt.timedelta(minutes=5),
            ScanBy="TimestampDescending",
        )
    except (ClientError, BotoCoreError) as error:
        doing = f"read SES's reputation metrics from CloudWatch in {settings.region}"
        raise describe(error, doing, settings) from error
    finally:
        clients.close()
    newest: dict[str, tuple[dt.datetime, float]] = {}
    for result in answer.get("MetricDataResults", []):
        points = sorted(zip(result.get("Timestamps", []), result.get("Values", [])), reverse=True)
        if points:
            newest[result["Id"]] = points[0]
    stamps = [stamp for stamp, _ in newest.values()]
    return Reputation(
        bounce_rate=newest["bounce"][1] if "bounce" in newest else None,
        complaint_rate=newest["complaint"][1] if "complaint" in newest else None,
        as_of=max(stamps).astimezone(dt.UTC) if stamps else None,
    )
