"""Captured-log files on the local disk (the operator's volume, the monitor's directory).

One JSON file per capture (an array of entries, the same shape as ``logs_captured``), named by
the incident id plus a random suffix. A new capture never overwrites the file the row points
at: the row is switched to the new file, then the old one is removed, so what the row says and
what the file holds always agree. Writes go to a temporary file renamed into place: a reader, or
a crash mid-write, never sees half a file.

With log encryption keys the file holds the JSON sealed (``adapters.encryption``), bound to its
incident (``<incident id>/logs_file``): a file another incident's row points at does not open.
It is opened in memory only, never written back plain.
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

from downtime_operator.adapters.encryption import PREFIX, LogKeyRing, key_id_of

logger = logging.getLogger(__name__)

DEFAULT_LOG_FILES_DIR = Path("logs/downtime")
"""The seed's relative directory; the chart mounts a volume and sets ``LOG_FILES_DIR``."""


class LocalLogFiles:
    """Implements the ``LogFiles`` and ``CaptureFiles`` ports; file I/O runs in a worker thread,
    off the event loop."""

    def __init__(
        self, *, directory: Path | str = DEFAULT_LOG_FILES_DIR, keys: LogKeyRing | None = None
    ) -> None:
        self._directory = Path(directory)
        self._keys = LogKeyRing() if keys is None else keys

    @property
    def directory(self) -> Path:
        return self._directory

    async def write(self, incident_id: UUID, records: list[dict[str, Any]]) -> str:
        return await asyncio.to_thread(self._write, incident_id, records)

    async def read(self, path: str, *, incident_id: UUID) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._read, Path(path), incident_id)

    async def key_id(self, path: str) -> str | None:
        """The id of the key the file is sealed under; None for a plain file."""
        return await asyncio.to_thread(_key_id, Path(path))

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
            text = json.dumps(records, ensure_ascii=False, separators=(",", ":"))
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(self._keys.seal(text, context=_context(incident_id)))
            os.replace(temporary, target)
        except BaseException:
            _unlink(Path(temporary))
            raise
        return str(target)

    def _read(self, path: Path, incident_id: UUID) -> list[dict[str, Any]]:
        text = path.read_text(encoding="utf-8")
        records = json.loads(self._keys.open(text, context=_context(incident_id)))
        if not isinstance(records, list):
            raise ValueError(f"{path} does not hold a list of log entries")
        return records


def _context(incident_id: UUID) -> str:
    return f"{incident_id}/logs_file"


def _key_id(path: Path) -> str | None:
    with path.open(encoding="utf-8") as source:
        return key_id_of(source.read(len(PREFIX) + 64))


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
