"""``NotificationOutbox`` on PostgreSQL: the ``downtime_notifications`` table (migration 0005).

Why each write is one statement or one short transaction: replicas share the table, so a claim
locks the rows it takes with ``FOR UPDATE SKIP LOCKED`` (another replica's claim skips them
instead of waiting, and re-checks a row's lease if it was taken meanwhile), and an enqueue takes
a transaction-scoped advisory lock per (incident, channel) so that two writers never hand out
the same sequence. Times come from the caller (``now``), never from ``now()``, so a service
under a test clock sees the rows it expects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from downtime_operator.adapters.postgres.queries import store_errors
from downtime_operator.adapters.postgres.rows import clean_text, require_aware, to_json_text
from downtime_operator.services.outbox import (
    NewNotification,
    OutboxRow,
    Outcome,
    notification_state,
)

ERROR_MAX_CHARS = 2000
"""A provider's error page is kept as far as it explains the failure, not whole."""

COLUMNS = (
    "id, incident_id, channel, event, sequence, state, attempts, next_attempt_at, last_error,"
    " provider_id, payload::text AS payload, created_at, updated_at, sent_at"
)
"""What an ``OutboxRow`` needs; JSONB read as text and decoded here, as ``rows`` does."""

# Locks in key order, so two enqueues of overlapping pairs cannot deadlock. The key is a hash:
# a collision only makes two unrelated pairs wait for each other.
_LOCK_SQL = """
SELECT pg_advisory_xact_lock(hashtext('downtime_notifications'), k)
FROM (SELECT DISTINCT hashtext(i::text || '/' || c) AS k
      FROM unnest($1::uuid[], $2::text[]) AS t(i, c) ORDER BY k) AS keys
"""

# The pairs are locked, so max(sequence) cannot move under us; row_number numbers a batch's
# new rows of one pair in the order given. Duplicates within a batch are removed beforehand.
_ENQUEUE_SQL = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[]) WITH ORDINALITY
        AS t(id, incident_id, channel, event, payload, created_at, ord)
), fresh AS (
    SELECT input.* FROM input
    WHERE NOT EXISTS (
        SELECT 1 FROM downtime_notifications n
        WHERE n.incident_id = input.incident_id AND n.event = input.event
          AND n.channel = input.channel)
)
INSERT INTO downtime_notifications (id, incident_id, channel, event, sequence, next_attempt_at,
                                    payload, created_at, updated_at)
SELECT id, incident_id, channel, event,
       COALESCE((SELECT max(n.sequence) FROM downtime_notifications n
                 WHERE n.incident_id = fresh.incident_id AND n.channel = fresh.channel), 0)
       + row_number() OVER (PARTITION BY incident_id, channel ORDER BY ord),
       created_at, payload::jsonb, created_at, created_at
FROM fresh
ON CONFLICT (incident_id, event, channel) DO NOTHING
RETURNING id
"""

# The locking query is a CTE (always materialized, run once) rather than IN (...): LIMIT counts
# only the rows it could lock, and a row another claim leased meanwhile fails the lease re-check.
_CLAIM_SQL = f"""
WITH due AS (
    SELECT n.id FROM downtime_notifications n
    WHERE n.state = 'pending' AND n.next_attempt_at <= $2
      AND (n.lease_until IS NULL OR n.lease_until <= $2)
      AND n.channel <> ALL($5::text[])
      AND NOT EXISTS (
          SELECT 1 FROM downtime_notifications e
          WHERE e.incident_id = n.incident_id AND e.channel = n.channel
            AND e.sequence < n.sequence AND e.state = 'pending')
    ORDER BY n.next_attempt_at, n.sequence, n.id
    LIMIT $4
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE downtime_notifications t
SET lease_owner = $1, lease_until = $3, updated_at = $2
FROM due WHERE t.id = due.id
RETURNING {", ".join(f"t.{c}" for c in COLUMNS.split(", "))}
"""

# One statement for a batch of outcomes of any kind. A row is the owner's while its lease
# names it: an expired lease nobody took over still is. A retry stays pending with its next
# time; only a delivery sets sent_at and provider_id; an error is kept until a later one.
_RECORD_SQL = """
UPDATE downtime_notifications n
SET state = o.state, attempts = n.attempts + 1, updated_at = o.at,
    lease_owner = NULL, lease_until = NULL,
    sent_at = CASE WHEN o.state = 'sent' THEN o.at ELSE n.sent_at END,
    provider_id = CASE WHEN o.state = 'sent' THEN o.provider_id ELSE n.provider_id END,
    next_attempt_at = COALESCE(o.next_attempt_at, n.next_attempt_at),
    last_error = COALESCE(o.error, n.last_error)
FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::timestamptz[],
            $7::text[]) AS o(id, state, at, provider_id, next_attempt_at, error)
WHERE n.id = o.id AND n.state = 'pending' AND n.lease_owner = $1
RETURNING n.id
"""

_BY_CHANNEL_SQL = (
    "SELECT channel, count(*) AS n FROM downtime_notifications WHERE state = $1 GROUP BY channel"
)

# COLLATE "C": code point order, as SQLite and Python sort, whatever the database's locale.
_FOR_INCIDENT_SQL = f"""
SELECT {COLUMNS} FROM downtime_notifications
WHERE incident_id = $1
ORDER BY channel COLLATE "C", sequence
"""

# "state <> 'pending'" verbatim: the predicate of the partial index that answers this.
_LAST_DELIVERY_SQL = f"""
SELECT {COLUMNS} FROM downtime_notifications
WHERE channel = $1 AND state <> 'pending'
ORDER BY updated_at DESC, id DESC
LIMIT 1
"""


def unique_rows(rows: Sequence[NewNotification]) -> list[NewNotification]:
    """The first of each (incident_id, event, channel) in a batch: a repeat is a no-op."""
    seen: dict[tuple[UUID, str, str], NewNotification] = {}
    for row in rows:
        seen.setdefault((row.incident_id, row.event, row.channel), row)
    return list(seen.values())


def first_outcomes(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The first outcome of each row in a batch: a second is refused, as it would be if
    recorded after the first (one UPDATE cannot apply two changes to one row)."""
    seen: dict[UUID, Outcome] = {}
    for outcome in outcomes:
        seen.setdefault(outcome.id, outcome)
    return list(seen.values())


def error_text(error: str) -> str:
    """NUL-free (as every text column here) and bounded."""
    return (clean_text(error) or "")[:ERROR_MAX_CHARS]


def _aware_or_none(value: datetime | None, what: str) -> datetime | None:
    return None if value is None else require_aware(value, what)


def outbox_row(row: Mapping[str, Any]) -> OutboxRow:
    """A row of ``COLUMNS`` (timestamps and ids already decoded) as the port's value."""
    return OutboxRow(
        id=row["id"],
        incident_id=row["incident_id"],
        channel=row["channel"],
        event=row["event"],
        sequence=row["sequence"],
        state=notification_state(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        provider_id=row["provider_id"],
        payload=json.loads(row["payload"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sent_at=row["sent_at"],
    )


class PostgresOutbox:
    """Implements ``NotificationOutbox`` over an asyncpg pool shared with the incident store."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def enqueue(self, rows: Sequence[NewNotification]) -> int:
        batch = unique_rows(rows)
        if not batch:
            return 0
        columns = (
            [uuid.uuid4() for _ in batch],
            [r.incident_id for r in batch],
            [r.channel for r in batch],
            [r.event for r in batch],
            [to_json_text(dict(r.payload)) for r in batch],
            [require_aware(r.created_at, "created_at") for r in batch],
        )
        with store_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOCK_SQL, columns[1], columns[2])
                inserted = await conn.fetch(_ENQUEUE_SQL, *columns)
        return len(inserted)

    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        skip_channels: Collection[str] = (),
    ) -> list[OutboxRow]:
        now = require_aware(now, "now")
        with store_errors():
            found = await self._pool.fetch(
                _CLAIM_SQL, owner, now, now + lease, limit, list(skip_channels)
            )
        # RETURNING comes in no particular order.
        claimed = [outbox_row(r) for r in found]
        return sorted(claimed, key=lambda r: (r.next_attempt_at, r.sequence, r.id))

    async def record(self, outcomes: Sequence[Outcome], *, owner: str) -> set[UUID]:
        batch = first_outcomes(outcomes)
        if not batch:
            return set()
        columns = (
            [o.id for o in batch],
            [o.state for o in batch],
            [require_aware(o.at, "at") for o in batch],
            [clean_text(o.provider_id) for o in batch],
            [_aware_or_none(o.next_attempt_at, "next_attempt_at") for o in batch],
            [None if o.error is None else error_text(o.error) for o in batch],
        )
        with store_errors():
            found = await self._pool.fetch(_RECORD_SQL, owner, *columns)
        return {r["id"] for r in found}

    async def release(self, *, owner: str) -> int:
        with store_errors():
            status = await self._pool.execute(
                "UPDATE downtime_notifications SET lease_owner = NULL, lease_until = NULL"
                " WHERE state = 'pending' AND lease_owner = $1",
                owner,
            )
        return int(status.split()[-1])

    async def pending_count(self) -> int:
        with store_errors():
            count = await self._pool.fetchval(
                "SELECT count(*) FROM downtime_notifications WHERE state = 'pending'"
            )
        return int(count)

    async def pending_by_channel(self) -> dict[str, int]:
        return await self._by_channel("pending")

    async def failed_by_channel(self) -> dict[str, int]:
        return await self._by_channel("failed")

    async def _by_channel(self, state: str) -> dict[str, int]:
        with store_errors():
            found = await self._pool.fetch(_BY_CHANNEL_SQL, state)
        return {r["channel"]: int(r["n"]) for r in found}

    async def for_incident(self, incident_id: UUID) -> list[OutboxRow]:
        with store_errors():
            found = await self._pool.fetch(_FOR_INCIDENT_SQL, incident_id)
        return [outbox_row(r) for r in found]

    async def last_delivery(self, channel: str) -> OutboxRow | None:
        with store_errors():
            found = await self._pool.fetchrow(_LAST_DELIVERY_SQL, channel)
        return None if found is None else outbox_row(found)
