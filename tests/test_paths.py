"""Default locations of rasd's state and control socket (rasd.paths)."""

from __future__ import annotations

import os

import pytest

from rasd import paths


def test_the_fake_backends_state_is_under_the_users_state_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert paths.default_state_path("fake") == "/srv/state/rasd/rasd-fake.db"


def test_without_a_home_directory_the_state_path_is_still_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HOME and no passwd entry (a bare container): expanduser leaves "~", which would put the
    store under whatever directory the daemon was started in."""
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)
    got = paths.default_state_path("fake")
    assert os.path.isabs(got) and got == f"/tmp/rasd-{os.getuid()}/.local/state/rasd/rasd-fake.db"


def test_the_nvml_backends_state_follows_systemds_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/rasd:/var/lib/other")
    assert paths.default_state_path("nvml") == "/var/lib/rasd/rasd.db"
