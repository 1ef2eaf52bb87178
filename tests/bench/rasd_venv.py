"""rasd installed from this checkout into a virtual environment of its own, as an operator following
README installs it (``pip install <checkout>``, not editable), for the benchmarks that compare the
daemon's memory with a peer's or report what an operator's daemon holds.

Why not the interpreter the benchmark runs under: a development machine's Python may run start-up
hooks from its site-packages (``.pth`` files: an editable install's import finder, certificate
injectors, setuptools' distutils shim) that a fresh virtual environment does not, and a daemon
imported from a checkout on ``PYTHONPATH`` is not what a node runs. The peer is measured from its
own virtual environment; so is rasd.

The environment lives under the benchmarks' cache directory (``$XDG_CACHE_HOME/rasd-bench/``, one
a checkout) and is reinstalled when the installed sources change: the package's files (``rasd/``,
``exporters/``, ``pyproject.toml``, README) are hashed, committed or not, and the hash is kept in the
environment beside the commit it was taken at. They are copied to a temporary directory first, so
the build leaves nothing (``build/``, ``*.egg-info``) in the checkout. ``reuse`` takes an existing
environment as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bench.results import git

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("rasd", "exporters", "pyproject.toml", "README.md")
STAMP = "rasd-bench-source"


@dataclass(frozen=True, slots=True)
class RasdVenv:
    path: Path
    source: str  # what was installed: "<commit>" or "<commit> with local changes", or "reused as is"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def rasd(self) -> Path:
        return self.path / "bin" / "rasd"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) without ``PYTHONPATH``, so the daemon
        imports rasd from the environment, never from a checkout."""
        env = dict(os.environ if base is None else base)
        env.pop("PYTHONPATH", None)
        return env

    def check(self) -> None:
        """Exit with one line unless the environment's Python imports rasd and the exporter from
        the environment (not from a checkout on the path)."""
        code = "import exporters, rasd; print(rasd.__file__); print(exporters.__file__)"
        with tempfile.TemporaryDirectory() as t:
            r = subprocess.run([str(self.python), "-c", code], env=self.env(), cwd=t, capture_output=True, text=True)
        where = r.stdout.split()
        if r.returncode != 0 or len(where) != 2 or not all(Path(w).is_relative_to(self.path) for w in where):
            raise SystemExit(f"{self.path}: rasd is not importable from the environment "
                             f"({(r.stderr.strip().splitlines() or where or ['?'])[-1]}); delete it to reinstall")

    def describe(self) -> str:
        return f"rasd from {self.path} (pip install of the checkout, {self.source})"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rasd-bench"


def _files() -> list[Path]:
    """The package's files, relative to the checkout: git's tracked and untracked-not-ignored
    ones, or every file under the sources outside a git checkout."""
    listed = git("ls-files", "-co", "--exclude-standard", "--", *SOURCES)
    if listed:
        names = [Path(n) for n in listed.splitlines()]
    else:
        names = []
        for s in SOURCES:
            p = REPO / s
            names += [f.relative_to(REPO) for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file()]
    return sorted(n for n in names if (REPO / n).is_file() and "__pycache__" not in n.parts)


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for n in files:
        h.update(str(n).encode() + b"\0" + (REPO / n).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def rasd_venv(path: Path | None = None, reuse: bool = False, quiet: bool = False) -> RasdVenv:
    """The environment at ``path`` (default under the cache directory), created and (re)installed
    from the checkout when its sources changed; with ``reuse``, taken as it is."""
    # one a checkout: two worktrees benchmarked in turn (or at once) do not reinstall each other's
    venv = path or cache_dir() / f"rasd-venv-{REPO.name}-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}"
    if reuse:
        if not (venv / "bin" / "rasd").exists():
            raise SystemExit(f"--rasd-venv {venv}: no rasd installed there; run once without it, or "
                             f"`python -m venv {venv} && {venv}/bin/pip install {REPO}`")
        rv = RasdVenv(venv, "reused as is")
        rv.check()
        return rv
    files = _files()
    digest = _digest(files)
    commit = git("rev-parse", "--short=12", "HEAD") or "no commit"
    dirty = bool(git("status", "--porcelain", "--", *SOURCES))
    source = f"{commit} with local changes" if dirty else commit
    stamp = venv / STAMP
    kept = stamp.read_text().splitlines() if stamp.exists() else []
    if kept[:1] == [digest] and (venv / "bin" / "rasd").exists():
        rv = RasdVenv(venv, kept[1] if len(kept) > 1 else source)
        rv.check()
        return rv
    if not quiet:
        print(f"installing rasd ({source}) into {venv} ...", file=sys.stderr, flush=True)
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory(prefix="rasd-src-") as t:
        for n in files:
            (Path(t) / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / n, Path(t) / n)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        env = RasdVenv(venv, source).env()
        subprocess.run([*pip, t], check=True, env=env)  # the dependencies, as README's install
        # the same version number as before: make pip replace the package's files whatever it thinks
        subprocess.run([*pip, "--no-deps", "--force-reinstall", t], check=True, env=env)
    rv = RasdVenv(venv, source)
    rv.check()
    stamp.write_text(f"{digest}\n{source}\n")
    return rv
