"""Status writes: coalesced per monitor, state changes first, refreshes within the budget."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from downtime_operator.domain.models import MonitorRef
from downtime_operator.services.status_writer import StatusWriter


def ref(i: int) -> MonitorRef:
    return MonitorRef(namespace="bench", name=f"m-{i}")


class ApiServer:
    """Records each status write; ``gate`` holds writes until opened."""

    def __init__(self) -> None:
        self.writes: list[tuple[MonitorRef, dict[str, Any]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def write(self, monitor: MonitorRef, body: Mapping[str, Any]) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("API server down")
        self.writes.append((monitor, dict(body)))


@contextlib.asynccontextmanager
async def running(writer: StatusWriter) -> AsyncIterator[None]:
    task = asyncio.create_task(writer.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if condition():
            return
        assert loop.time() < deadline, "not reached in time"
        await asyncio.sleep(0.005)


def nothing() -> None:
    return None


async def test_a_waiting_status_is_replaced_by_the_newer_one_and_merged() -> None:
    server = ApiServer()
    server.gate.clear()
    writer = StatusWriter(write=server.write, rate=1000, concurrency=1)
    async with running(writer):
        writer.offer(ref(0), {"state": "Up"}, urgent=True, on_failure=nothing)
        await asyncio.sleep(0.01)  # in flight, held by the gate
        writer.offer(
            ref(1), {"state": "Up", "uptime": {"h24": 100.0}}, urgent=False, on_failure=nothing
        )
        writer.offer(
            ref(1), {"state": "Up", "lastCheck": {"ok": True}}, urgent=False, on_failure=nothing
        )
        writer.offer(ref(1), {"state": "Down"}, urgent=True, on_failure=nothing)
        server.gate.set()
        await until(lambda: len(server.writes) == 2)
    assert server.writes[1] == (
        ref(1),
        {"state": "Down", "uptime": {"h24": 100.0}, "lastCheck": {"ok": True}},
    )


async def test_state_changes_go_first_and_refreshes_keep_within_the_budget() -> None:
    server = ApiServer()
    writer = StatusWriter(write=server.write, rate=20, concurrency=4)
    for i in range(200):
        writer.offer(ref(i), {"lastCheck": {"ok": True}}, urgent=False, on_failure=nothing)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running(writer):
        await asyncio.sleep(0.3)
        writer.offer(ref(999), {"state": "Down"}, urgent=True, on_failure=nothing)
        await until(lambda: (ref(999), {"state": "Down"}) in server.writes, within=1)
        urgent_after = loop.time() - started
        await asyncio.sleep(0.7)
    refreshes = [w for w in server.writes if w[0] != ref(999)]
    # One second of budget (20 tokens to start, 20 a second) for refreshes, less the urgent one.
    assert 20 <= len(refreshes) <= 42
    assert urgent_after < 0.5
    assert writer.pending == 200 - len(refreshes)


async def test_a_failed_write_tells_the_caller_to_send_everything_again() -> None:
    server = ApiServer()
    server.fail = True
    writer = StatusWriter(write=server.write, rate=100)
    failed: list[MonitorRef] = []
    async with running(writer):
        writer.offer(ref(0), {"state": "Up"}, urgent=True, on_failure=lambda: failed.append(ref(0)))
        await until(lambda: failed == [ref(0)])
    assert writer.failures == 1 and writer.pending == 0


async def test_one_monitor_never_has_two_writes_in_flight() -> None:
    server = ApiServer()
    server.gate.clear()
    writer = StatusWriter(write=server.write, rate=1000, concurrency=4)
    async with running(writer):
        writer.offer(ref(0), {"state": "Up"}, urgent=True, on_failure=nothing)
        await asyncio.sleep(0.01)
        writer.offer(ref(0), {"state": "Down"}, urgent=True, on_failure=nothing)
        await asyncio.sleep(0.01)
        assert writer.pending == 1  # waits behind the write in flight
        server.gate.set()
        await until(lambda: len(server.writes) == 2)
    assert [body["state"] for _, body in server.writes] == ["Up", "Down"]


async def test_refreshes_resume_at_the_budgets_pace_right_after_a_burst_of_state_changes() -> None:
    """A start-up or a mass outage: 500 state changes at once go out unbudgeted, and run up no
    debt that would keep the periodic refreshes back for 500 / 20 = 25 s."""
    server = ApiServer()
    writer = StatusWriter(write=server.write, rate=20, concurrency=8)
    for i in range(500):
        writer.offer(ref(i), {"state": "Down"}, urgent=True, on_failure=nothing)
    for i in range(500, 600):
        writer.offer(ref(i), {"lastCheck": {"ok": True}}, urgent=False, on_failure=nothing)
    async with running(writer):
        await until(lambda: len(server.writes) >= 500)
        burst_done = len(server.writes)
        await asyncio.sleep(1.0)
    refreshes = len(server.writes) - burst_done
    assert 10 <= refreshes <= 45  # about one second of budget, not zero


async def test_a_shutdown_sends_the_state_changes_and_drops_the_refreshes_behind_the_budget() -> (
    None
):
    server = ApiServer()
    writer = StatusWriter(write=server.write, rate=2, concurrency=2)
    for i in range(100):
        writer.offer(ref(i), {"lastCheck": {"ok": True}}, urgent=False, on_failure=nothing)
    writer.start()
    await asyncio.sleep(0.05)
    writer.offer(ref(999), {"state": "Down"}, urgent=True, on_failure=nothing)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await writer.close(drain_timeout=5)
    assert loop.time() - started < 1  # not the ~50 s the refreshes would need at 2/s
    assert (ref(999), {"state": "Down"}) in server.writes
    assert writer.pending > 90
