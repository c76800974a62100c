"""A check's deadline that does not count the time this process kept the answer waiting.

Every check runs on the same event loop as the incident writes. During a mass outage that loop
can be busy for seconds at a time: a healthy endpoint answers in 2 ms, but its answer waits in
the socket until the loop gets to it, and a plain wall-clock deadline then reports "timeout
after 5s" and opens an incident nobody had. ``LoopStalls`` sums how late a 100 ms timer fires
(lateness below one tick is jitter and is not counted, so stalls are under- rather than
over-estimated); a ``CheckDeadline`` moves its expiry by the stalls seen since the check began,
up to ``STRETCH`` times the timeout, so a hung endpoint is still reported, only later, when the
operator itself is the bottleneck.
"""

from __future__ import annotations

import asyncio

STRETCH = 3.0
"""A check whose loop stalled gets at most this multiple of its timeout, in wall-clock time."""


class LoopStalls:
    """Seconds the running loop was too busy to fire its timers on time, summed since ``start``."""

    def __init__(self, *, tick: float = 0.1) -> None:
        self._tick = tick
        self.total = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._schedule(loop, loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        due = now + self._tick
        self._handle = loop.call_at(due, self._fired, loop, due)

    def _fired(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        if now - due > self._tick:
            self.total += now - due
        self._schedule(loop, now)


class CheckDeadline:
    """Expires ``timeout`` seconds of the loop's attention after it was armed.

    Arm it inside ``asyncio.timeout(None)`` and ``disarm`` it in a ``finally``::

        async with asyncio.timeout(None) as scope:
            deadline = CheckDeadline(scope, timeout=5.0, stalls=stalls)
            try:
                ...
            finally:
                deadline.disarm()
    """

    def __init__(self, scope: asyncio.Timeout, *, timeout: float, stalls: LoopStalls) -> None:
        self._scope = scope
        self._timeout = timeout
        self._stalls = stalls
        self._loop = asyncio.get_running_loop()
        self._began = self._loop.time()
        self._stalled_before = stalls.total
        self._latest = self._began + timeout * STRETCH
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            self._began + timeout, self._due
        )

    @property
    def stalled(self) -> float:
        """Seconds of the check during which the loop was stalled."""
        return self._stalls.total - self._stalled_before

    def latency(self) -> float:
        """Seconds since the check began, stalls left out (``maxLatency`` is the endpoint's)."""
        return max(0.0, self._loop.time() - self._began - self.stalled)

    def _due(self) -> None:
        now = self._loop.time()
        left = self._timeout - (now - self._began - self.stalled)
        if left <= 0 or now >= self._latest:
            self._handle = None
            self._scope.reschedule(now)
            return
        self._handle = self._loop.call_at(min(now + left, self._latest), self._due)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
