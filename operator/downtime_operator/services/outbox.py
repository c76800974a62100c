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
    """Delivery attempts whose outcome was recorded (each ``record``ed outcome counts one)."""
    next_attempt_at: datetime
    last_error: str | None
    provider_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What became of one attempt to deliver a claimed row: made by ``sent``, ``retry`` or
    ``failed``, which set the fields each needs."""

    id: UUID
    state: NotificationState
    """``sent`` or ``failed`` (final), or ``pending``: to be tried again at ``next_attempt_at``."""
    at: datetime
    """Aware: when the attempt ended; the row's ``updated_at``, and ``sent_at`` if sent."""
    provider_id: str | None = None
    next_attempt_at: datetime | None = None
    error: str | None = None

    @classmethod
    def sent(cls, notification_id: UUID, *, at: datetime, provider_id: str | None) -> Outcome:
        return cls(id=notification_id, state="sent", at=at, provider_id=provider_id)

    @classmethod
    def retry(
        cls, notification_id: UUID, *, at: datetime, next_attempt_at: datetime, error: str
    ) -> Outcome:
        return cls(
            id=notification_id,
            state="pending",
            at=at,
            next_attempt_at=next_attempt_at,
            error=error,
        )

    @classmethod
    def failed(cls, notification_id: UUID, *, at: datetime, error: str) -> Outcome:
        """Given up: the row's queue moves on."""
        return cls(id=notification_id, state="failed", at=at, error=error)


class NotificationOutbox(Protocol):
    """Rows are claimed under a lease: a replica that dies mid-delivery loses its rows to the
    next claim after ``lease``, and its late outcomes are refused (``record`` leaves them out),
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

    async def record(self, outcomes: Sequence[Outcome], *, owner: str) -> set[UUID]:
        """Record the attempts' outcomes and release their leases, all in one transaction;
        return the ids of the rows recorded.

        Each recorded outcome counts one attempt. A row ``owner`` no longer holds (its lease
        ran out and another owner claimed it, or an outcome of it was recorded already) is
        left unchanged and its id not returned, so only the current owner's outcome counts;
        the other rows of the batch are recorded all the same. Of two outcomes of one row in
        one call, the first is recorded and the second refused, as two calls would be.
        """
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
