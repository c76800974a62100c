"""One SQLite file, one connection, one worker thread: what every SQLite adapter runs on.

Why the standard library's ``sqlite3`` on one dedicated thread rather than aiosqlite: sqlite3
blocks, so every call is handed to a single worker thread that owns the connection. One thread
also serialises this process's writes, which SQLite needs anyway, and it costs no dependency
(aiosqlite does exactly this, plus a queue we do not need). Writes take ``BEGIN IMMEDIATE``, so
a read-then-write (resolve, claim, cleanup) is atomic against other processes on the same file.
WAL journaling lets readers (``sqlite3`` in a shell, the cleanup command) work while the monitor
writes; ``synchronous=FULL`` because this file is the system of record.

The incident store, the capture store, the admin queries and the audit log of one process share
one ``SqliteDatabase``, so they see each other's writes at once and never wait on each other's
locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from downtime_operator.adapters.sqlite.schema import MIN_SQLITE, apply_schema

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another process's write lock before failing (then retried)."""


class SqliteDatabase:
    """Open with ``await SqliteDatabase.open(path)``; the file is created and migrated."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._executor = executor
        self.conn = conn
        """Use only inside functions given to ``run``: it belongs to the worker thread."""

    @classmethod
    async def open(cls, path: Path | str) -> SqliteDatabase:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn)

    async def close(self) -> None:
        await self.run(self.conn.close)
        self._executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds the file's write lock from its first statement."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise


def _connect(path: str) -> sqlite3.Connection:
    """Open (creating the file if needed) and migrate; runs on the worker thread."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} is too old: the SQLite store needs"
            f" {'.'.join(map(str, MIN_SQLITE))} or newer (use PostgreSQL, or a newer Python build)"
        )
    # isolation_level=None: we issue BEGIN/COMMIT ourselves (see ``write``).
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        apply_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn
