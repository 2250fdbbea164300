"""Writing a file so that a reader (or a crash) sees the old bytes or the new ones, never a mix:
a temporary file in the same folder, fsynced, then renamed over (or linked to) the name."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def leftover_temps(path: Path) -> list[Path]:
    """Temporary files a killed writer left beside `path`."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def write_atomically(path: str | Path, data: bytes, *, replace: bool = True, expect: bytes | None = None) -> bool:
    """Write `data` to `path` in one step. replace=False: FileExistsError if `path` exists.
    expect: only if `path` still holds exactly these bytes (checked just before the rename);
    returns False, writing nothing, when it does not."""
    path = Path(os.path.realpath(path))  # through a symlink: replace its target, keep the link
    temp = temp_name(path)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666  # less the umask, as any new file
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if expect is not None and _read(path) != expect:
            temp.unlink()
            return False
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # FileExistsError rather than overwrite
            temp.unlink()
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return True


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
