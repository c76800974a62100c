"""Identical requests in flight share one computation ("single flight").

A statistics query costs tens of milliseconds of database time, and a dashboard shown on ten
screens asks the same question ten times a refresh. Requests for the same key that arrive while
one computation runs wait for that computation instead of starting their own, so concurrency
does not multiply the database's work. Nothing is kept after it finishes: a request that
arrives later computes afresh, so an answer is never older than the moment it was asked for
minus one computation's duration (and says which moment it describes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[T]] = {}

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(compute())
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # Shielded: one caller giving up (a client that disconnects) must not cancel the
        # computation the others are waiting for.
        return await asyncio.shield(running)
