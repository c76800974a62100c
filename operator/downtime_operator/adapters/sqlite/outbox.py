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
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from downtime_operator.adapters.postgres.outbox import (
    error_text,
    first_outcomes,
    outbox_row,
    unique_rows,
)
from downtime_operator.adapters.postgres.rows import clean_text, to_json_text
from downtime_operator.adapters.sqlite import columns
from downtime_operator.adapters.sqlite.database import SqliteDatabase
from downtime_operator.services.admin_ports import StoreUnavailableError
from downtime_operator.services.outbox import (
    NewNotification,
    OutboxRow,
    Outcome,
    notification_state,
)

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

_ROW_JSON = (
    "json_array(id, incident_id, channel, event, sequence, state, attempts, next_attempt_at,"
    " last_error, provider_id, json(payload), created_at, sent_at)"
)
"""A claimed row as ``_claimed`` reads it: the payload as JSON, not as a string of it."""

# The due rows as one row of two JSON documents: their ids, for the lease, and the rows. One
# row, because sqlite3 releases the GIL around every step of a statement and must take it back
# for the next: against a busy event loop each take waits, so a claim fetched row by row spent
# more time waiting for the GIL, and switching it, than in SQLite. An aggregate's order is not
# guaranteed, so ``_claimed`` sorts.
_DUE_SQL = f"""
SELECT json_group_array(id) AS ids, json_group_array({_ROW_JSON}) AS rows
FROM (
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
)
"""

_LEASE_SQL = (
    "UPDATE downtime_notifications SET lease_owner = :owner, lease_until = :until,"
    " updated_at = :now WHERE id IN (SELECT value FROM json_each(:ids))"
)

# A batch of outcomes is one JSON array of [id, state, at, provider_id, next_attempt_at, error],
# read by one statement that finds the rows still held and one that records them, all in one
# write transaction (one statement per row waited for the GIL per row, as a claim did).
# "+state" keeps the planner on the id's index: by the claim index it would read every pending
# row. The SET is PostgreSQL's (whose statement says why each column is set so).
_OUTCOMES = """
SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS state,
       json_extract(value, '$[2]') AS at, json_extract(value, '$[3]') AS provider_id,
       json_extract(value, '$[4]') AS next_attempt_at, json_extract(value, '$[5]') AS error
FROM json_each(:outcomes)
"""

_HELD_SQL = """
SELECT json_group_array(id) FROM downtime_notifications
WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:outcomes))
  AND +state = 'pending' AND lease_owner = :owner
"""

_RECORD_SQL = f"""
UPDATE downtime_notifications AS n
SET state = o.state, attempts = n.attempts + 1, updated_at = o.at,
    lease_owner = NULL, lease_until = NULL,
    sent_at = CASE WHEN o.state = 'sent' THEN o.at ELSE n.sent_at END,
    provider_id = CASE WHEN o.state = 'sent' THEN o.provider_id ELSE n.provider_id END,
    next_attempt_at = COALESCE(o.next_attempt_at, n.next_attempt_at),
    last_error = COALESCE(o.error, n.last_error)
FROM ({_OUTCOMES}) AS o
WHERE n.id = o.id AND +n.state = 'pending' AND n.lease_owner = :owner
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


def _claimed(document: str, *, leased_at: datetime) -> list[OutboxRow]:
    """The rows of ``_DUE_SQL``'s document in claim order, as a read after the lease shows
    them (``updated_at`` is the lease's write time)."""
    found: list[list[Any]] = json.loads(document)
    # The order of ``_DUE_SQL``: its timestamps and ids are fixed-width text.
    found.sort(key=lambda values: (values[7], values[4], values[0]))

    return [
        OutboxRow(
            id=UUID(row_id),
            incident_id=UUID(incident_id),
            channel=channel,
            event=event,
            sequence=sequence,
            state=notification_state(state),
            attempts=attempts,
            next_attempt_at=datetime.fromisoformat(next_attempt_at),
            last_error=last_error,
            provider_id=provider_id,
            payload=payload,
            created_at=datetime.fromisoformat(created_at),
            updated_at=leased_at,
            sent_at=columns.parse_timestamp(sent_at),
        )
        for (
            row_id,
            incident_id,
            channel,
            event,
            sequence,
            state,
            attempts,
            next_attempt_at,
            last_error,
            provider_id,
            payload,
            created_at,
            sent_at,
        ) in found
    ]


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
        params = {"now": now_text, "limit": limit, "skip": json.dumps(list(skip_channels))}
        leasing = {
            "owner": owner,
            "until": columns.timestamp(now + lease, "lease"),
            "now": now_text,
        }

        def claim(conn: sqlite3.Connection) -> str:
            with self._db.write():
                ids, rows = conn.execute(_DUE_SQL, params).fetchone()
                conn.execute(_LEASE_SQL, {**leasing, "ids": ids})
            return str(rows)

        # Decoded here, on the event loop: on the connection's thread, a long stretch of
        # Python would hold the GIL against the loop, and then wait for it back.
        return _claimed(await self._run(claim), leased_at=now)

    async def record(self, outcomes: Sequence[Outcome], *, owner: str) -> set[UUID]:
        # Of two outcomes of one row, the first is recorded: one UPDATE applies one per row.
        batch = first_outcomes(outcomes)
        if not batch:
            return set()
        document = json.dumps(
            [
                [
                    str(o.id),
                    o.state,
                    columns.timestamp(o.at, "at"),
                    clean_text(o.provider_id),
                    None
                    if o.next_attempt_at is None
                    else columns.timestamp(o.next_attempt_at, "next_attempt_at"),
                    None if o.error is None else error_text(o.error),
                ]
                for o in batch
            ],
            ensure_ascii=False,
        )
        params = {"outcomes": document, "owner": owner}

        def record(conn: sqlite3.Connection) -> str:
            with self._db.write():
                (held,) = conn.execute(_HELD_SQL, params).fetchone()
                conn.execute(_RECORD_SQL, params)
            return str(held)

        return {UUID(text) for text in json.loads(await self._run(record))}

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
