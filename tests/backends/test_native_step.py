"""The fake node's power-model loops in C (rasd/backends/fake/_powerstep.c), compiled here with
gcc as the install builds them: the same pinned readings as the Python loops, to the bit, and a
build that fuses multiply-adds (which round differently) refused in favour of the Python loops."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from rasd.backends.fake import stepper
from tests.backends import test_power_pinned

SOURCE = Path(stepper.__file__).with_name("_powerstep.c")


def _build(out: Path, *flags: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (tests/run.sh installs it)")
    lib = out / f"_powerstep{abs(hash(flags))}.so"
    r = subprocess.run([gcc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *flags,
                        "-o", str(lib), str(SOURCE), "-lpthread", "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return lib


@pytest.fixture
def native(tmp_path: Path) -> Iterator[stepper.Stepper]:
    loaded = stepper.load(_build(tmp_path, "-ffp-contract=off"))  # pyproject.toml's flags
    assert isinstance(loaded, stepper.NativeStepper)
    old = stepper.use(loaded)
    try:
        yield loaded
    finally:
        stepper.use(old)


def test_native_loops_give_the_pinned_readings(native: stepper.Stepper) -> None:
    assert stepper.active is native
    test_power_pinned.test_power_readings_are_pinned()


def test_python_loops_give_the_pinned_readings() -> None:
    old = stepper.use(stepper.PythonStepper())
    try:
        test_power_pinned.test_power_readings_are_pinned()
    finally:
        stepper.use(old)


def _has_fma() -> bool:
    if platform.machine() in ("aarch64", "arm64"):
        return True  # fused multiply-add is part of the base instruction set
    try:
        return platform.machine() == "x86_64" and " fma " in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_a_build_that_fuses_multiply_adds_is_refused(tmp_path: Path) -> None:
    if not _has_fma():
        pytest.skip("this CPU has no fused multiply-add instruction to build with")
    flags = ("-ffp-contract=fast",) + (("-mfma",) if platform.machine() == "x86_64" else ())
    assert stepper.load(_build(tmp_path, *flags)) is None


def test_the_built_extension_is_the_one_in_use() -> None:
    built = [p for p in SOURCE.parent.glob("_powerstep*.so")]
    if not built:
        pytest.skip("rasd was not built here with a C compiler (pip install runs it where one is present)")
    assert isinstance(stepper.active, stepper.NativeStepper)


def test_a_stale_build_is_refused(tmp_path: Path) -> None:
    """A library from another version of the source (its functions may take other arguments)."""
    src = tmp_path / "_powerstep.c"
    src.write_text(SOURCE.read_text().replace(f"return {stepper.VERSION};", "return 0;", 1))
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (tests/run.sh installs it)")
    lib = tmp_path / "stale.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-ffp-contract=off", "-o", str(lib), str(src), "-lpthread", "-lm"], check=True)
    assert stepper.load(lib) is None
    (tmp_path / "none.c").write_text("int nothing(void) { return 0; }\n")
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(tmp_path / "none.so"), str(tmp_path / "none.c")], check=True)
    assert stepper.load(tmp_path / "none.so") is None
