"""Writes that must not be lost or reordered, retried with backoff until they succeed.

While PostgreSQL (or the API server) is unreachable, checks go on and their consequences queue
up here; when the dependency is back they are applied in the order they happened. A write that
can never succeed (``permanent`` errors) is reported and dropped so it cannot block the rest.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Operation = Callable[[], Awaitable[None]]
PermanentHandler = Callable[[str, BaseException], Awaitable[None]]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Item:
    description: str
    operation: Operation
    on_permanent: PermanentHandler | None


class OrderedRetryQueue:
    def __init__(
        self,
        *,
        name: str,
        permanent: tuple[type[BaseException], ...] = (),
        base_delay: float = 0.2,
        max_delay: float = 10.0,
    ) -> None:
        self._name = name
        self._permanent = permanent
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._items: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._items)

    def submit(
        self,
        description: str,
        operation: Operation,
        *,
        on_permanent: PermanentHandler | None = None,
    ) -> None:
        self._items.append(_Item(description, operation, on_permanent))
        self._idle.clear()
        self._wakeup.set()

    async def drained(self, within: float) -> bool:
        """Wait until every submitted write is applied (graceful shutdown)."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """The single worker: one write at a time, in submission order, forever."""
        while True:
            if not self._items:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._items[0]
            await self._apply(item)
            self._items.popleft()

    async def _apply(self, item: _Item) -> None:
        attempt = 0
        while True:
            try:
                await item.operation()
                if attempt:
                    logger.info(
                        "%s: %s succeeded after %d retries", self._name, item.description, attempt
                    )
                return
            except asyncio.CancelledError:
                raise
            except self._permanent as exc:
                logger.error("%s: %s failed permanently: %s", self._name, item.description, exc)
                if item.on_permanent is not None:
                    await item.on_permanent(item.description, exc)
                return
            except Exception as exc:
                self.failures += 1
                delay = min(self._max_delay, self._base_delay * 2**attempt)
                delay *= random.uniform(0.5, 1.0)
                attempt += 1
                logger.warning(
                    "%s: %s failed (%s: %s); retry %d in %.1fs",
                    self._name,
                    item.description,
                    type(exc).__name__,
                    exc,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
