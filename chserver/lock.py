"""The data-directory lock: chDB lets one process open a data directory; this says who holds it."""

from __future__ import annotations

import fcntl
import re
from pathlib import Path

from chserver.exceptions import WarehouseServerError


def data_dir_holder(data_dir: Path) -> str | None:
    """Who holds a chDB data directory ("pid N" or "another process"), or None if it is free."""
    status = data_dir / "status"
    try:
        with status.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = re.search(rb"PID:\s*(\d+)", handle.read())
                return f"pid {pid.group(1).decode()}" if pid else "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:  # no status file: never opened, or not a data directory yet
        return None
    return None


def _in_use(data_dir: Path, holder: str) -> str:
    return f"cannot open the warehouse data directory {data_dir}: it is in use by {holder}"


def ensure_free(data_dir: Path) -> None:
    """Raise WarehouseServerError when another process holds the data directory."""
    holder = data_dir_holder(data_dir)
    if holder:
        raise WarehouseServerError(_in_use(data_dir, holder))


def open_failure(data_dir: Path, exc: Exception) -> str:
    """Why chDB could not open a data directory, said plainly (another process holding it is the usual cause)."""
    holder = data_dir_holder(data_dir)
    if holder:
        return _in_use(data_dir, holder)
    return f"cannot open the warehouse data directory {data_dir}: {exc}"
