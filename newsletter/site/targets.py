"""Where the archive goes: a folder, or an S3 bucket. One small interface, like the transports.

    target.publish(files, force=False) -> TargetReport   # writes what changed, skips the rest

Both write in `upload_rank` order (pages before the index and the feed, search fragments before
the index chunks that name them), so nothing links to a file that is not there yet. The folder
also removes what the site no longer generates in the folders each run rebuilds whole (tags/,
pagefind/); the bucket keeps such objects (a reader's cached search entry may still name them,
and deleting would need s3:DeleteObject): they are small and linked from nowhere. The S3 target compares each file's MD5 with the object's ETag (a single-part
upload's ETag is its MD5) from one listing of the prefix, so a run uploads only what changed;
`force` uploads everything (after changing the cache settings, which the ETag does not cover).
Credentials, region and endpoint come from boto3's own chain (AWS_ENDPOINT_URL_S3 points it at a
local server), with `[publish] region/profile` when given.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ..config import PublishSettings
from ..errors import ConfigError, PublishError
from .pages import SiteFile, cache_control, content_type, is_site_file, upload_rank


@dataclass
class TargetReport:
    target: str  # the folder or s3:// URL, for messages
    written: list[str] = field(default_factory=list)  # paths written or uploaded
    unchanged: list[str] = field(default_factory=list)  # paths already there, byte for byte
    removed: list[str] = field(default_factory=list)  # paths the site no longer generates, deleted


class Target(Protocol):
    name: str

    def publish(self, files: Sequence[SiteFile], *, force: bool = False) -> TargetReport:
        """Put every file that differs (all of them with `force`); raise PublishError if one
        cannot be written."""


def in_upload_order(files: Sequence[SiteFile]) -> list[SiteFile]:
    return sorted(files, key=lambda f: (upload_rank(f.path), f.path))


class FolderTarget:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.name = str(self.folder)

    def publish(self, files: Sequence[SiteFile], *, force: bool = False, whole: Sequence[str] = ()) -> TargetReport:
        """Write what differs; then, in each folder named in `whole` (whose every file `files`
        holds), remove the site's files that `files` does not have."""
        report = TargetReport(self.name)
        for site_file in in_upload_order(files):
            path = self.folder / site_file.path
            if not force and path.is_file() and path.read_bytes() == site_file.body:
                report.unchanged.append(site_file.path)
                continue
            _write_atomically(path, site_file.body)
            report.written.append(site_file.path)
        kept = {site_file.path for site_file in files}
        for stale in self._site_paths(*whole):
            if stale not in kept:
                try:
                    (self.folder / stale).unlink()
                except OSError as error:
                    raise PublishError(f"cannot remove {self.folder / stale} ({error.strerror or error})") from None
                report.removed.append(stale)
        return report

    def _site_paths(self, *folders: str) -> list[str]:
        """The site's files in the folder (or in its `folders` only), relative and "/"-separated."""
        roots = [self.folder / name for name in folders] if folders else [self.folder]
        paths = (path.relative_to(self.folder).as_posix() for root in roots if root.is_dir()
                 for path in root.rglob("*") if path.is_file())
        return sorted(path for path in paths if is_site_file(path))

    def files(self) -> list[SiteFile]:
        """Every file of the site in the folder: the whole site as built so far (and nothing else
        kept there, such as an outbox's messages)."""
        if not self.folder.is_dir():
            return []
        return [SiteFile(path, (self.folder / path).read_bytes()) for path in self._site_paths()]


def _write_atomically(path: Path, body: bytes) -> None:
    """A reader (or a sync tool) sees the old file or the new one, never half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "wb") as out:
            out.write(body)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        raise PublishError(f"cannot write {path} ({error.strerror or error})") from None


def parse_s3_url(url: str) -> tuple[str, str]:
    """s3://BUCKET/PREFIX -> (bucket, "PREFIX/"); the prefix may be empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"not an s3://BUCKET/PREFIX URL: {url!r}", key="publish.to")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3Target:
    def __init__(self, url: str, settings: PublishSettings, default_region: str):
        import boto3
        from botocore.config import Config as BotoConfig
        from botocore.exceptions import ProfileNotFound

        self.bucket, self.prefix = parse_s3_url(url)
        self.name = f"s3://{self.bucket}/{self.prefix}"
        try:
            session = boto3.session.Session(profile_name=settings.profile,
                                            region_name=settings.region or default_region)
        except ProfileNotFound as error:
            raise ConfigError(str(error), key="publish.profile") from None
        self.settings = settings
        self.client = session.client("s3", config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=60))

    def publish(self, files: Sequence[SiteFile], *, force: bool = False) -> TargetReport:
        report = TargetReport(self.name)
        existing = {} if force else self._etags()
        for site_file in in_upload_order(files):
            key = self.prefix + site_file.path
            md5 = hashlib.md5(site_file.body)
            if existing.get(key) == md5.hexdigest():
                report.unchanged.append(site_file.path)
                continue
            with self._failures(f"upload {key}"):
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=site_file.body,
                    ContentMD5=base64.b64encode(md5.digest()).decode("ascii"),
                    ContentType=content_type(site_file.path),
                    CacheControl=cache_control(site_file.path, self.settings),
                )
            report.written.append(site_file.path)
        return report

    def _etags(self) -> dict[str, str]:
        """Key -> ETag (without quotes) of every object under the prefix, in one listing."""
        etags: dict[str, str] = {}
        with self._failures("list the objects"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    etags[item["Key"]] = item["ETag"].strip('"')
        return etags

    def close(self) -> None:
        self.client.close()

    @contextlib.contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError:
            raise PublishError(f"cannot {doing} in {self.name}: no AWS credentials (set them the way boto3 "
                               "reads them: AWS_PROFILE, ~/.aws/credentials, a role)") from None
        except ClientError as error:
            details = error.response.get("Error", {})
            code, message = details.get("Code", "Unknown"), details.get("Message") or str(error)
            hint = {
                "NoSuchBucket": "the bucket does not exist (check publish.to)",
                "AccessDenied": "access denied; the IAM policy needs s3:ListBucket and s3:PutObject (docs/deploy.md)",
            }.get(code, message)
            raise PublishError(f"cannot {doing} in {self.name}: {code}: {hint}") from None
        except BotoCoreError as error:
            raise PublishError(f"cannot {doing} in {self.name}: {error}") from None
