"""The backup in S3 as this program reads it: where the replica and the lease live, the newest
change file ("the head"), and which heads this copy of the database may continue from.

    s3://BUCKET/PREFIX/db/...        Litestream's replica (restorable with `litestream restore`
                                     alone: `litestream restore -o x.db s3://BUCKET/PREFIX/db`)
    s3://BUCKET/PREFIX/lease.json    who writes the list now (lease.py)

Litestream names each change file by the transactions it holds (`0000/MIN-MAX.ltx` at level 0)
and never rewrites one; its last 16 bytes (the trailer) are checksums of the file and of the
database after it. A head is therefore identified by its name and its trailer: two machines that
wrote different changes under the same transaction numbers have different trailers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import BackupSettings
from ..errors import BackupError

TRAILER_BYTES = 16
_LEVEL0 = "db/0000/"


@dataclass(frozen=True)
class Head:
    """The newest change file in the replica (or in this copy's Litestream folder)."""

    name: str  # e.g. 0000000000000005-0000000000000005.ltx
    trailer: str  # hex of its last 16 bytes
    modified: dt.datetime | None = None  # when S3 received it (None for a local file)

    @property
    def txid(self) -> int:
        return int(self.name.split("-")[1].split(".")[0], 16)


class Replica:
    """The S3 location of one list's backup, with a boto3 client for it."""

    def __init__(self, settings: BackupSettings):
        from ..aws.clients import Clients

        self.settings = settings
        self.bucket, _, prefix = settings.to.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/") + "/"
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.lease_key = self.prefix + "lease.json"
        # Short timeouts and few retries: a lease renewal that hangs is worse than one that fails
        # and is tried again a quarter of a lease later.
        self.client = Clients(settings, profile_key="backup.profile", attempts=3, connect_timeout=5,
                              read_timeout=10)("s3", settings.endpoint_url)

    def litestream_config(self) -> dict:
        """The `replica:` entry of Litestream's configuration for this location."""
        config = {"type": "s3", "bucket": self.bucket, "path": self.prefix + "db", "region": self.settings.region}
        endpoint = self.client.meta.endpoint_url
        if not endpoint.rstrip("/").endswith(".amazonaws.com"):
            # An S3-compatible server (moto, MinIO): Litestream needs its address and path-style
            # URLs; boto3 found the address in backup.endpoint_url or AWS_ENDPOINT_URL_S3.
            config.update(endpoint=endpoint, **{"force-path-style": True})
        return config

    def head(self) -> Head | None:
        """The replica's newest change file, or None if nothing was ever replicated here."""
        newest = None
        with self.failures("list the replica"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=self.prefix + _LEVEL0):
                for item in page.get("Contents", []):
                    if item["Key"].endswith(".ltx") and (newest is None or item["Key"] > newest["Key"]):
                        newest = item
        if newest is None:
            return None
        with self.failures("read the replica's newest change"):
            answer = self.client.get_object(Bucket=self.bucket, Key=newest["Key"], Range=f"bytes=-{TRAILER_BYTES}")
            trailer = answer["Body"].read()
        return Head(newest["Key"].rsplit("/", 1)[1], trailer.hex(), newest["LastModified"])

    def has(self, head: Head) -> bool:
        """Whether S3 holds this very change file (same name, same trailer)."""
        from botocore.exceptions import ClientError

        from ..aws.clients import is_missing

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + _LEVEL0 + head.name,
                                            Range=f"bytes=-{TRAILER_BYTES}")
        except ClientError as error:
            if is_missing(error, "NoSuchKey", "404"):
                return False
            raise describe(error, f"read {head.name}", self.url) from None
        return answer["Body"].read().hex() == head.trailer

    @contextlib.contextmanager
    def failures(self, doing: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as error:
            raise describe(error, doing, self.url) from None

    def close(self) -> None:
        self.client.close()


def describe(error: Exception, doing: str, url: str) -> BackupError:
    """A boto3 failure while `doing` something at the backup `url`, as one line."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(error, NoCredentialsError):
        return BackupError(f"cannot {doing} at {url}: no AWS credentials (set them the way boto3 reads them: "
                           "AWS_PROFILE, ~/.aws/credentials, a role)")
    if isinstance(error, EndpointConnectionError):
        return BackupError(f"cannot {doing} at {url}: cannot reach {error.kwargs.get('endpoint_url')} "
                           "(is the network up?)")
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code, message = details.get("Code", "Unknown"), " ".join((details.get("Message") or str(error)).split())
        hint = {
            "NoSuchBucket": "the bucket does not exist (check backup.to)",
            "AccessDenied": "access denied; the IAM policy needs s3:ListBucket, s3:GetObject, s3:PutObject and "
                            "s3:DeleteObject on it (docs/new-editor.md)",
            "403": "access denied (or bad credentials); see docs/new-editor.md for the IAM policy",
        }.get(code, message)
        return BackupError(f"cannot {doing} at {url}: {code}: {hint}")
    return BackupError(f"cannot {doing} at {url}: {' '.join(str(error).split())}")


# --- this copy of the database ------------------------------------------------------------------


def litestream_folder(database: Path) -> Path:
    """Where Litestream keeps its change files for `database` (beside it, its default)."""
    real = Path(os.path.realpath(database))
    return real.with_name(f".{real.name}-litestream")


def _level0(database: Path) -> list[Path]:
    """The level-0 change files Litestream keeps beside `database`, oldest first (listing them
    reads none: a busy sync leaves hundreds)."""
    folder = litestream_folder(database) / "ltx" / "0"
    return sorted(folder.glob("*.ltx")) if folder.is_dir() else []


def _local_head(path: Path) -> Head | None:
    """The change file at `path` with its trailer; None once Litestream has compacted it away."""
    with contextlib.suppress(OSError), path.open("rb") as handle:
        handle.seek(-TRAILER_BYTES, os.SEEK_END)
        return Head(path.name, handle.read(TRAILER_BYTES).hex())
    return None


def newest_local_head(database: Path) -> Head | None:
    return next(filter(None, map(_local_head, reversed(_level0(database)))), None)


def local_head_ending_at(database: Path, txid: int) -> Head | None:
    """This copy's change file that ends at transaction `txid`, if Litestream still keeps it."""
    return next((head for path in _level0(database) if Head(path.name, "").txid == txid
                 for head in [_local_head(path)] if head), None)


def local_head_named(database: Path, name: str) -> Head | None:
    return next((_local_head(path) for path in _level0(database) if path.name == name), None)


@dataclass(frozen=True)
class Mark:
    """What this copy last knew of the replica: the head it may continue from (the one it was
    restored from, or the last one it confirmed in S3) and when."""

    replica: str  # the s3:// URL
    head: str  # change file name
    trailer: str
    caught_up_at: str | None  # when S3 received that head (ISO 8601, UTC)
    confirmed_at: str  # when this machine read it back (ISO 8601, UTC)

    def matches(self, head: Head) -> bool:
        return (self.head, self.trailer) == (head.name, head.trailer)


def mark_path(database: Path) -> Path:
    real = Path(os.path.realpath(database))
    return real.with_name(f"{real.name}.replica.json")


def read_mark(database: Path) -> Mark | None:
    try:
        return Mark(**json.loads(mark_path(database).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None  # none yet, or damaged: the copy proves nothing, so it is treated as unknown


def write_mark(database: Path, replica: Replica, head: Head) -> Mark:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    mark = Mark(replica.url, head.name, head.trailer,
                head.modified.astimezone(dt.UTC).isoformat() if head.modified else None, now.isoformat())
    path = mark_path(database)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(asdict(mark), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return mark


def may_continue_from(database: Path, replica: Replica, head: Head | None) -> bool:
    """Whether this copy holds everything the replica does: the replica is empty, or its head is
    the one this copy was restored from or last confirmed, or one Litestream wrote here."""
    if head is None:
        return True
    mark = read_mark(database)
    if mark is not None and mark.replica == replica.url and mark.matches(head):
        return True
    local = local_head_named(database, head.name)
    return local is not None and local.trailer == head.trailer
