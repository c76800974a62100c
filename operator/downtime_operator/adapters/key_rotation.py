"""``rotate-keys``: every sealed value and captured-log file re-sealed under the active key.

Rows are read in pages by incident id, and each row that is not wholly under the active key
(plain rows too: written before keys existed) is written back re-sealed with a compare-and-set:
only if its sealed columns still hold what was read. So it is safe while the operator runs
(a capture recorded meanwhile is never overwritten; that row is left for the next run, counted
as changed), resumable after an interruption (what is done is under the active key, and is
skipped), and never seals twice (a value is opened before it is sealed again).

A captured-log file is re-sealed into a new file; the row is switched to it with the same
compare-and-set, then the old file is removed (the new one, if the row changed meanwhile).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.adapters.log_files import LocalLogFiles
from downtime_operator.adapters.sealed_columns import reseal_stored, stored_key_ids
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.services.ports import SealedDataError

SEALED = ("response_body", "logs_captured", "log_analysis", "server_info")
"""The sealed columns, as ``sealed_columns`` defines them; the file is ``logs_file_path``."""
PLAIN = "plain"
"""How ``--dry-run`` names values stored without a key."""


@dataclass(frozen=True, kw_only=True)
class SealedRow:
    incident_id: UUID
    values: Mapping[str, str | None]
    """The stored form of each ``SEALED`` column (JSON as text)."""
    file_path: str | None


class SealedRows(Protocol):
    """A store's sealed columns, for rotation."""

    async def count(self) -> int: ...

    async def page(self, *, after: UUID | None, limit: int) -> list[SealedRow]:
        """Rows in incident id order, after ``after``."""
        ...

    async def replace(
        self, row: SealedRow, values: Mapping[str, str | None], file_path: str | None
    ) -> bool:
        """Write ``values`` (some ``SEALED`` columns) and the file path, only if the row's
        sealed columns and file path are still those of ``row``; False when they are not."""
        ...

    async def finish(self) -> None:
        """After a run: nothing the rows held before may stay readable beside them."""
        ...


@dataclass(kw_only=True)
class RotationReport:
    rows: int = 0
    """Rows looked at."""
    resealed: int = 0
    """Rows written back under the active key."""
    files: int = 0
    """Captured-log files re-sealed."""
    changed: int = 0
    """Rows changed while being rotated: left for the next run."""
    missing_files: int = 0
    unreadable: list[str] = field(default_factory=list)
    """Rows left as they are because a value cannot be opened: its key is not in the ring, or
    it fails authentication (each a line naming the incident and the key id)."""
    interrupted: bool = False
    keys: Counter[str] = field(default_factory=Counter)
    """Dry run: rows per key id (``plain`` for values stored without a key)."""


Progress = Callable[[RotationReport, int], None]


class KeyRotation:
    def __init__(self, rows: SealedRows, files: LocalLogFiles, keys: LogKeyRing) -> None:
        self._rows = rows
        self._files = files
        self._keys = keys

    async def count_keys(self, *, batch: int = 200) -> RotationReport:
        """How many rows hold a value (or file) under each key id, ``plain`` for none."""
        report = RotationReport()
        async for row in self._all(batch):
            report.rows += 1
            ids = self._key_ids(row)
            if row.file_path is not None:
                try:
                    ids.add(await self._files.key_id(row.file_path))
                except FileNotFoundError:
                    report.missing_files += 1
            for key_id in ids:
                report.keys[PLAIN if key_id is None else key_id] += 1
        return report

    async def rotate(
        self,
        *,
        batch: int = 200,
        stop: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
    ) -> RotationReport:
        """Re-seal every row and file under the active key; ``stop`` is asked between rows."""
        if not self._keys:
            raise ValueError("no active key: set LOG_ENCRYPTION_KEYS or LOG_ENCRYPTION_KEYS_FILE")
        report = RotationReport()
        total = await self._rows.count()
        async for row in self._all(batch):
            if stop():
                report.interrupted = True
                break
            report.rows += 1
            try:
                await self._rotate_row(row, report)
            except SealedDataError as exc:
                report.unreadable.append(f"{row.incident_id}: {exc}")
            if progress is not None:
                progress(report, total)
        await self._rows.finish()
        return report

    async def _all(self, batch: int) -> AsyncIterator[SealedRow]:
        after: UUID | None = None
        while True:
            page = await self._rows.page(after=after, limit=batch)
            for row in page:
                yield row
            if len(page) < batch:
                return
            after = page[-1].incident_id

    def _key_ids(self, row: SealedRow) -> set[str | None]:
        return {
            key_id
            for column, stored in row.values.items()
            for key_id in stored_key_ids(column, stored)
        }

    async def _rotate_row(self, row: SealedRow, report: RotationReport) -> None:
        values: dict[str, str | None] = {}
        for column, stored in row.values.items():
            resealed = reseal_stored(self._keys, row.incident_id, column, stored)
            if resealed is not None:
                values[column] = resealed
        new_file = await self._reseal_file(row, report)
        if not values and new_file is None:
            return
        if await self._rows.replace(row, values, new_file or row.file_path):
            report.resealed += 1
            if new_file is not None and row.file_path is not None:
                report.files += 1
                await self._files.remove(row.file_path)
        else:
            report.changed += 1
            if new_file is not None:
                await self._files.remove(new_file)

    async def _reseal_file(self, row: SealedRow, report: RotationReport) -> str | None:
        """The path of the file re-sealed under the active key; None when it already is."""
        path = row.file_path
        if path is None:
            return None
        try:
            if await self._files.key_id(path) == self._keys.active_id:
                return None
            records = await self._files.read(path, incident_id=row.incident_id)
        except FileNotFoundError:
            report.missing_files += 1
            return None
        return await self._files.write(row.incident_id, records)


# -- PostgreSQL ----------------------------------------------------------------------------------

_PG_SELECT = (
    "SELECT incident_id, response_body, logs_captured::text AS logs_captured,"
    " log_analysis::text AS log_analysis, server_info::text AS server_info, logs_file_path"
    " FROM downtime_incidents"
)


class PostgresSealedRows:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def count(self) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM downtime_incidents"))

    async def page(self, *, after: UUID | None, limit: int) -> list[SealedRow]:
        if after is None:
            found = await self._pool.fetch(f"{_PG_SELECT} ORDER BY incident_id LIMIT $1", limit)
        else:
            found = await self._pool.fetch(
                f"{_PG_SELECT} WHERE incident_id > $1 ORDER BY incident_id LIMIT $2", after, limit
            )
        return [_row(r, r["incident_id"]) for r in found]

    async def replace(
        self, row: SealedRow, values: Mapping[str, str | None], file_path: str | None
    ) -> bool:
        params: list[Any] = [row.incident_id, row.file_path, file_path]
        assignments = ["logs_file_path = $3"]
        for column, value in values.items():
            params.append(value)
            cast = "" if column == "response_body" else "::text::jsonb"
            assignments.append(f"{column} = ${len(params)}{cast}")
        guards = ["logs_file_path IS NOT DISTINCT FROM $2"]
        for column in SEALED:
            params.append(row.values[column])
            text = column if column == "response_body" else f"{column}::text"
            guards.append(f"{text} IS NOT DISTINCT FROM ${len(params)}")
        sql = (
            f"UPDATE downtime_incidents SET {', '.join(assignments)}"
            f" WHERE incident_id = $1 AND {' AND '.join(guards)}"
        )
        return bool(await self._pool.execute(sql, *params) == "UPDATE 1")

    async def finish(self) -> None:
        """PostgreSQL's dead row versions are vacuumed in time (``VACUUM`` to hasten it)."""


# -- SQLite --------------------------------------------------------------------------------------

_SQLITE_SELECT = (
    "SELECT incident_id, response_body, logs_captured, log_analysis, server_info, logs_file_path"
    " FROM downtime_incidents"
)


class SqliteSealedRows:
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def count(self) -> int:
        def count() -> int:
            return int(
                self._db.conn.execute("SELECT count(*) FROM downtime_incidents").fetchone()[0]
            )

        return await self._db.run(count)

    async def page(self, *, after: UUID | None, limit: int) -> list[SealedRow]:
        def page() -> list[sqlite3.Row]:
            if after is None:
                sql, params = f"{_SQLITE_SELECT} ORDER BY incident_id LIMIT ?", (limit,)
            else:
                sql = f"{_SQLITE_SELECT} WHERE incident_id > ? ORDER BY incident_id LIMIT ?"
                params = (str(after), limit)  # type: ignore[assignment]
            return list(self._db.conn.execute(sql, params))

        return [_row(r, UUID(r["incident_id"])) for r in await self._db.run(page)]

    async def replace(
        self, row: SealedRow, values: Mapping[str, str | None], file_path: str | None
    ) -> bool:
        assignments = ", ".join(
            ["logs_file_path = :new_file", *(f"{c} = :new_{c}" for c in values)]
        )
        guards = " AND ".join(
            ["logs_file_path IS :old_file", *(f"{c} IS :old_{c}" for c in SEALED)]
        )
        params: dict[str, Any] = {
            "id": str(row.incident_id),
            "new_file": file_path,
            "old_file": row.file_path,
            **{f"new_{c}": v for c, v in values.items()},
            **{f"old_{c}": row.values[c] for c in SEALED},
        }
        sql = f"UPDATE downtime_incidents SET {assignments} WHERE incident_id = :id AND {guards}"

        def replace() -> bool:
            # What the row held before is overwritten, not left in free pages of the file.
            self._db.conn.execute("PRAGMA secure_delete = ON")
            with self._db.write() as conn:
                return conn.execute(sql, params).rowcount == 1

        return await self._db.run(replace)

    async def finish(self) -> None:
        """Fold the write-ahead log into the file and empty it: no old page stays beside it."""

        def checkpoint() -> None:
            self._db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        await self._db.run(checkpoint)


def _row(found: Mapping[str, Any] | sqlite3.Row, incident_id: UUID) -> SealedRow:
    return SealedRow(
        incident_id=incident_id,
        values={column: found[column] for column in SEALED},
        file_path=found["logs_file_path"],
    )
