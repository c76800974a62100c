"""OrderedRetryQueue: order within a lane, independence between lanes, nothing dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from downtime_operator.services.retry_queue import Operation, OrderedRetryQueue


@pytest.fixture
async def queue() -> AsyncIterator[OrderedRetryQueue]:
    q = OrderedRetryQueue(name="test", base_delay=0.001, max_delay=0.01)
    worker = asyncio.create_task(q.run())
    yield q
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker


def recorder(log: list[str], entry: str) -> Operation:
    async def write() -> None:
        log.append(entry)

    return write


class RefusedUntilOpened:
    """A write refused with ``error`` (a 403 until a RoleBinding is fixed, an API server away)
    until ``opened``; then it records ``entry``."""

    def __init__(self, log: list[str], entry: str, error: Exception) -> None:
        self._log = log
        self._entry = entry
        self._error = error
        self.opened = False

    async def __call__(self) -> None:
        if not self.opened:
            raise self._error
        self._log.append(self._entry)


async def test_a_write_retried_in_one_lane_does_not_hold_up_another(
    queue: OrderedRetryQueue,
) -> None:
    applied: list[str] = []
    team_a_write = RefusedUntilOpened(
        applied, "team-a 1", PermissionError("downtimeincidents is forbidden in namespace team-a")
    )
    queue.submit("team-a 1", team_a_write, lane="team-a")
    queue.submit("team-a 2", recorder(applied, "team-a 2"), lane="team-a")
    for n in range(3):
        queue.submit(f"team-b {n}", recorder(applied, f"team-b {n}"), lane="team-b")

    assert not await queue.drained(0.3)
    assert applied == ["team-b 0", "team-b 1", "team-b 2"]
    assert queue.pending == 2  # team-a's writes are kept, not dropped
    assert queue.failures > 3

    team_a_write.opened = True
    assert await queue.drained(2)
    assert applied[3:] == ["team-a 1", "team-a 2"]  # in submission order once allowed
    assert queue.pending == 0


async def test_writes_of_one_lane_keep_their_order_across_retries(
    queue: OrderedRetryQueue,
) -> None:
    applied: list[int] = []
    attempts = {"n": 0}

    async def flaky_first() -> None:
        attempts["n"] += 1
        if attempts["n"] < 4:
            raise ConnectionError("API server restarting")
        applied.append(0)

    queue.submit("0", flaky_first, lane="ns")
    for n in range(1, 5):

        async def write(n: int = n) -> None:
            applied.append(n)

        queue.submit(str(n), write, lane="ns")
    assert await queue.drained(2)
    assert applied == [0, 1, 2, 3, 4]


async def test_a_lane_emptied_and_used_again_is_served_again(queue: OrderedRetryQueue) -> None:
    applied: list[str] = []
    queue.submit("first", recorder(applied, "first"), lane="ns")
    assert await queue.drained(1)
    queue.submit("second", recorder(applied, "second"), lane="ns")
    assert await queue.drained(1)
    assert applied == ["first", "second"]


async def test_writes_cut_short_by_a_stop_are_applied_by_the_next_run() -> None:
    queue = OrderedRetryQueue(name="test", base_delay=0.001, max_delay=0.01)
    applied: list[str] = []
    held = RefusedUntilOpened(applied, "held", ConnectionError("API server away"))
    first = asyncio.create_task(queue.run())
    queue.submit("held", held, lane="ns")
    queue.submit("after", recorder(applied, "after"), lane="ns")
    assert not await queue.drained(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert queue.pending == 2

    held.opened = True
    second = asyncio.create_task(queue.run())
    assert await queue.drained(1)
    assert applied == ["held", "after"]
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
