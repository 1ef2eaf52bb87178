"""The import walls README's "How it works" promises, checked over the source tree.

A small AST walk rather than import-linter: two of the rules are allow-lists (the model imports no
rasd module at all; exporters import only the model and the snapshot from rasd), and one is not
about imports (pynvml's error classes are caught only inside the backends), which import-linter's
forbidden-import contracts do not express. Every import counts, including those inside functions
and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The command line wires the program together: the one place in rasd/ that may import exporters/.
COMPOSITION_ROOT = "rasd.cli"
# The pure cores (no threads, no I/O, the clock passed in) are the modules pyproject.toml has
# mypy check strictly: one list for both promises.
if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
PURE_CORES = frozenset(
    m for o in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    if o.get("disallow_untyped_defs") for m in o["module"])
# What a pure core must not import: threads, processes, files, sockets, clocks, logs, the store.
IMPURE = ("os", "sys", "time", "threading", "socket", "subprocess", "sqlite3", "logging", "signal",
          "shutil", "asyncio", "multiprocessing", "pathlib", "random", "rasd.store", "rasd.backends",
          "rasd.daemon", "rasd.control", "rasd.cli")
# The areas and what they stand on never reach up to the floors that wire them together.
AREAS = ("rasd.model", "rasd.config", "rasd.store", "rasd.backends", "rasd.telemetry", "rasd.ladder",
         "rasd.sdc", "rasd.power", "rasd.scheduler")
UPPER = ("rasd.snapshot", "rasd.service", "rasd.stages", "rasd.daemon", "rasd.notify", "rasd.freshness",
         "rasd.instance", "rasd.statusview", "rasd.cli")
# What exporters may take from rasd: the package itself (its version), the model, the snapshot.
EXPORTER_MAY_IMPORT = ("rasd", "rasd.model", "rasd.snapshot")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import statement, relative ones resolved."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # "from rasd import model" imports the module rasd.model; "from rasd import __version__" only rasd
            out += [(node.lineno, f"{name}.{a.name}" if is_module(f"{name}.{a.name}") else name)
                    for a in node.names]
    return sorted(set(out))


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def check(rel: Path, source: str) -> list[Violation]:
    """Every wall the file at ``rel`` (relative to the repository root) breaks."""
    tree = ast.parse(source, str(rel))
    module = module_name(rel)
    found = []

    def bad(line: int, rule: str) -> None:
        found.append(Violation(rel.as_posix(), line, rule))

    for line, name in imports(tree, module, rel.name == "__init__.py"):
        if within(module, "rasd") and not within(module, COMPOSITION_ROOT) and within(name, "exporters"):
            bad(line, f"{module} imports {name}: nothing in rasd/ but the CLI imports exporters/ "
                      "(the CLI hands the daemon a function that serves metrics)")
        if module == "rasd.model" and within(name, "rasd") and name != "rasd.model":
            bad(line, f"rasd.model imports {name}: the model is the ground floor and imports no rasd module")
        if within(module, "exporters") and within(name, "rasd") and name not in EXPORTER_MAY_IMPORT:
            bad(line, f"exporters import {name}: exporters read only rasd.model and rasd.snapshot")
        if any(within(module, a) for a in AREAS) and any(within(name, u) for u in UPPER):
            bad(line, f"{module} imports {name}: an area never imports the floors above it "
                      "(snapshot, services, daemon, CLI)")
        if module in PURE_CORES and any(within(name, i) for i in IMPURE):
            bad(line, f"{module} imports {name}: a pure core does no I/O and reads no clock (pass it in)")
        if within(name, "pynvml") and not within(module, "rasd.backends.nvml"):
            bad(line, f"{module} imports pynvml: only the NVML adapter (rasd/backends/nvml/) does")
    if not within(module, "rasd.backends"):
        for node in ast.walk(tree):
            ident = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if ident.startswith("NVMLError"):
                bad(node.lineno, f"{module} uses {ident}: pynvml's errors stay inside rasd/backends/ "
                                 "(catch rasd.backends.errors instead)")
    return found


def source_files() -> list[Path]:
    return sorted(p.relative_to(ROOT) for top in ("rasd", "exporters") for p in (ROOT / top).rglob("*.py"))


def test_the_source_tree_keeps_every_wall():
    files = source_files()
    assert len(files) > 50, f"found only {len(files)} source files under {ROOT}"
    assert {"rasd.model", "rasd.ladder.escalate", "rasd.power.analysis"} <= PURE_CORES, PURE_CORES
    problems = [v for rel in files for v in check(rel, (ROOT / rel).read_text())]
    assert not problems, "walls broken:\n" + "\n".join(map(str, problems))


@pytest.mark.parametrize("path, source, rule", [
    ("rasd/daemon.py", "def start():\n    from exporters.prometheus import serve\n", "nothing in rasd/ but the CLI"),
    ("rasd/ladder/service.py", "from exporters import prometheus\n", "nothing in rasd/ but the CLI"),
    ("rasd/model.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rasd.ladder.state import LadderState\n",
     "the model is the ground floor"),
    ("rasd/model.py", "from . import config\n", "the model is the ground floor"),
    ("exporters/sections/gpu.py", "from rasd.telemetry.detect import NVLINK_COUNTERS\n", "exporters read only"),
    ("exporters/sections/power.py", "from rasd.power import decide\n", "exporters read only"),
    ("rasd/telemetry/xid.py", "import pynvml\n", "only the NVML adapter"),
    ("rasd/ladder/escalate.py", "import time\n", "a pure core does no I/O"),
    ("rasd/sdc/service.py", "from rasd.snapshot import Snapshot\n", "never imports the floors above"),
    ("rasd/telemetry/poller.py", "def f():\n    from rasd.daemon import Daemon\n", "never imports the floors above"),
    ("rasd/power/analysis.py", "def f():\n    from rasd.store import Store\n", "a pure core does no I/O"),
    ("rasd/telemetry/xid.py", "try:\n    pass\nexcept lib.NVMLError:\n    pass\n", "pynvml's errors stay inside"),
])
def test_each_rule_catches_its_breach(path, source, rule):
    found = check(Path(path), source)
    assert [v.line for v in found] and all(rule in v.rule for v in found), found


@pytest.mark.parametrize("path, source", [
    ("exporters/sections/daemon.py", "from rasd import __version__\nfrom rasd.snapshot import Snapshot\n"),
    ("exporters/prometheus.py", "from exporters.family import TextRenderer\nfrom rasd.model import GpuState\n"),
    ("rasd/backends/nvml/core.py", "import pynvml\n"),
    ("rasd/backends/__init__.py", "try:\n    pass\nexcept lib.NVMLError:\n    pass\n"),
    ("rasd/daemon.py", "from rasd.snapshot import Snapshot\nfrom .model import Rung\n"),
    ("rasd/cli/telemetry.py", "def run():\n    from exporters.prometheus import serve\n"),
])
def test_what_the_walls_allow(path, source):
    assert check(Path(path), source) == []
