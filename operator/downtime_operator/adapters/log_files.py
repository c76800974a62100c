"""Captured-log files on the local disk (the operator's volume, the monitor's directory).

One JSON file per capture (an array of entries, the same shape as ``logs_captured``), named by
the incident id plus a random suffix. A new capture never overwrites the file the row points
at: the row is switched to the new file, then the old one is removed, so what the row says and
what the file holds always agree. Writes go to a temporary file renamed into place: a reader, or
a crash mid-write, never sees half a file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)

DEFAULT_LOG_FILES_DIR = Path("logs/downtime")
"""The seed's relative directory; the chart mounts a volume and sets ``LOG_FILES_DIR``."""


class LocalLogFiles:
    """Implements the ``LogFiles`` and ``CaptureFiles`` ports; file I/O runs in a worker thread,
    off the event loop."""

    def __init__(self, *, directory: Path | str = DEFAULT_LOG_FILES_DIR) -> None:
        self._directory = Path(directory)

    @property
    def directory(self) -> Path:
        return self._directory

    async def write(self, incident_id: UUID, records: list[dict[str, Any]]) -> str:
        return await asyncio.to_thread(self._write, incident_id, records)

    async def read(self, path: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(_read, Path(path))

    async def remove(self, path: str) -> bool:
        """Remove a capture file of this directory; anything else is left alone (False).

        The path comes from a database row. Rows are ours, but a restored dump, a hand edit or
        a changed ``LOG_FILES_DIR`` must never turn retention into deleting arbitrary files.
        """
        return await asyncio.to_thread(self._remove, Path(path))

    def _remove(self, path: Path) -> bool:
        if path.resolve().parent != self._directory.resolve() or path.suffix != ".json":
            logger.warning("not removing %s: not a capture file in %s", path, self._directory)
            return False
        return _unlink(path)

    def _write(self, incident_id: UUID, records: list[dict[str, Any]]) -> str:
        self._directory.mkdir(parents=True, exist_ok=True)
        target = (self._directory / f"{incident_id}-{secrets.token_hex(4)}.json").resolve()
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(records, out, ensure_ascii=False, separators=(",", ":"))
            os.replace(temporary, target)
        except BaseException:
            _unlink(Path(temporary))
            raise
        return str(target)


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as source:
        records = json.load(source)
    if not isinstance(records, list):
        raise ValueError(f"{path} does not hold a list of log entries")
    return records


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
