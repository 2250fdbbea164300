"""`newsletter restore`: the list back from its S3 backup, on any machine with the config; and
`replica_status`: how the backup and this copy stand (for `subscribers stats` and `doctor`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import BackupError
from ..store import Store
from ..store.ledger import send_lock
from .lease import Holder, Lease, LeaseState, machine_id
from .litestream import Workspace, run
from .replica import (
    Head,
    Replica,
    litestream_folder,
    mark_path,
    may_continue_from,
    newest_local_head,
    read_mark,
    write_mark,
)


@dataclass(frozen=True)
class RestoredList:
    database: Path
    replica: str
    txid: int
    written_at: dt.datetime | None  # when the restored state reached S3
    counts: dict[str, int]  # subscribers by status
    last_issue: str | None
    last_issue_sent: int
    writer: LeaseState | None  # a machine writing the list as it was restored

    def to_dict(self) -> dict:
        return {
            "database": str(self.database), "replica": self.replica, "txid": self.txid,
            "written_at": self.written_at.isoformat() if self.written_at else None,
            "subscribers": self.counts, "last_issue": self.last_issue, "last_issue_sent": self.last_issue_sent,
            "being_written_by": self.writer.describe() if self.writer else None,
        }


def restore(config: Config, *, at: dt.datetime | None = None, force: bool = False) -> RestoredList:
    """Replace (or create) the database with the backup's newest state, or its state at `at`
    (as far back as the replica keeps: a week of snapshots). Refuses to replace a database that
    holds a list unless `force`."""
    settings = _settings(config)
    database = Path(config.database)
    _refuse_to_replace(database, force)
    replica = Replica(settings)
    try:
        writer = Lease(replica, Holder.here("restore"), settings.lease_seconds).read()
        if writer is not None and writer.live and writer.holder is not None and writer.holder.machine == machine_id():
            raise BackupError(f"a command on this machine is writing the list ({writer.describe()}); let it end first")
        head = replica.head()
        if head is None:
            raise BackupError(f"nothing to restore: {replica.url} holds no backup of the list yet")
        workspace = Workspace(database, replica.litestream_config())
        try:
            txid, written_at = _restore_into(database, workspace, settings.profile, head, at)
        finally:
            workspace.remove()
        # The copy continues from the head it saw, even when it is an older state (`at`): its
        # first write then makes that older state the newest, on purpose.
        write_mark(database, replica, head)
    finally:
        replica.close()
    from ..events.report import recent_feedback

    with Store.open(database) as store:
        counts = store.count_by_status()
    recent = recent_feedback(database, 1)
    last = recent[0] if recent else None
    return RestoredList(database, replica.url, txid, written_at, counts, last.issue_id if last else None,
                        last.sent if last else 0, writer if writer is not None and writer.live else None)


def _settings(config: Config):
    if config.backup is None:
        raise BackupError(f"{config.path}: no [backup] table: set `to = \"s3://BUCKET/PREFIX\"` in it to say where "
                          "the list's backup is (docs/new-editor.md)")
    return config.backup


def _refuse_to_replace(database: Path, force: bool) -> None:
    if force or not database.exists():
        return
    with Store.open(database) as store:
        counts = store.count_by_status()
        ledger_rows = store.connection.execute("SELECT count(*) FROM delivery").fetchone()[0]
    if sum(counts.values()) or ledger_rows:
        raise BackupError(f"{database} already holds a list ({sum(counts.values())} subscriber(s), {ledger_rows} "
                          "ledger row(s)); `newsletter restore --force` replaces it with the backup (anything it has "
                          "that the backup lacks is lost)")


def _restore_into(database: Path, workspace: Workspace, profile: str | None, head: Head,
                  at: dt.datetime | None) -> tuple[int, dt.datetime | None]:
    """Restore into a file beside the database, then put it in place of the database and
    everything that belonged to the old one (its WAL, Litestream's folder, the mark)."""
    target = [*workspace.arguments(), str(workspace.database)]
    if at is None:
        when = ["-txid", f"{head.txid:016x}"]
    else:
        when = ["-timestamp", at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    plan = json.loads(run(["restore", "-dry-run", "-json", *when, "-o", str(database) + ".restoring", *target],
                          profile=profile) or "{}")
    files = plan.get("files") or []
    if not files:
        raise BackupError(f"the backup has no state at or before {at:%Y-%m-%d %H:%M:%S %Z}" if at else
                          "the backup has no restorable state")
    txid = int(plan["max_txid"], 16)
    written_at = max((_time(item.get("timestamp")) for item in files), default=None, key=lambda t: t or _EPOCH)
    temporary = database.with_name(database.name + ".restoring")
    for leftover in _sidecars(temporary):
        leftover.unlink(missing_ok=True)
    run(["restore", "-txid", f"{txid:016x}", "-integrity-check", "quick", "-o", str(temporary), *target],
        profile=profile)
    with _exclusive(database):
        for old in _sidecars(database):
            old.unlink(missing_ok=True)
        shutil.rmtree(litestream_folder(database), ignore_errors=True)
        mark_path(database).unlink(missing_ok=True)
        os.replace(temporary, database)
    return txid, written_at


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _time(stamp: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except ValueError:
        return None


def _sidecars(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


@contextlib.contextmanager
def _exclusive(database: Path):
    """No send of this machine runs on the database while it is replaced."""
    if not database.exists():
        yield
        return
    with send_lock(database):
        yield


# --- status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaStatus:
    """How the backup stands, for `subscribers stats` and `newsletter doctor`."""

    replica: str
    head: Head | None = None  # the replica's newest change (None: never replicated)
    # "matches", "ahead" (it lacks changes made here), "behind" (this copy lacks changes it holds),
    # "unreplicated" (never restored or replicated), "no database"
    copy: str = "unknown"
    confirmed_at: str | None = None  # when this machine last read its newest change back from S3
    lease: LeaseState | None = None
    problem: str | None = None  # S3 could not be read

    def describe(self) -> str:
        """One line: when the replica last caught up, and how this copy stands against it."""
        if self.problem:
            return f"{self.replica}: {self.problem}"
        if self.head is None:
            state = "nothing replicated yet (the next command that writes the list uploads it)"
        else:
            when = f"{self.head.modified:%Y-%m-%d %H:%M:%S} UTC" if self.head.modified else "(time unknown)"
            state = f"last caught up {when} (change {self.head.txid})"
        copy = {
            "matches": "this copy matches it",
            "ahead": "changes made here are not in it yet (the next command that writes the list uploads them)",
            "behind": "this copy lacks changes it holds: `newsletter restore --force` before writing",
            "unreplicated": "this copy was never restored from it: `newsletter restore`",
            "no database": "no list on this machine yet: `newsletter restore`",
        }.get(self.copy, "")
        writer = f"; being written by {self.lease.describe()}" if self.lease and not self.lease.expired else ""
        return f"{self.replica}: {state}; {copy}{writer}"



def replica_status(config: Config) -> ReplicaStatus | None:
    """None without a [backup] table; else what S3 and this copy say (reads only)."""
    if config.backup is None:
        return None
    database = Path(config.database)
    try:
        replica = Replica(config.backup)
    except BackupError as error:
        return ReplicaStatus(config.backup.to, problem=str(error))
    try:
        head = replica.head()
        lease = Lease(replica, Holder.here("status"), config.backup.lease_seconds).read()
    except BackupError as error:
        return ReplicaStatus(replica.url, problem=str(error))
    finally:
        replica.close()
    mark = read_mark(database)
    if not database.exists():
        copy = "no database"
    elif may_continue_from(database, replica, head):
        local = newest_local_head(database)
        if local is not None and (head is None or local.txid > head.txid):
            copy = "ahead"  # Litestream wrote changes here that never reached S3
        else:
            copy = "matches" if head is None or mark or local else "unreplicated"
    else:
        copy = "behind" if mark or newest_local_head(database) else "unreplicated"
    return ReplicaStatus(replica.url, head, copy, mark.confirmed_at if mark else None, lease)
