"""Default locations of rasd's state and control socket.

The NVML backend runs as a system service (root, systemd StateDirectory=rasd and
RuntimeDirectory=rasd); the fake backend is for anyone, so its files live per user and never
touch the system's history.
"""

from __future__ import annotations

import os


# os.path, not pathlib: a daemon on NVML loads nothing else that needs pathlib, which brings
# urllib.parse and ipaddress with it (0.6 MB of its memory)
def _user_dir(kind: str) -> str:
    if kind == "state":
        home = os.path.expanduser("~")
        if not os.path.isabs(home):  # no HOME and no passwd entry: expanduser leaves "~" as it is
            home = f"/tmp/rasd-{os.getuid()}"
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
    else:
        base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/rasd-{os.getuid()}"
    return os.path.join(base, "rasd")


def parent_dir(path: str) -> str:
    """The directory ``path`` lies in, to create before the file (a trailing slash names the same
    place, not a directory below it; a bare name lies in the working directory)."""
    return os.path.dirname(path.rstrip("/")) or "."


def default_state_path(backend: str) -> str:
    """SQLite store: /var/lib/rasd/rasd.db for NVML, a per-user file for the fake backend."""
    if backend == "nvml":
        return os.environ.get("STATE_DIRECTORY", "/var/lib/rasd").split(":")[0] + "/rasd.db"
    return os.path.join(_user_dir("state"), "rasd-fake.db")


def default_control_socket(backend: str) -> str:
    """Unix control socket: /run/rasd/control.sock for NVML, a per-user path for the fake."""
    if backend == "nvml":
        return os.environ.get("RUNTIME_DIRECTORY", "/run/rasd").split(":")[0] + "/control.sock"
    return os.path.join(_user_dir("runtime"), "control-fake.sock")
