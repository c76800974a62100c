"""The notification outbox: the durable queue between an incident change and its messages.

Why an outbox rather than sending from the pipeline: a message must survive a crash between the
incident change and its delivery (the row is written with the change, and sent later by whoever
holds the lease), must go out once per (incident, event, channel) however often the pipeline
retries its write (a unique key), and must go out in order per incident and channel (a sequence,
and claims that only hand out the head of each queue). Both stores implement it, and the unit
tests' fake keeps the same rules (``tests/contract/test_outbox_contract.py``).

Every method may raise ``StoreUnavailableError`` (``admin_ports``) when the store cannot be
reached; a caller retries later, nothing was half-done.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import UUID

NotificationState = Literal["pending", "sent", "failed"]
"""``pending`` until delivered (``sent``) or given up (``failed``); the last two are final."""

_STATES: dict[str, NotificationState] = {"pending": "pending", "sent": "sent", "failed": "failed"}


def notification_state(value: str) -> NotificationState:
    """A stored state as the typed literal; anything else is a corrupt row, not a new state."""
    try:
        return _STATES[value]
    except KeyError:
        raise ValueError(f"not a notification state: {value!r}") from None


@dataclass(frozen=True, kw_only=True)
class NewNotification:
    """One message to send, as the pipeline asks for it."""

    incident_id: UUID
    channel: str
    """``namespace/name`` of a NotificationChannel, or ``env:<type>`` in standalone mode."""
    event: str
    """``opened``, ``escalated``, ``acknowledged``, ``resolved``, ``logsCaptured``,
    ``reminder:<n>`` or ``test:<uuid>``: with the incident and channel, the row's identity."""
    payload: Mapping[str, Any]
    """A JSON-able snapshot of the incident at the change; the message is rendered from it at
    delivery, so a later edit of the incident does not change what this event says."""
    created_at: datetime
    """Aware; also the first attempt's due time."""


@dataclass(frozen=True, kw_only=True)
class OutboxRow:
    """One stored notification and its delivery state."""

    id: UUID
    """Fresh per row; the idempotency key of providers that take one (Resend, webhooks)."""
    incident_id: UUID
    channel: str
    event: str
    sequence: int
    """1, 2, ... per (incident, channel), in enqueue order: the delivery order."""
    state: NotificationState
    attempts: int
    """Delivery attempts whose outcome was recorded (each ``mark_*`` counts one)."""
    next_attempt_at: datetime
    last_error: str | None
    provider_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class NotificationOutbox(Protocol):
    """Rows are claimed under a lease: a replica that dies mid-delivery loses its rows to the
    next claim after ``lease``, and its late ``mark_*`` calls are refused (they return False),
    so only the current owner's outcome is recorded."""

    async def enqueue(self, rows: Sequence[NewNotification]) -> int:
        """Store the rows; return how many were new.

        A row whose (incident_id, event, channel) is already stored is skipped, so repeating an
        enqueue after a failure or a restart sends nothing twice. Each new row gets the next
        sequence of its (incident_id, channel) in the order given. The incident's row need not
        exist yet (no foreign key): the pipeline's sinks may run in any order.
        """
        ...

    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        skip_channels: Collection[str] = (),
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows to ``owner`` until ``now + lease``; return them.

        Due: pending, ``next_attempt_at <= now``, not leased or its lease expired, and the head
        of its (incident_id, channel) queue: no row of a lower sequence is still pending, so an
        event never goes out before the ones enqueued ahead of it were sent or given up (and
        while the head waits for a retry, the rest of its queue waits too). Two concurrent
        claims never return the same row. Ordered by ``next_attempt_at``, then ``sequence``.
        Rows of ``skip_channels`` are left alone: a slow channel's backlog (PagerDuty paced at
        under 2/s in a mass outage) must not fill a claim and starve the other channels.
        """
        ...

    async def mark_sent(
        self, notification_id: UUID, *, owner: str, now: datetime, provider_id: str | None
    ) -> bool:
        """Record the delivery and release the lease; False (nothing changed) if ``owner`` no
        longer holds the row."""
        ...

    async def mark_retry(
        self,
        notification_id: UUID,
        *,
        owner: str,
        now: datetime,
        next_attempt_at: datetime,
        error: str,
    ) -> bool:
        """Record a failed attempt to be repeated at ``next_attempt_at`` and release the lease;
        False (nothing changed) if ``owner`` no longer holds the row."""
        ...

    async def mark_failed(
        self, notification_id: UUID, *, owner: str, now: datetime, error: str
    ) -> bool:
        """Give up on the row (its queue moves on) and release the lease; False (nothing
        changed) if ``owner`` no longer holds the row."""
        ...

    async def release(self, *, owner: str) -> int:
        """Free every pending row leased to ``owner``: called by a process at start with its
        stable identity (the pod's name), so what its previous life held when it was killed
        is delivered now rather than when the leases run out. How many were freed."""
        ...

    async def pending_count(self) -> int: ...

    async def pending_by_channel(self) -> dict[str, int]:
        """Channels with pending rows only."""
        ...

    async def failed_by_channel(self) -> dict[str, int]:
        """Channels with failed rows only."""
        ...

    async def for_incident(self, incident_id: UUID) -> list[OutboxRow]:
        """The incident's delivery log, ordered by channel (code point order), then sequence."""
        ...

    async def last_delivery(self, channel: str) -> OutboxRow | None:
        """The channel's most recently recorded outcome (sent or failed), by ``updated_at``."""
        ...
