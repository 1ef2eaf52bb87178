"""Shared fixtures for the power tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def swing_limit_config(tmp_path: Path) -> Callable[..., str]:
    """swing_limit_config(**power_keys) -> path of a rasd.toml whose [power] sets a 20 % swing
    limit (no limit is the default) plus the given keys."""

    def make(**keys: float) -> str:
        values = {"allowed_swing_percent": 20.0, **keys}
        path = tmp_path / "power-limit.toml"
        path.write_text("[power]\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items()))
        return str(path)

    return make
