"""README's configuration reference, generated from the commented sample systemd/rasd.toml.

`python -m tests.deploy.config_reference` prints it; a test keeps README equal to it, so the
sample (itself checked against the settings dataclasses) is the one source.
"""

from __future__ import annotations

import re
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "rasd.toml"


def reference(sample: Path = SAMPLE) -> str:
    out: list[str] = []
    comment: list[str] = []
    for line in sample.read_text().splitlines():
        table = re.match(r"^\[(\w+)\]$", line)
        key = re.match(r"^# (\w+) = (.+)$", line)
        if table:
            out += ["", f"**[{table.group(1)}]**", "", "| key | default | meaning |", "| --- | --- | --- |"]
            comment = []
        elif key and out:
            meaning = " ".join(comment).replace("|", "/")
            out.append(f"| `{key.group(1)}` | `{key.group(2)}` | {meaning} |")
            comment = []
        elif line.startswith("# ") and out:
            comment.append(line[2:].strip())
        elif not line.strip():
            comment = []
    return "\n".join(out).strip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
