"""``NotificationOutbox`` in memory, held to the SQL stores' rules by ``tests/contract``.

For unit tests of the delivery service: the same unique key, sequences, head-of-queue claims,
leases and value rules (JSON payloads, bounded errors) as the tables, with no database.
``rows`` is the table (a test may look at it); ``reopen`` is another process on the same data;
``available = False`` makes every call fail as a database that is down does.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from downtime_operator.adapters.postgres.outbox import error_text
from downtime_operator.adapters.postgres.rows import to_json_text
from downtime_operator.services.admin_ports import StoreUnavailableError
from downtime_operator.services.outbox import NewNotification, OutboxRow, Outcome


@dataclass
class _Stored:
    """A row and its lease: the port never shows the lease, the tables keep it in columns."""

    row: OutboxRow
    lease_owner: str | None = None
    lease_until: datetime | None = None


class MemoryOutbox:
    def __init__(self) -> None:
        self.rows: dict[UUID, _Stored] = {}
        self.available = True

    def reopen(self) -> MemoryOutbox:
        """Another instance over the same rows, like a second connection to one database."""
        other = MemoryOutbox()
        other.rows = self.rows
        return other

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailableError("outbox down")

    async def enqueue(self, rows: Sequence[NewNotification]) -> int:
        self._check()
        added = 0
        for new in rows:
            queue = [
                s.row
                for s in self.rows.values()
                if (s.row.incident_id, s.row.channel) == (new.incident_id, new.channel)
            ]
            if any(r.event == new.event for r in queue):
                continue
            row = OutboxRow(
                id=uuid.uuid4(),
                incident_id=new.incident_id,
                channel=new.channel,
                event=new.event,
                sequence=max((r.sequence for r in queue), default=0) + 1,
                state="pending",
                attempts=0,
                next_attempt_at=new.created_at,
                last_error=None,
                provider_id=None,
                # Through JSON, as the tables store it: a test sees what a store would return.
                payload=json.loads(to_json_text(dict(new.payload)) or "{}"),
                created_at=new.created_at,
                updated_at=new.created_at,
                sent_at=None,
            )
            self.rows[row.id] = _Stored(row)
            added += 1
        return added

    def _is_head(self, row: OutboxRow) -> bool:
        return not any(
            s.row.state == "pending" and s.row.sequence < row.sequence
            for s in self.rows.values()
            if (s.row.incident_id, s.row.channel) == (row.incident_id, row.channel)
        )

    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        skip_channels: Collection[str] = (),
    ) -> list[OutboxRow]:
        self._check()
        due = sorted(
            (
                s
                for s in self.rows.values()
                if s.row.state == "pending"
                and s.row.next_attempt_at <= now
                and (s.lease_until is None or s.lease_until <= now)
                and self._is_head(s.row)
                and s.row.channel not in skip_channels
            ),
            key=lambda s: (s.row.next_attempt_at, s.row.sequence, s.row.id),
        )[:limit]
        for stored in due:
            stored.lease_owner, stored.lease_until = owner, now + lease
            stored.row = replace(stored.row, updated_at=now)
        return [copy.deepcopy(s.row) for s in due]

    async def record(self, outcomes: Sequence[Outcome], *, owner: str) -> set[UUID]:
        self._check()
        return {o.id for o in outcomes if self._finish(o, owner=owner)}

    def _finish(self, outcome: Outcome, *, owner: str) -> bool:
        """Record an attempt's outcome and release the lease, if ``owner`` still holds it."""
        stored = self.rows.get(outcome.id)
        if stored is None or stored.row.state != "pending" or stored.lease_owner != owner:
            return False
        stored.lease_owner = stored.lease_until = None
        row = stored.row
        sent = outcome.state == "sent"
        stored.row = replace(
            row,
            state=outcome.state,
            attempts=row.attempts + 1,
            updated_at=outcome.at,
            sent_at=outcome.at if sent else row.sent_at,
            provider_id=outcome.provider_id if sent else row.provider_id,
            next_attempt_at=outcome.next_attempt_at or row.next_attempt_at,
            last_error=row.last_error if outcome.error is None else error_text(outcome.error),
        )
        return True

    async def release(self, *, owner: str) -> int:
        self._check()
        held = [
            s for s in self.rows.values() if s.row.state == "pending" and s.lease_owner == owner
        ]
        for stored in held:
            stored.lease_owner = stored.lease_until = None
        return len(held)

    async def pending_count(self) -> int:
        self._check()
        return sum(s.row.state == "pending" for s in self.rows.values())

    async def pending_by_channel(self) -> dict[str, int]:
        return self._by_channel("pending")

    async def failed_by_channel(self) -> dict[str, int]:
        return self._by_channel("failed")

    def _by_channel(self, state: str) -> dict[str, int]:
        self._check()
        counts: dict[str, int] = {}
        for stored in self.rows.values():
            if stored.row.state == state:
                counts[stored.row.channel] = counts.get(stored.row.channel, 0) + 1
        return counts

    async def for_incident(self, incident_id: UUID) -> list[OutboxRow]:
        self._check()
        found = [
            copy.deepcopy(s.row) for s in self.rows.values() if s.row.incident_id == incident_id
        ]
        return sorted(found, key=lambda r: (r.channel, r.sequence))

    async def last_delivery(self, channel: str) -> OutboxRow | None:
        self._check()
        done = [
            s.row
            for s in self.rows.values()
            if s.row.channel == channel and s.row.state != "pending"
        ]
        latest = max(done, key=lambda r: (r.updated_at, r.id), default=None)
        return copy.deepcopy(latest)
