"""``NotificationOutbox`` on the SQLite file: the standalone monitor's notifications survive a
restart.

The same rules as ``adapters.postgres.outbox`` (whose docstring explains them). Every write is a
``BEGIN IMMEDIATE`` transaction, which holds the file's write lock from its first statement: a
claim's select-then-lease and an enqueue's next sequence are therefore exclusive against other
processes on the file, as ``FOR UPDATE SKIP LOCKED`` and the advisory locks make them against
other replicas.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from downtime_operator.adapters.postgres.outbox import error_text, outbox_row, unique_rows
from downtime_operator.adapters.postgres.rows import clean_text, to_json_text
from downtime_operator.adapters.sqlite import columns
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.services.admin_ports import StoreUnavailableError
from downtime_operator.services.outbox import NewNotification, OutboxRow, Outcome

T = TypeVar("T")

_COLUMNS = (
    "id, incident_id, channel, event, sequence, state, attempts, next_attempt_at, last_error,"
    " provider_id, payload, created_at, updated_at, sent_at"
)
_TIMESTAMPS = ("next_attempt_at", "created_at", "updated_at", "sent_at")

# One row at a time inside the write transaction: the max cannot move under us, and a repeat
# of a stored key inserts nothing (so takes no sequence). The WHERE is also what lets SQLite
# parse ON CONFLICT after INSERT ... SELECT.
_ENQUEUE_SQL = """
INSERT INTO downtime_notifications (id, incident_id, channel, event, sequence, next_attempt_at,
                                    payload, created_at, updated_at)
SELECT :id, :incident_id, :channel, :event, COALESCE(max(sequence), 0) + 1, :created_at,
       :payload, :created_at, :created_at
FROM downtime_notifications WHERE incident_id = :incident_id AND channel = :channel
ON CONFLICT (incident_id, event, channel) DO NOTHING
"""

_DUE_SQL = f"""
SELECT {_COLUMNS} FROM downtime_notifications n
WHERE n.state = 'pending' AND n.next_attempt_at <= :now
  AND (n.lease_until IS NULL OR n.lease_until <= :now)
  AND n.channel NOT IN (SELECT value FROM json_each(:skip))
  AND NOT EXISTS (
      SELECT 1 FROM downtime_notifications e
      WHERE e.incident_id = n.incident_id AND e.channel = n.channel
        AND e.sequence < n.sequence AND e.state = 'pending')
ORDER BY n.next_attempt_at, n.sequence, n.id
LIMIT :limit
"""

_LEASE_SQL = (
    "UPDATE downtime_notifications SET lease_owner = :owner, lease_until = :until,"
    " updated_at = :now WHERE id = :id"
)

# As in PostgreSQL (whose statement says why each column is set so), run once per outcome,
# all of a batch in one write transaction: the commit, not the statement, is what a row cost.
_RECORD_SQL = """
UPDATE downtime_notifications
SET state = :state, attempts = attempts + 1, updated_at = :at,
    lease_owner = NULL, lease_until = NULL,
    sent_at = CASE WHEN :state = 'sent' THEN :at ELSE sent_at END,
    provider_id = CASE WHEN :state = 'sent' THEN :provider_id ELSE provider_id END,
    next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at),
    last_error = COALESCE(:error, last_error)
WHERE id = :id AND state = 'pending' AND lease_owner = :owner
"""

_BY_CHANNEL_SQL = (
    "SELECT channel, count(*) AS n FROM downtime_notifications WHERE state = ? GROUP BY channel"
)


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """A file that stays locked or cannot be read is "unavailable", as a database is."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailableError(f"SQLite unavailable: {exc}") from exc


def _decoded(row: sqlite3.Row) -> OutboxRow:
    """A row of ``_COLUMNS``, ids and times decoded from their text, as the port's value."""
    values: dict[str, Any] = dict(zip(row.keys(), tuple(row), strict=True))
    values["id"] = UUID(values["id"])
    values["incident_id"] = UUID(values["incident_id"])
    for column in _TIMESTAMPS:
        values[column] = columns.parse_timestamp(values[column])
    return outbox_row(values)


class SqliteOutbox:
    """Implements ``NotificationOutbox``; shares the incident store's ``SqliteDatabase``."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with _store_errors():
            return await self._db.run(fn, self._db.conn)

    async def enqueue(self, rows: Sequence[NewNotification]) -> int:
        params = [
            {
                "id": str(uuid.uuid4()),
                "incident_id": str(row.incident_id),
                "channel": row.channel,
                "event": row.event,
                "payload": to_json_text(dict(row.payload)),
                "created_at": columns.timestamp(row.created_at, "created_at"),
            }
            for row in unique_rows(rows)
        ]

        def enqueue(conn: sqlite3.Connection) -> int:
            with self._db.write():
                return sum(conn.execute(_ENQUEUE_SQL, p).rowcount for p in params)

        return await self._run(enqueue) if params else 0

    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        skip_channels: Collection[str] = (),
    ) -> list[OutboxRow]:
        now_text = columns.timestamp(now, "now")
        until = columns.timestamp(now + lease, "lease")

        def claim(conn: sqlite3.Connection) -> list[OutboxRow]:
            with self._db.write():
                skip = json.dumps(list(skip_channels))
                due = conn.execute(
                    _DUE_SQL, {"now": now_text, "limit": limit, "skip": skip}
                ).fetchall()
                conn.executemany(
                    _LEASE_SQL,
                    [{"owner": owner, "until": until, "now": now_text, "id": r["id"]} for r in due],
                )
            # As selected, plus the lease's write time: what a read now would show.
            return [replace(_decoded(r), updated_at=now) for r in due]

        return await self._run(claim)

    async def record(self, outcomes: Sequence[Outcome], *, owner: str) -> set[UUID]:
        params = [
            {
                "id": str(o.id),
                "owner": owner,
                "state": o.state,
                "at": columns.timestamp(o.at, "at"),
                "provider_id": clean_text(o.provider_id),
                "next_attempt_at": (
                    None
                    if o.next_attempt_at is None
                    else columns.timestamp(o.next_attempt_at, "next_attempt_at")
                ),
                "error": None if o.error is None else error_text(o.error),
            }
            for o in outcomes
        ]

        def record(conn: sqlite3.Connection) -> set[UUID]:
            # In the given order: of two outcomes of one row, the second finds it released.
            with self._db.write():
                return {
                    o.id
                    for o, p in zip(outcomes, params, strict=True)
                    if conn.execute(_RECORD_SQL, p).rowcount
                }

        return await self._run(record) if params else set()

    async def release(self, *, owner: str) -> int:
        def release(conn: sqlite3.Connection) -> int:
            with self._db.write():
                return conn.execute(
                    "UPDATE downtime_notifications SET lease_owner = NULL, lease_until = NULL"
                    " WHERE state = 'pending' AND lease_owner = ?",
                    (owner,),
                ).rowcount

        return await self._run(release)

    async def pending_count(self) -> int:
        def count(conn: sqlite3.Connection) -> int:
            found = conn.execute(
                "SELECT count(*) FROM downtime_notifications WHERE state = 'pending'"
            ).fetchone()
            return int(found[0])

        return await self._run(count)

    async def pending_by_channel(self) -> dict[str, int]:
        return await self._by_channel("pending")

    async def failed_by_channel(self) -> dict[str, int]:
        return await self._by_channel("failed")

    async def _by_channel(self, state: str) -> dict[str, int]:
        def by_channel(conn: sqlite3.Connection) -> dict[str, int]:
            found = conn.execute(_BY_CHANNEL_SQL, (state,)).fetchall()
            return {r["channel"]: int(r["n"]) for r in found}

        return await self._run(by_channel)

    async def for_incident(self, incident_id: UUID) -> list[OutboxRow]:
        def for_incident(conn: sqlite3.Connection) -> list[OutboxRow]:
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM downtime_notifications WHERE incident_id = ?"
                " ORDER BY channel, sequence",
                (str(incident_id),),
            ).fetchall()
            return [_decoded(r) for r in found]

        return await self._run(for_incident)

    async def last_delivery(self, channel: str) -> OutboxRow | None:
        def last(conn: sqlite3.Connection) -> OutboxRow | None:
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM downtime_notifications"
                " WHERE channel = ? AND state <> 'pending'"
                " ORDER BY updated_at DESC, id DESC LIMIT 1",
                (channel,),
            ).fetchone()
            return None if found is None else _decoded(found)

        return await self._run(last)
