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

The site is the files the site code made, never "whatever is in the folder": the folder may be
shared with other output (`newsletter build`'s files, a dry run's outbox with every address and
live unsubscribe links), so the folder target keeps a manifest of every path it was given, and
only those are uploaded. A file made by a tool (a search index) joins the site the same way: as
a SiteFile handed to `FolderTarget.publish`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
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


# In the site's folder: the "/"-separated path of every file the site wrote there, one JSON list.
SITE_MANIFEST = ".newsletter-site.json"


class FolderTarget:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.name = str(self.folder)
        self._recorded_now: set[str] = set()  # this run's paths, whatever another run did to the manifest

    def publish(self, files: Sequence[SiteFile], *, force: bool = False, whole: Sequence[str] = ()) -> TargetReport:
        """Write what differs; then, in each folder named in `whole` (whose every file `files`
        holds), remove the site's files that `files` does not have."""
        report = TargetReport(self.name)
        # Recorded before the files are written: a crash leaves a listed path whose file is not
        # there yet (skipped by `files`), never a site file left out of the site.
        self._record(site_file.path for site_file in files)
        for site_file in in_upload_order(files):
            path = self.folder / site_file.path
            if not force and path.is_file() and path.read_bytes() == site_file.body:
                report.unchanged.append(site_file.path)
                continue
            _write_atomically(path, site_file.body)
            report.written.append(site_file.path)
        kept = {site_file.path for site_file in files}
        inside = tuple(f"{name}/" for name in whole)
        stale = sorted(path for path in self._recorded() | self._recorded_now
                       if path.startswith(inside) and path not in kept)
        for path in stale:
            try:
                (self.folder / path).unlink(missing_ok=True)
            except OSError as error:
                raise PublishError(f"cannot remove {self.folder / path} ({error.strerror or error})") from None
            report.removed.append(path)
        # Forgotten only once gone: a crash before leaves a listed path with no file (skipped).
        self._record(forget=stale)
        return report

    def files(self) -> list[SiteFile]:
        """The whole site as built so far: every file the site wrote to this folder, and nothing
        else that lives there."""
        site = []
        for name in sorted(self._recorded() | self._recorded_now):
            path = self.folder / name
            if path.is_file():
                site.append(SiteFile(name, path.read_bytes()))
        return site

    def _recorded(self) -> set[str]:
        try:
            names = json.loads((self.folder / SITE_MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as error:
            raise PublishError(f"cannot read {self.folder / SITE_MANIFEST} ({error}); delete it and publish "
                               "every issue again (--all)") from None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise PublishError(f"{self.folder / SITE_MANIFEST} is not a list of paths; delete it and publish "
                               "every issue again (--all)")
        # The manifest is a file anyone can edit: no path in it may lead out of the folder.
        root = self.folder.resolve()
        for name in names:
            if "\0" in name or not (self.folder / name).resolve().is_relative_to(root):
                raise PublishError(f"{self.folder / SITE_MANIFEST} lists {name!r}, which is not in {self.folder}; "
                                   "delete that line (or the file: the next publish writes it again)")
            if not is_site_file(name):
                raise PublishError(f"{self.folder / SITE_MANIFEST} lists {name!r}, which the site never makes; "
                                   "delete that line (or the file: the next publish writes it again)")
        return set(names)

    def _record(self, paths: Iterable[str] = (), *, forget: Iterable[str] = ()) -> None:
        new, gone = set(paths), set(forget)
        self._recorded_now = (self._recorded_now | new) - gone
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            folder = os.open(self.folder, os.O_RDONLY)
        except OSError as error:
            raise PublishError(f"cannot write {self.folder} ({error.strerror or error})") from None
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)  # two publishes at once: neither loses the other's paths
            recorded = self._recorded()
            if not new <= recorded or gone & recorded:
                body = json.dumps(sorted((recorded | new) - gone), indent=0).encode("utf-8") + b"\n"
                _write_atomically(self.folder / SITE_MANIFEST, body)
        finally:
            os.close(folder)


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
