"""The repository stands on its own: no file points at a document or a path outside it.

The design notes the project started from are not shipped; what users need is in README.md and
docs/. (Issue numbers in the benchmarks' history are names of past work, not places to look.)
"""

from __future__ import annotations

import re
import subprocess

from tests.support.go_binaries import REPO

OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|DESIGN §|DESIGN \\u00a7|/work/")


def test_no_file_refers_to_anything_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in tracked:
        path = REPO / name
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        found += [
            f"{name}:{number}: {line.strip()}"
            for number, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line) and name != "tests/unit/test_self_contained.py"
        ]
    assert not found, "\n".join(found)
