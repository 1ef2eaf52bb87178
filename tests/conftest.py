"""Shared fixtures: a manual clock and fake backends built from inline scenario text."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import settings

from rasd.backends import Backend, open_backend
from rasd.backends.fake.clock import ManualClock

# The daemon's default state and control socket (rasd.paths) point into a directory of this run's
# own, set before any test or subprocess starts: a test that runs `rasd status` or a daemon at the
# defaults never finds a daemon running on the machine (a node's, a benchmark's) or its history.
_DEFAULTS = Path(tempfile.mkdtemp(prefix="rasd-tests-"))
for _var, _sub in (("XDG_STATE_HOME", "state"), ("XDG_RUNTIME_DIR", "run"),
                   ("STATE_DIRECTORY", "var-lib-rasd"), ("RUNTIME_DIRECTORY", "run-rasd")):
    os.environ[_var] = str(_DEFAULTS / _sub)

# CI runs the same examples every time (a failure there must reproduce); developers explore.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def clock() -> ManualClock:
    """The one hand-driven clock of the tests (the fake backend's own, which also wakes event waits)."""
    return ManualClock(1000.0)


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[[str], str]:
    def make(text: str, name: str = "test") -> str:
        p = tmp_path / f"{name}.toml"
        p.write_text(textwrap.dedent(text))
        return str(p)

    return make


@pytest.fixture
def fake(scenario_file: Callable[[str], str]):
    """fake(scenario_text=None, **open_backend kwargs) -> an opened fake Backend, closed after."""
    opened: list[Backend] = []

    def make(text: str | None = None, **kw) -> Backend:
        path = scenario_file(text) if text is not None else None
        be = open_backend("fake", path, **kw)
        opened.append(be)
        return be

    yield make
    for be in opened:
        be.close()
