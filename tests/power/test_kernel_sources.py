"""The power kernel's build inputs agree with its files: every C file of rasd/power/ is compiled
into rasd.power._kernel (a file left out would leave its functions undefined, and the optional
extension would quietly fall back to NumPy), and the built library exports exactly the functions
_kernel.h declares for ctypes, none of the ones it marks internal.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
POWER = ROOT / "rasd" / "power"
LIBRARY = POWER / ("_kernel" + importlib.machinery.EXTENSION_SUFFIXES[0])
# a declaration in the header: optional PK_INTERNAL, a return type, the name, "("
DECLARED = re.compile(r"^(PK_INTERNAL\s+)?[a-z_ ]+[ *](pk_\w+)\(", re.MULTILINE)


def kernel_module() -> dict[str, object]:
    modules = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["ext-modules"]
    [module] = [m for m in modules if m["name"] == "rasd.power._kernel"]
    return module


def declared() -> tuple[set[str], set[str]]:
    """(public, internal) function names of _kernel.h."""
    public, internal = set(), set()
    for m in DECLARED.finditer((POWER / "_kernel.h").read_text()):
        (internal if m.group(1) else public).add(m.group(2))
    return public, internal


def test_every_c_file_is_a_source_of_the_extension() -> None:
    module = kernel_module()
    files = {f"rasd/power/{p.name}" for p in POWER.glob("_*.c")}
    assert set(module["sources"]) == files  # type: ignore[arg-type]
    assert module["depends"] == ["rasd/power/_kernel.h"]


def test_the_library_exports_the_public_header_and_nothing_internal() -> None:
    public, internal = declared()
    assert {"pk_analyze", "pk_version", "pk_median"} <= public
    assert {"pk_pairwise_sum", "pk_select_kth", "pk_rfft_abs"} <= internal
    if not LIBRARY.exists():
        pytest.skip(f"the power kernel is not built ({LIBRARY.name} missing): `pip install -e .` builds it")
    lib = ctypes.CDLL(str(LIBRARY))
    assert sorted(n for n in public if not hasattr(lib, n)) == []
    assert sorted(n for n in internal if hasattr(lib, n)) == []
