"""One daemon per state: the lock beside the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rasd.instance import AlreadyRunning, InstanceLock, LockUnavailable, holder_pid


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    state = str(tmp_path / "rasd.db")
    first = InstanceLock(state).acquire()
    try:
        assert holder_pid(state) == os.getpid()
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}.*{state}"):
            InstanceLock(state).acquire()
    finally:
        first.release()
    assert holder_pid(state) is None
    InstanceLock(state).acquire().release()  # free again once released


def test_uncreatable_lock_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LockUnavailable, match="state_path"):
        InstanceLock(str(blocker / "sub" / "rasd.db")).acquire()
