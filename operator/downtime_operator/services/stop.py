"""Stopping things: a StopSignal over an asyncio.Event, and the waits that shutdowns share."""

import asyncio
import contextlib


class EventStopSignal:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self._event.wait()


async def cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel the task and wait until it has stopped (nothing to do for None)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def set_within(event: asyncio.Event, within: float) -> bool:
    """Whether ``event`` is set within ``within`` seconds (a bounded wait for idle)."""
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True
