"""The data-directory lock: who holds a chDB data directory, and the error when it is taken."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from chserver.exceptions import WarehouseServerError
from chserver.lock import data_dir_holder, ensure_free, open_failure


def test_a_directory_nobody_opened_is_free(tmp_path: Path) -> None:
    assert data_dir_holder(tmp_path) is None
    ensure_free(tmp_path)
    assert open_failure(tmp_path, OSError("boom")) == f"cannot open the warehouse data directory {tmp_path}: boom"


def test_a_held_directory_names_its_holder(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_bytes(b"PID: 4242\nStarted at: now\n")
    with status.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert data_dir_holder(tmp_path) == "pid 4242"
        with pytest.raises(WarehouseServerError) as info:
            ensure_free(tmp_path)
        assert str(info.value) == f"cannot open the warehouse data directory {tmp_path}: it is in use by pid 4242"
        assert open_failure(tmp_path, OSError("boom")) == str(info.value)
    assert data_dir_holder(tmp_path) is None
