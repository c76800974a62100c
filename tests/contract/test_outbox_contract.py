"""The notification outbox on every store: once per key, in order per queue, leased claims.

PostgreSQL and SQLite are the real outboxes (the operator's and the standalone monitor's); the
in-memory fake (``tests.unit.fake_outbox``) is what the delivery service's unit tests use, held
here to the same rules. No test writes the incident row first: a notification may be enqueued
before its incident is stored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from downtime_operator.adapters.postgres import PostgresIncidentStore
from downtime_operator.adapters.postgres.outbox import PostgresOutbox
from downtime_operator.adapters.sqlite import SqliteIncidentStore
from downtime_operator.adapters.sqlite.outbox import SqliteOutbox
from downtime_operator.services.outbox import (
    NewNotification,
    NotificationOutbox,
    OutboxRow,
    Outcome,
)
from tests.contract.stores import T0, Stores, make_incident
from tests.unit.fake_outbox import MemoryOutbox

OpenOutbox = Callable[[], Awaitable[NotificationOutbox]]
LEASE = timedelta(seconds=30)
SLACK = "default/slack"
PAGER = "default/pager"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def note(
    incident_id: uuid.UUID,
    event: str = "opened",
    channel: str = SLACK,
    *,
    created_at: datetime = T0,
    **payload: Any,
) -> NewNotification:
    return NewNotification(
        incident_id=incident_id,
        channel=channel,
        event=event,
        payload={"event": event, **payload},
        created_at=created_at,
    )


def keys(rows: list[OutboxRow]) -> list[tuple[str, str, int]]:
    return [(r.channel, r.event, r.sequence) for r in rows]


async def recorded(outbox: NotificationOutbox, outcome: Outcome, *, owner: str) -> bool:
    """Whether one outcome, recorded on its own, was taken."""
    return await outbox.record([outcome], owner=owner) == {outcome.id}


@pytest.fixture
def open_outbox(stores: Stores) -> OpenOutbox:
    """Each call opens another store instance over the same data: another process, or the same
    one after a restart."""
    memory = MemoryOutbox()
    emptied = False

    async def open_outbox() -> NotificationOutbox:
        nonlocal emptied
        store = await stores.open()
        if isinstance(store, SqliteIncidentStore):
            return SqliteOutbox(store.database)
        if isinstance(store, PostgresIncidentStore):
            if not emptied:  # one database per module: start each test with an empty outbox
                await store.pool.execute("DELETE FROM downtime_notifications")
                emptied = True
            return PostgresOutbox(store.pool)
        return memory.reopen()

    return open_outbox


@pytest.fixture
async def outbox(open_outbox: OpenOutbox) -> NotificationOutbox:
    return await open_outbox()


async def test_a_notification_is_stored_once_per_incident_event_and_channel(
    outbox: NotificationOutbox,
) -> None:
    incident = uuid.uuid4()
    first = note(incident, "opened", monitor="default/api", started_at=T0, severity="high")
    assert await outbox.enqueue([first]) == 1
    assert await outbox.enqueue([first]) == 0  # the pipeline repeating its write after a failure
    again = note(incident, "opened", created_at=at(60), monitor="changed")
    assert await outbox.enqueue([again, note(incident, "opened", PAGER), again]) == 1

    [pager, slack] = await outbox.for_incident(incident)
    assert (slack.channel, slack.event, slack.sequence) == (SLACK, "opened", 1)
    assert slack.payload == {
        "event": "opened",
        "monitor": "default/api",
        "started_at": T0.isoformat(),
        "severity": "high",
    }
    assert (slack.state, slack.attempts, slack.last_error, slack.provider_id) == (
        "pending",
        0,
        None,
        None,
    )
    assert slack.next_attempt_at == slack.created_at == slack.updated_at == T0
    assert slack.sent_at is None
    assert pager.channel == PAGER and pager.id != slack.id
    assert await outbox.enqueue([]) == 0


async def test_sequences_count_per_incident_and_channel_in_enqueue_order(
    outbox: NotificationOutbox,
) -> None:
    one, two = uuid.uuid4(), uuid.uuid4()
    await outbox.enqueue(
        [note(one, "opened"), note(one, "opened", PAGER), note(one, "escalated"), note(two)]
    )
    await outbox.enqueue([note(one, "resolved", PAGER), note(one, "resolved")])
    assert keys(await outbox.for_incident(one)) == [
        (PAGER, "opened", 1),
        (PAGER, "resolved", 2),
        (SLACK, "opened", 1),
        (SLACK, "escalated", 2),
        (SLACK, "resolved", 3),
    ]
    assert keys(await outbox.for_incident(two)) == [(SLACK, "opened", 1)]
    assert await outbox.for_incident(uuid.uuid4()) == []


async def test_concurrent_enqueues_number_each_queue_once(open_outbox: OpenOutbox) -> None:
    first, second = await open_outbox(), await open_outbox()
    incident = uuid.uuid4()
    batches = [[note(incident, f"reminder:{n}") for n in range(k, k + 20)] for k in (0, 10)]
    added = await asyncio.gather(first.enqueue(batches[0]), second.enqueue(batches[1]))
    assert sum(added) == 30
    rows = await first.for_incident(incident)
    assert [r.sequence for r in rows] == list(range(1, 31))
    assert len({r.event for r in rows}) == 30


async def test_only_the_head_of_each_queue_is_claimed(outbox: NotificationOutbox) -> None:
    incident = uuid.uuid4()
    await outbox.enqueue([note(incident, "opened"), note(incident, "resolved", created_at=at(1))])

    [opened] = await outbox.claim(owner="a", now=at(5), lease=LEASE, limit=10)
    assert opened.event == "opened" and opened.updated_at == at(5)
    # Resolved is due, but opened is still out: it waits, on this replica and on any other.
    assert await outbox.claim(owner="b", now=at(6), lease=LEASE, limit=10) == []
    assert await recorded(outbox, Outcome.sent(opened.id, at=at(7), provider_id="msg-1"), owner="a")
    [resolved] = await outbox.claim(owner="b", now=at(8), lease=LEASE, limit=10)
    assert resolved.event == "resolved"


async def test_a_failed_head_lets_its_queue_move_on(outbox: NotificationOutbox) -> None:
    incident = uuid.uuid4()
    await outbox.enqueue([note(incident, "opened"), note(incident, "resolved")])
    [opened] = await outbox.claim(owner="a", now=at(1), lease=LEASE, limit=10)
    page = "HTTP 400: " + "<p>bad</p>" * 1000  # a whole error page: kept as far as it explains
    assert await recorded(outbox, Outcome.failed(opened.id, at=at(2), error=page), owner="a")
    [resolved] = await outbox.claim(owner="a", now=at(3), lease=LEASE, limit=10)
    assert resolved.event == "resolved"

    [failed, _] = await outbox.for_incident(incident)
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 1, page[:2000])
    assert failed.sent_at is None and failed.updated_at == at(2)


async def test_a_retry_waits_and_holds_back_its_queue(outbox: NotificationOutbox) -> None:
    incident, other = uuid.uuid4(), uuid.uuid4()
    await outbox.enqueue(
        [note(incident, "opened"), note(incident, "resolved"), note(other, created_at=at(61))]
    )
    [first] = await outbox.claim(owner="a", now=at(1), lease=LEASE, limit=10)
    retry = Outcome.retry(first.id, at=at(2), next_attempt_at=at(62), error="HTTP 503")
    assert await recorded(outbox, retry, owner="a")
    again = Outcome.retry(first.id, at=at(2), next_attempt_at=at(99), error="again")
    assert not await recorded(outbox, again, owner="a")  # released: not recorded twice

    [row, _] = await outbox.for_incident(incident)
    assert (row.state, row.attempts, row.next_attempt_at, row.last_error) == (
        "pending",
        1,
        at(62),
        "HTTP 503",
    )
    # Another queue is not held back.
    [unrelated] = await outbox.claim(owner="a", now=at(61), lease=LEASE, limit=10)
    assert unrelated.incident_id == other
    [again] = await outbox.claim(owner="b", now=at(62), lease=LEASE, limit=10)
    assert (again.id, again.attempts) == (first.id, 1)


async def test_claims_go_by_due_time_up_to_the_limit(outbox: NotificationOutbox) -> None:
    late, early, middle, future = (uuid.uuid4() for _ in range(4))
    await outbox.enqueue(
        [
            note(late, created_at=at(30)),
            note(early, created_at=at(10)),
            note(middle, created_at=at(20)),
            note(future, created_at=at(100)),
        ]
    )
    first = await outbox.claim(owner="a", now=at(50), lease=LEASE, limit=2)
    assert [r.incident_id for r in first] == [early, middle]
    rest = await outbox.claim(owner="a", now=at(50), lease=LEASE, limit=10)
    assert [r.incident_id for r in rest] == [late]


async def test_concurrent_claims_never_share_a_row(open_outbox: OpenOutbox) -> None:
    replicas = [await open_outbox(), await open_outbox()]
    incidents = [uuid.uuid4() for _ in range(40)]
    await replicas[0].enqueue([note(i, created_at=at(n % 5)) for n, i in enumerate(incidents)])

    claims = await asyncio.gather(
        *(
            replica.claim(owner=f"replica-{n % 2}", now=at(10), lease=LEASE, limit=7)
            for n, replica in enumerate(replicas * 4)
        )
    )
    claimed = [row.id for rows in claims for row in rows]
    assert len(claimed) == len(set(claimed)) == 40
    assert await replicas[1].claim(owner="late", now=at(11), lease=LEASE, limit=10) == []


async def test_an_expired_lease_is_taken_over_and_the_old_owner_refused(
    outbox: NotificationOutbox,
) -> None:
    incident = uuid.uuid4()
    await outbox.enqueue([note(incident)])
    [row] = await outbox.claim(owner="dead", now=at(1), lease=LEASE, limit=10)
    assert await outbox.claim(owner="alive", now=at(30), lease=LEASE, limit=10) == []
    [taken] = await outbox.claim(owner="alive", now=at(31), lease=LEASE, limit=10)
    assert taken.id == row.id

    assert not await recorded(
        outbox, Outcome.sent(row.id, at=at(32), provider_id="x"), owner="dead"
    )
    assert not await recorded(outbox, Outcome.failed(row.id, at=at(32), error="late"), owner="dead")
    [still] = await outbox.for_incident(incident)
    assert (still.state, still.attempts) == ("pending", 0)

    assert await recorded(
        outbox, Outcome.sent(taken.id, at=at(33), provider_id="msg-7"), owner="alive"
    )
    [sent] = await outbox.for_incident(incident)
    assert (sent.state, sent.attempts, sent.provider_id) == ("sent", 1, "msg-7")
    assert sent.sent_at == sent.updated_at == at(33)
    again = Outcome.sent(taken.id, at=at(34), provider_id="again")
    assert not await recorded(outbox, again, owner="alive")


async def test_a_claim_can_leave_backlogged_channels_alone(outbox: NotificationOutbox) -> None:
    await outbox.enqueue(
        [
            note(uuid.uuid4(), channel="team/pagerduty", created_at=at(1)),
            note(uuid.uuid4(), channel="team/slack", created_at=at(2)),
        ]
    )
    claimed = await outbox.claim(
        owner="a", now=at(5), lease=LEASE, limit=1, skip_channels=["team/pagerduty"]
    )
    assert [row.channel for row in claimed] == ["team/slack"]


async def test_a_restarted_owner_releases_what_its_previous_life_held(
    outbox: NotificationOutbox,
) -> None:
    """A pod killed while holding rows: started again under its name, it frees them at once."""
    await outbox.enqueue([note(uuid.uuid4()), note(uuid.uuid4())])
    held = await outbox.claim(owner="pod-0", now=at(1), lease=LEASE, limit=1)
    [other] = await outbox.claim(owner="pod-1", now=at(1), lease=LEASE, limit=1)
    assert await outbox.release(owner="pod-0") == 1
    assert [r.id for r in await outbox.claim(owner="pod-0", now=at(2), lease=LEASE, limit=9)] == [
        held[0].id
    ]
    assert await outbox.release(owner="nobody") == 0
    assert await recorded(outbox, Outcome.sent(other.id, at=at(3), provider_id=None), owner="pod-1")


async def test_an_owner_past_its_lease_still_records_if_nobody_took_over(
    outbox: NotificationOutbox,
) -> None:
    await outbox.enqueue([note(uuid.uuid4())])
    [row] = await outbox.claim(owner="slow", now=at(1), lease=LEASE, limit=10)
    assert await recorded(outbox, Outcome.sent(row.id, at=at(100), provider_id=None), owner="slow")
    assert await outbox.claim(owner="other", now=at(101), lease=LEASE, limit=10) == []


async def test_counts_and_last_delivery(outbox: NotificationOutbox) -> None:
    one, two = uuid.uuid4(), uuid.uuid4()
    assert await outbox.pending_count() == 0
    assert await outbox.last_delivery(SLACK) is None
    await outbox.enqueue([note(one), note(one, channel=PAGER), note(two), note(two, "resolved")])
    assert await outbox.pending_count() == 4
    assert await outbox.pending_by_channel() == {SLACK: 3, PAGER: 1}
    assert await outbox.failed_by_channel() == {}

    claimed = {
        (r.incident_id, r.channel): r
        for r in await outbox.claim(owner="a", now=at(1), lease=LEASE, limit=10)
    }
    assert await outbox.record(
        [
            Outcome.failed(claimed[one, SLACK].id, at=at(2), error="400"),
            Outcome.sent(claimed[two, SLACK].id, at=at(3), provider_id="p"),
        ],
        owner="a",
    ) == {claimed[one, SLACK].id, claimed[two, SLACK].id}
    assert await outbox.pending_count() == 2
    assert await outbox.pending_by_channel() == {SLACK: 1, PAGER: 1}
    assert await outbox.failed_by_channel() == {SLACK: 1}

    last = await outbox.last_delivery(SLACK)
    assert last is not None and (last.incident_id, last.state) == (two, "sent")
    assert await outbox.last_delivery(PAGER) is None  # claimed, not yet delivered


async def test_a_batch_records_each_outcome_in_one_call(outbox: NotificationOutbox) -> None:
    """The delivery loop's way: sent, retried and failed rows of several queues at once, each
    with its own time; the next event of a queue whose head was recorded becomes due."""
    first, second, third, fourth = (uuid.uuid4() for _ in range(4))
    await outbox.enqueue(
        [
            note(first),
            note(first, "resolved"),
            note(second),
            note(third),
            note(fourth, channel=PAGER),
        ]
    )
    rows = {
        r.incident_id: r for r in await outbox.claim(owner="a", now=at(1), lease=LEASE, limit=10)
    }
    assert set(rows) == {first, second, third, fourth}  # not first's resolved: not its head
    batch = [
        Outcome.sent(rows[first].id, at=at(2), provider_id="msg-1"),
        Outcome.retry(rows[second].id, at=at(3), next_attempt_at=at(60), error="HTTP 503"),
        Outcome.failed(rows[third].id, at=at(4), error="HTTP 400"),
        Outcome.sent(rows[fourth].id, at=at(5), provider_id=None),
    ]
    assert await outbox.record(batch, owner="a") == {o.id for o in batch}
    assert await outbox.record([], owner="a") == set()

    [sent, _] = await outbox.for_incident(first)
    assert (sent.state, sent.attempts, sent.provider_id, sent.sent_at, sent.updated_at) == (
        "sent",
        1,
        "msg-1",
        at(2),
        at(2),
    )
    [retried] = await outbox.for_incident(second)
    assert (retried.state, retried.attempts, retried.next_attempt_at, retried.last_error) == (
        "pending",
        1,
        at(60),
        "HTTP 503",
    )
    assert retried.sent_at is None and retried.updated_at == at(3)
    [failed] = await outbox.for_incident(third)
    assert (failed.state, failed.attempts, failed.last_error, failed.sent_at) == (
        "failed",
        1,
        "HTTP 400",
        None,
    )
    [paged] = await outbox.for_incident(fourth)
    assert (paged.state, paged.provider_id, paged.sent_at) == ("sent", None, at(5))
    [resolved] = await outbox.claim(owner="a", now=at(6), lease=LEASE, limit=10)
    assert (resolved.incident_id, resolved.event) == (first, "resolved")
    assert await recorded(outbox, Outcome.sent(resolved.id, at=at(7), provider_id=None), owner="a")

    # A delivery after a retry keeps the retry's error: what went wrong before it.
    [again] = await outbox.claim(owner="b", now=at(60), lease=LEASE, limit=10)
    assert await recorded(outbox, Outcome.sent(again.id, at=at(61), provider_id="m"), owner="b")
    [delivered] = await outbox.for_incident(second)
    assert (delivered.state, delivered.attempts, delivered.last_error) == ("sent", 2, "HTTP 503")


async def test_a_lost_lease_inside_a_batch_refuses_that_row_only(
    outbox: NotificationOutbox,
) -> None:
    """A replica that stalled past its lease records a batch: the row another replica took
    over stays the new owner's, the rows nobody took are recorded, and so is only the first of
    two outcomes of one row (what two calls would do)."""
    incidents = [uuid.uuid4() for _ in range(4)]
    await outbox.enqueue([note(i, created_at=at(n)) for n, i in enumerate(incidents)])
    taken_over, kept, twice, done = await outbox.claim(
        owner="slow", now=at(10), lease=LEASE, limit=10
    )
    assert await recorded(outbox, Outcome.sent(done.id, at=at(11), provider_id=None), owner="slow")
    [took] = await outbox.claim(owner="fast", now=at(40), lease=LEASE, limit=1)
    assert took.id == taken_over.id  # the earliest; the others' expired leases stay "slow"'s

    batch = [
        Outcome.sent(taken_over.id, at=at(45), provider_id="late"),
        Outcome.sent(kept.id, at=at(45), provider_id="p-1"),
        Outcome.retry(twice.id, at=at(45), next_attempt_at=at(90), error="HTTP 502"),
        Outcome.sent(twice.id, at=at(46), provider_id="second"),
        Outcome.failed(done.id, at=at(46), error="recorded already"),
        Outcome.sent(uuid.uuid4(), at=at(46), provider_id="no such row"),
    ]
    assert await outbox.record(batch, owner="slow") == {kept.id, twice.id}

    [still] = await outbox.for_incident(taken_over.incident_id)
    assert (still.state, still.attempts, still.provider_id) == ("pending", 0, None)
    [sent] = await outbox.for_incident(kept.incident_id)
    assert (sent.state, sent.provider_id) == ("sent", "p-1")
    [retried] = await outbox.for_incident(twice.incident_id)
    assert (retried.state, retried.attempts, retried.next_attempt_at) == ("pending", 1, at(90))
    assert retried.provider_id is None
    [finished] = await outbox.for_incident(done.incident_id)
    assert (finished.state, finished.attempts, finished.last_error) == ("sent", 1, None)

    assert await outbox.record(
        [Outcome.sent(taken_over.id, at=at(47), provider_id="new-owner")], owner="fast"
    ) == {taken_over.id}
    [delivered] = await outbox.for_incident(taken_over.incident_id)
    assert (delivered.state, delivered.attempts, delivered.provider_id) == ("sent", 1, "new-owner")


async def test_a_large_batch_is_recorded_whole(outbox: NotificationOutbox) -> None:
    incidents = [uuid.uuid4() for _ in range(150)]
    await outbox.enqueue([note(i) for i in incidents])
    claimed = await outbox.claim(owner="a", now=at(1), lease=LEASE, limit=200)
    assert len(claimed) == 150
    batch = [Outcome.sent(r.id, at=at(2), provider_id=str(r.id)) for r in claimed]
    assert await outbox.record(batch, owner="a") == {r.id for r in claimed}
    assert await outbox.pending_count() == 0


async def test_the_outbox_survives_a_restart(stores: Stores, open_outbox: OpenOutbox) -> None:
    incident = uuid.uuid4()
    before = await open_outbox()
    await before.enqueue([note(incident), note(incident, "resolved")])
    [leased] = await before.claim(owner="old-pod", now=at(1), lease=LEASE, limit=10)
    await stores.close_all()  # the process is gone, its lease still stands

    after = await open_outbox()
    assert await after.enqueue([note(incident), note(incident, "resolved")]) == 0
    assert keys(await after.for_incident(incident)) == [
        (SLACK, "opened", 1),
        (SLACK, "resolved", 2),
    ]
    assert await after.claim(owner="new-pod", now=at(2), lease=LEASE, limit=10) == []
    [taken] = await after.claim(owner="new-pod", now=at(31), lease=LEASE, limit=10)
    assert taken.id == leased.id and taken.payload == leased.payload


@pytest.mark.sql_only("retention deletes incident rows; the fake's outbox has no incidents")
async def test_retention_takes_an_incidents_notifications_with_it(
    stores: Stores, outbox: NotificationOutbox
) -> None:
    store = await stores.open()
    assert isinstance(store, PostgresIncidentStore | SqliteIncidentStore)
    one, two, kept = [
        await store.create_incident(make_incident(name, ended_at=at(60)))
        for name in ("api", "web", "db")
    ]
    await outbox.enqueue(
        [note(i.incident_id, e) for i in (one, two, kept) for e in ("opened", "resolved")]
    )
    # One by one (the retention service), and in bulk (the seed's cleanup function).
    assert await store.delete_resolved_incident(one.incident_id)
    assert await outbox.for_incident(one.incident_id) == []
    await store.update_incident(kept.incident_id, {"severity": "critical"})
    assert [i.incident_id for i in await store.cleanup_old_incidents(1, now=at(86_500))] == [
        two.incident_id
    ]
    assert await outbox.for_incident(two.incident_id) == []
    assert len(await outbox.for_incident(kept.incident_id)) == 2
    assert await outbox.pending_count() == 2
