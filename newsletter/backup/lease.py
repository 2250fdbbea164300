"""One writer at a time across machines: a lease object beside the replica.

Taking it is a conditional put (`If-None-Match: *`: only if there is none); renewing and
releasing are conditional on its ETag (`If-Match`), so a holder that lost it (it expired, a
person deleted or edited it, another machine took it over) finds out at its next renewal
instead of overwriting someone else's. Whether a lease has expired is judged by S3's clock alone
(the object's Last-Modified against the Date of the answer), so machines whose clocks disagree
still agree on it.

The lease lasts `lease_seconds` (60 by default) from its last renewal, and its holder renews it
every quarter of that. A holder that could not renew for three quarters of it treats it as lost
and stops writing, a quarter of a lease before anyone else may take it. A holder that died on
this very machine (its process is gone) is taken over at once rather than after a minute.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, replace

from ..aws.clients import error_code
from ..errors import BackupError, LeaseHeldError
from .replica import Replica, describe

# A renewal's answer older than this share of the lease means the lease may be someone else's.
SELF_FENCE_SHARE = 0.75
RENEW_SHARE = 0.25


def _clock() -> float:
    """Seconds, counting the time a laptop spends asleep (Linux's CLOCK_BOOTTIME; time.monotonic()
    stops while suspended): a lid closed past the lease must wake up to a lease it knows it lost."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def machine_id() -> str:
    """This machine, as two commands on it agree and two machines do not (Linux's machine-id,
    else the host name)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            found = open(path, encoding="ascii").read().strip()
        except OSError:
            continue
        if found:
            return found
    return socket.gethostname()


@dataclass(frozen=True)
class Holder:
    who: str  # user@host
    machine: str
    pid: int
    command: str  # what it is doing, e.g. "send issues/2023-10-16.md"
    since: str  # ISO 8601, UTC, by the holder's clock
    replicator_pid: int | None = None  # its Litestream process, once started

    @classmethod
    def here(cls, command: str) -> Holder:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "someone"
        since = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        return cls(f"{user}@{socket.gethostname()}", machine_id(), os.getpid(), command, since)

    def describe(self) -> str:
        return f"{self.who} (pid {self.pid}, `newsletter {self.command}`)"

    def gone(self) -> bool:
        """On this machine, whether the holder and its replicator have both ended."""
        return self.machine == machine_id() and not any(_alive(pid) for pid in (self.pid, self.replicator_pid) if pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process whose parent died too lingers as a zombie until something reaps it
        return open(f"/proc/{pid}/stat", encoding="ascii").read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class LeaseState:
    """The lease as found in S3: its holder (None if the object is not ours to read), its age by
    S3's clock, and whether it has expired."""

    holder: Holder | None
    raw: str
    etag: str
    age_seconds: float
    expired: bool

    @property
    def live(self) -> bool:
        """Held: not expired, and not left by a process of this machine that has ended."""
        return not self.expired and not (self.holder is not None and self.holder.gone())

    def describe(self) -> str:
        who = self.holder.describe() if self.holder else f"someone (the lease object holds {self.raw[:80]!r})"
        since = f" since {_when(self.holder.since)}" if self.holder else ""
        return f"{who}{since}, renewed {self.age_seconds:.0f} s ago"


def _when(stamp: str) -> str:
    try:
        return dt.datetime.fromisoformat(stamp).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return stamp


class LeaseLost(BackupError):
    """The lease is no longer ours (or cannot be known to be): stop writing."""


class Lease:
    def __init__(self, replica: Replica, holder: Holder, seconds: int):
        self.replica = replica
        self.holder = holder
        self.seconds = seconds
        self.etag: str | None = None
        self.renewed_at: float | None = None  # _clock() when the last renewal that went through was sent
        self.took_over: LeaseState | None = None  # the expired or dead lease this one replaced

    @property
    def renew_every(self) -> float:
        return self.seconds * RENEW_SHARE

    @property
    def fence_after(self) -> float:
        return self.seconds * SELF_FENCE_SHARE

    def acquire(self) -> None:
        """Take the lease, or LeaseHeldError naming who holds it and since when."""
        for _ in range(5):  # each round loses only to another machine changing it meanwhile
            if self._put(if_none_match=True):
                return
            found = self.read()
            if found is None:
                continue  # released between our put and our read: try again
            if found.live:
                raise LeaseHeldError(
                    f"the list is being written by {found.describe()}; two machines must not write it at once: "
                    f"wait until it ends (a lease left by a machine that died expires {self.seconds} s after its "
                    f"last renewal), then try again")
            if self._put(if_match=found.etag):
                self.took_over = found
                return
        raise BackupError(f"cannot take the lease at {self.replica.url}lease.json: it keeps changing; try again")

    def renew(self, **changes) -> None:
        """Renew (optionally recording `changes`, e.g. replicator_pid); LeaseLost if the lease is
        no longer this one, BackupError if S3 cannot be reached."""
        if changes:
            self.holder = replace(self.holder, **changes)
        if not self._put(if_match=self.etag):
            found = self.read()
            now_held = f"now held by {found.describe()}" if found else "deleted"
            raise LeaseLost(f"lost the lease to write the list ({now_held}): another machine may be writing it")

    def must_stop(self) -> bool:
        """True once no renewal has gone through for three quarters of a lease."""
        return self.renewed_at is not None and _clock() - self.renewed_at > self.fence_after

    def release(self) -> None:
        """Delete the lease if it is still ours; a lease we lost is left to its new holder."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self.etag is None:
            return
        etag, self.etag = self.etag, None
        try:
            self.replica.client.delete_object(Bucket=self.replica.bucket, Key=self.replica.lease_key, IfMatch=etag)
        except ClientError as error:
            if error_code(error) not in ("PreconditionFailed", "NoSuchKey", "404"):
                raise describe(error, "release the lease", self.replica.url) from None
        except BotoCoreError as error:
            raise describe(error, "release the lease", self.replica.url) from None

    def read(self) -> LeaseState | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.replica.client.get_object(Bucket=self.replica.bucket, Key=self.replica.lease_key)
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise describe(error, "read the lease", self.replica.url) from None
        raw = answer["Body"].read().decode("utf-8", errors="replace")
        server_now = _server_time(answer) or dt.datetime.now(dt.UTC)
        age = max(0.0, (server_now - answer["LastModified"]).total_seconds())
        return LeaseState(_holder(raw), raw, answer["ETag"], age, age > self.seconds)

    def _put(self, *, if_none_match: bool = False, if_match: str | None = None) -> bool:
        """One conditional put of our holder record: True if it went through, False if the
        condition failed (someone else's lease, or none where one was expected)."""
        from botocore.exceptions import BotoCoreError, ClientError

        condition = {"IfNoneMatch": "*"} if if_none_match else {"IfMatch": if_match}
        sent_at = _clock()
        try:
            answer = self.replica.client.put_object(
                Bucket=self.replica.bucket, Key=self.replica.lease_key, ContentType="application/json",
                Body=json.dumps(asdict(self.holder), ensure_ascii=False, indent=2).encode("utf-8"), **condition)
        except ClientError as error:
            if error_code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"):
                return False
            raise describe(error, "write the lease", self.replica.url) from None
        except BotoCoreError as error:
            raise describe(error, "write the lease", self.replica.url) from None
        self.etag = answer["ETag"]
        self.renewed_at = sent_at  # S3 stamped it at or after this moment: the holder's count starts early
        return True


def _server_time(answer: dict) -> dt.datetime | None:
    from email.utils import parsedate_to_datetime

    stamp = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(stamp) if stamp else None
    except (TypeError, ValueError):
        return None


def _holder(raw: str) -> Holder | None:
    try:
        return Holder(**json.loads(raw))
    except (ValueError, TypeError):
        return None  # not a lease this program wrote (edited by hand): it still counts until it expires
