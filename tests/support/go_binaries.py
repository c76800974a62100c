"""Binaries the tests build from Go modules (scripts/build-*.sh, cached by version).

An environment variable (scripts/test.sh exports them) names the binary; otherwise its build
script is run, which is instant once the binary is cached, and prints ``NAME=<path>``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def go_binary(name: str, script: Path) -> Path:
    explicit = os.environ.get(name)
    if explicit:
        return Path(explicit)
    proc = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return Path(value)
    raise RuntimeError(f"{script} printed no {name}=: {proc.stdout}")
