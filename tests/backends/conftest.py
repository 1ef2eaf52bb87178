"""Fixtures for the fake backend's own tests: the real pynvml module and fake nodes on a manual clock."""

from __future__ import annotations

import textwrap
from typing import Any, Callable

import pytest

from rasd.backends.fake.clock import ManualClock
from rasd.backends.fake import FakeNode, FakeNvml
from rasd.backends.nvml import pynvml_module
from rasd.backends.fake.scenario import parse_scenario


@pytest.fixture
def base() -> Any:
    return pynvml_module()


@pytest.fixture
def mclock() -> ManualClock:
    return ManualClock(500.0)


@pytest.fixture
def make(base: Any, mclock: ManualClock) -> Callable[..., tuple[FakeNode, FakeNvml]]:
    """make(scenario_text=None, **FakeNode kwargs) -> (node, initialised fake pynvml)."""

    def build(text: str | None = None, **kw: Any) -> tuple[FakeNode, FakeNvml]:
        scn = parse_scenario(textwrap.dedent(text), source="test.toml") if text else None
        kw.setdefault("clock", mclock)
        kw.setdefault("wall_clock", lambda: 1_700_000_000.0)
        node = FakeNode(scenario=scn, **kw)
        lib = FakeNvml(node, base)
        lib.nvmlInit()
        return node, lib

    return build
