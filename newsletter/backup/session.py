"""Replication around one command that writes the list.

    with Replication(config, "send issues/2023-10-16.md", on_stop=warn) as replication:
        ... write ...
        replication.caught_up()     # before reporting anything done
    # leaving: the last changes uploaded and read back from S3, Litestream stopped, lease released

Entering takes the lease (or refuses, naming its holder), refuses a copy that lacks changes the
replica has (another machine wrote since this copy was restored: it would undo them), starts
Litestream and waits until S3 has everything this copy has. While the command runs, a watch
thread renews the lease and measures how far the replica is behind; when the lease is lost, or a
change has not reached S3 within `max_lag_seconds`, it stops the command: a send stops cleanly
as on Ctrl-C (the run's SIGINT handler), any other command finds out when it ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..config import Config
from ..errors import BackupError
from ..store import Store
from .lease import Holder, Lease, LeaseLost
from .litestream import Replicator, SyncResult, Workspace
from .replica import Replica, local_head_ending_at, may_continue_from, newest_local_head, read_mark, write_mark

# Litestream's first upload from a copy is a snapshot of the whole database: allow it time.
FIRST_UPLOAD_SECONDS = 300.0
# The least time given to upload what a command wrote, after it (max_lag_seconds if longer).
CATCH_UP_SECONDS = 30.0
# How long Litestream may take to read the database before it can upload anything.
READ_DATABASE_SECONDS = 15.0
WATCH_EVERY_SECONDS = 0.5


class Replication:
    def __init__(self, config: Config, command: str, *, on_stop: Callable[[str], None] | None = None):
        if config.backup is None:
            raise BackupError("no [backup] table in the config")
        self.settings = config.backup
        self.database = Path(config.database)
        self.command = command
        self.on_stop = on_stop or (lambda _message: None)
        self.replica: Replica | None = None
        self.lease: Lease | None = None
        self.replicator: Replicator | None = None
        self.failure: str | None = None  # why the watch stopped the command
        self.lease_lost = False
        self._threads: list[threading.Thread] = []
        self._renewal_error = "no answer"
        self._answered_at = time.monotonic()  # when Litestream last told the watch where it stands
        self._unanswered = ""
        self._watching = threading.Event()
        self._ending = threading.Event()  # wakes the watch at once when the command ends
        self._lock = threading.Lock()

    # --- entering ---

    def __enter__(self) -> Replication:
        self.replica = Replica(self.settings)
        self.lease = Lease(self.replica, Holder.here(self.command), self.settings.lease_seconds)
        try:
            self.lease.acquire()
            self._refuse_a_stale_copy()
            Store.open(self.database).close()  # created and migrated, in WAL mode, before Litestream reads it
            workspace = Workspace(self.database, self.replica.litestream_config(),
                                  shutdown_seconds=self.settings.lease_seconds / 2)
            self.replicator = Replicator(workspace, profile=self.settings.profile)
            self.replicator.start()
            self.lease.renew(replicator_pid=self.replicator.pid)
            self._upload(FIRST_UPLOAD_SECONDS)
        except BaseException:
            self._end(release=True)
            raise
        self._watching.set()
        self._answered_at = time.monotonic()
        for name, loop in (("replication watch", self._watch_loop), ("lease renewal", self._renew_loop)):
            self._threads.append(threading.Thread(target=loop, name=name, daemon=True))
            self._threads[-1].start()
        return self

    def _refuse_a_stale_copy(self) -> None:
        head = self.replica.head()
        if may_continue_from(self.database, self.replica, head):
            return
        when = f" (its newest change is from {head.modified:%Y-%m-%d %H:%M:%S} UTC)" if head.modified else ""
        if read_mark(self.database) is None and newest_local_head(self.database) is None:
            raise BackupError(
                f"{self.replica.url} already holds a list{when}, and the one here was never restored from it: run "
                "`newsletter restore` (`--force` to replace the one here), or point backup.to at a folder of its own")
        raise BackupError(
            f"{self.replica.url} holds changes this copy of the list does not have{when}: another machine wrote "
            "it since this copy was restored; run `newsletter restore --force` to take them, then try again "
            "(writing from this copy would undo them)")

    # --- while the command runs ---

    def _watch_loop(self) -> None:
        """Every half second: is the lease still surely ours, and how far behind is S3?"""
        pending: deque[tuple[int, float]] = deque()  # (txid Litestream has read, when first seen)
        while self._watching.is_set() and self.failure is None:
            if self.lease.must_stop():
                self._stop(f"could not renew the lease for {self.lease.fence_after:.0f} s ({self._renewal_error}); "
                           "another machine may take it soon, so this command stopped", lease_lost=True)
                break
            self._measure_lag(pending, time.monotonic())
            self._ending.wait(WATCH_EVERY_SECONDS)
        while self._watching.is_set():  # stopped: keep asking the command to stop until it does
            self._interrupt()
            self._ending.wait(WATCH_EVERY_SECONDS)

    def _renew_loop(self) -> None:
        """Renew the lease every quarter of it, in a thread of its own: a renewal that hangs on the
        network must not keep the watch from stopping the command in time."""
        while not self._ending.wait(self.lease.renew_every) and self.failure is None:
            try:
                self.lease.renew()
            except LeaseLost as error:
                self._stop(f"{error}; this command stopped", lease_lost=True)
            except BackupError as error:
                self._renewal_error = str(error)  # the watch stops the command if this goes on

    def _measure_lag(self, pending: deque[tuple[int, float]], now: float) -> None:
        """Stop the command when a change it made has waited `max_lag_seconds` for S3, or when
        Litestream has not been able to say for that long (busy on an upload that hangs)."""
        if not self.replicator.alive():
            self._stop(f"litestream stopped{self.replicator.why()}")
            return
        try:
            position = self.replicator.sync(wait=False, timeout=1)
        except BackupError as error:
            self._unanswered = str(error)
        else:
            self._answered_at = now
            if not pending or position.txid > pending[-1][0]:
                pending.append((position.txid, now))
            while pending and pending[0][0] <= position.replicated_txid:
                pending.popleft()
        limit = self.settings.max_lag_seconds
        if pending and now - pending[0][1] > limit:
            self._stop(f"changes made here have not reached {self.replica.url} for {now - pending[0][1]:.0f} s"
                       f"{self.replicator.why()}, so this command stopped")
        elif now - self._answered_at > limit:
            self._stop(f"litestream has not said whether changes made here reached {self.replica.url} for "
                       f"{now - self._answered_at:.0f} s ({self._unanswered}), so this command stopped")

    def _stop(self, message: str, *, lease_lost: bool = False) -> None:
        with self._lock:
            if self.failure is not None or not self._watching.is_set():
                return  # stopped already, or the command has ended
            self.failure, self.lease_lost = message, lease_lost
        if lease_lost:
            self.replicator.kill()  # not one more upload: the replica may be someone else's now
        self.on_stop(message)
        self._interrupt()

    def _interrupt(self) -> None:
        """Ask a send to stop as Ctrl-C does: its run installs a SIGINT handler that only sets a
        flag (thread-safe), so it is called here directly, never by raising KeyboardInterrupt at
        some arbitrary point of the main thread. Other commands are short and are told at the end."""
        with self._lock:
            handler = signal.getsignal(signal.SIGINT)
            if self._watching.is_set() and callable(handler) and handler is not signal.default_int_handler:
                handler(signal.SIGINT, None)

    # --- catching up and leaving ---

    def caught_up(self) -> None:
        """Upload every change made so far and read it back from S3: BackupError unless S3 holds
        this copy's newest change file."""
        self._raise_if_stopped()
        self._upload(self._catch_up_seconds)
        self._confirm()

    def holds_all_so_far(self) -> None:
        """Return once S3 holds every change committed before this call, while the command goes on
        writing (a sync, before it deletes the queue messages it applied): changes made meanwhile
        may still be on their way. BackupError if S3 does not hold them within `max_lag_seconds`
        (after which the watch stops the command anyway), or once the watch has stopped it. Safe to
        call from another thread."""
        self._raise_if_stopped()
        wanted = self.replicator.sync(wait=False, timeout=READ_DATABASE_SECONDS).txid  # every commit so far
        uploaded = self._upload(self.settings.max_lag_seconds)
        # Read back from S3 the change file that ends at `wanted` (Litestream keeps it here for
        # minutes; without it, Litestream's own word that the replica reached it).
        local = local_head_ending_at(self.database, wanted)
        if uploaded.replicated_txid < wanted or (local is not None and not self.replica.has(local)):
            raise BackupError(f"{self.replica.url} does not hold this copy's change {wanted} after its upload; it is "
                              "kept here and the next command that writes uploads it")

    @property
    def _catch_up_seconds(self) -> float:
        return max(CATCH_UP_SECONDS, self.settings.max_lag_seconds)

    def _upload(self, timeout: float) -> SyncResult:
        """Have Litestream upload everything it has read, and wait for S3's answer."""
        deadline = time.monotonic() + timeout
        reading_deadline = time.monotonic() + READ_DATABASE_SECONDS
        while True:
            try:
                return self.replicator.sync(wait=True, timeout=max(1.0, deadline - time.monotonic()))
            except BackupError as error:
                # Just started, Litestream may not have read the database yet ("no position,
                # waiting for data"): ask again until it has.
                if "waiting for data" in str(error) and time.monotonic() < min(deadline, reading_deadline) \
                        and self.replicator.alive():
                    time.sleep(0.05)
                    continue
                raise BackupError(f"the changes made here could not be uploaded to {self.replica.url} within "
                                  f"{timeout:g} s ({error}){self.replicator.why()}; they are kept here, and the next "
                                  "command that writes the list uploads them") from None

    def _confirm(self) -> None:
        local = newest_local_head(self.database)
        if local is None:
            raise BackupError(f"litestream kept no change file beside {self.database}; nothing can be confirmed in "
                              f"{self.replica.url}")
        head = self.replica.head()  # the newest change file's name and trailer, as S3 holds them
        if head is None or (head.name, head.trailer) != (local.name, local.trailer):
            raise BackupError(f"{self.replica.url} does not hold this copy's newest change ({local.name}); it is kept "
                              "here and the next command that writes uploads it")
        write_mark(self.database, self.replica, head)

    def _raise_if_stopped(self) -> None:
        if self.failure is not None:
            raise BackupError(self.failure)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None):
        with self._lock:
            self._watching.clear()
        self._ending.set()
        for thread in self._threads:
            thread.join(10)  # a renewal hanging on a cut network is not waited out
        problem = self.failure
        try:
            if not self.lease_lost:
                try:
                    self._finish()
                except BackupError as failed:
                    problem = (f"{problem}; what it did is kept here, and the next command that writes the list "
                               "uploads it") if problem else str(failed)
                else:
                    problem = problem and f"{problem}; what it did until then is in {self.replica.url}"
        finally:
            self._end(release=not self.lease_lost)
        if problem:
            raise BackupError(problem)

    def _finish(self) -> None:
        """Upload the last changes, stop Litestream (which uploads anything newer as it ends) and
        read the newest change back from S3."""
        # After a stall, one more lag's worth of waiting: the network may be back, or may not.
        self._upload(self.settings.max_lag_seconds if self.failure else self._catch_up_seconds)
        if not self.replicator.stop(self.settings.lease_seconds / 2 + 5):
            raise BackupError(f"litestream did not stop cleanly{self.replicator.why()}")
        self._confirm()

    def _end(self, *, release: bool) -> None:
        if self.replicator is not None:
            self.replicator.cleanup()
        with contextlib.suppress(BackupError):
            if release and self.lease is not None:
                self.lease.release()
        if self.replica is not None:
            self.replica.close()
