"""What every test receiver shares: a threaded aiohttp server, a log of attempts, scripted
failures and the rate-limit arithmetic.

Each receiver runs in its OWN thread and event loop (like ``tests/support/target.py``), so it
answers while a test blocks its own loop or waits on a subprocess (the e2e operator).
Everything a test reads or scripts goes through one lock.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

HOST = "127.0.0.1"
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One request as received, and the status it was answered with."""

    at: float
    """Unix time of arrival."""
    path: str
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A scripted answer: ``status``, with ``Retry-After`` when ``retry_after`` is set."""

    status: int
    retry_after: float | None = None


class SlidingWindow:
    """At most ``limit`` admissions per key in any ``window`` seconds (PagerDuty's 120 a
    minute, Resend's 2 a second): the literal reading of "N per period", stricter than a
    token bucket, so a sender paced to pass it passes the real service."""

    def __init__(self, *, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._admitted: dict[str, collections.deque[float]] = {}

    def admit(self, key: str, now: float) -> float | None:
        """None when admitted (and counted); else the seconds until one would be."""
        times = self._admitted.setdefault(key, collections.deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] + self.window - now
        times.append(now)
        return None

    def remaining(self, key: str, now: float) -> int:
        times = self._admitted.get(key, collections.deque())
        return max(0, self.limit - sum(1 for t in times if t > now - self.window))


class TokenBucket:
    """``rate`` a second with bursts up to ``burst``: Slack's "about one message a second,
    short bursts allowed"."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def admit(self, key: str, now: float) -> float | None:
        """None when admitted (a token taken); else the seconds until a token is there."""
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after_value(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds as the services send them (a scripted fraction,
    for fast tests, is kept as given)."""
    return f"{seconds:g}"


def whole_seconds(wait: float) -> float:
    """A rate limiter's wait as the services announce it: whole seconds, rounded up, at least
    1, so a client that obeys it is admitted."""
    return float(max(1, math.ceil(wait)))


class Receiver:
    """Base of the test receivers. Subclasses implement ``routes``, ``handle`` and
    ``error_response`` (the real service's error shape for a status)."""

    name = "receiver"

    def __init__(self, *, port: int = 0) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._attempts: list[Attempt] = []
        self._failures: collections.deque[Failure] = collections.deque()
        self._failing: tuple[Failure, float] | None = None
        self._stalls: collections.deque[float] = collections.deque()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready: Future[None] = Future()

    # -- what subclasses provide ------------------------------------------------------------------

    def routes(self) -> list[str]:
        """Paths answered with ``handle`` (POST); anything else is the service's 404."""
        raise NotImplementedError

    def handle(self, request: web.Request, body: bytes, now: float) -> web.Response:
        """Answer one request as the service would; called with the lock held."""
        raise NotImplementedError

    def error_response(self, status: int, *, retry_after: float | None = None) -> web.Response:
        """The service's answer for a failure of this status (scripted or real)."""
        raise NotImplementedError

    # -- scripting --------------------------------------------------------------------------------

    def fail_next(self, status: int, *, retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (e.g. 429 with ``retry_after``,
        400, 410, 503), in the service's own error shape."""
        with self._lock:
            self._failures.extend([Failure(status=status, retry_after=retry_after)] * times)

    def fail_with(
        self, status: int, *, for_seconds: float, retry_after: float | None = None
    ) -> None:
        """Answer every request with ``status`` for the next ``for_seconds`` (an outage)."""
        with self._lock:
            self._failing = (
                Failure(status=status, retry_after=retry_after),
                time.monotonic() + for_seconds,
            )

    def stall_next(self, seconds: float) -> None:
        """Hold the next request ``seconds`` before answering it (a client's timeout)."""
        with self._lock:
            self._stalls.append(seconds)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._failing = None
            self._stalls.clear()

    # -- what happened ----------------------------------------------------------------------------

    @property
    def attempts(self) -> list[Attempt]:
        """Every request, whatever it was answered, in arrival order."""
        with self._lock:
            return list(self._attempts)

    def wait_until(self, predicate: Callable[[], bool], *, timeout: float) -> bool:
        """Block until ``predicate()`` (evaluated without the lock) holds, re-checking on each
        request; False if ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(timeout=min(remaining, 0.1))
        return True

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self._port}"

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._port))
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(sock),), name=self.name, daemon=True
        )
        self._thread.start()
        self._ready.result(timeout=10)
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, sock: socket.socket) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            app = web.Application(client_max_size=MAX_BODY_BYTES)
            for path in self.routes():
                app.router.add_post(path, self._dispatch)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException as exc:
            self._ready.set_exception(exc)
            raise
        self._ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            stall = self._stalls.popleft() if self._stalls else 0.0
        if stall:
            await asyncio.sleep(stall)
        with self._lock:
            now = time.monotonic()
            failure = self._scripted_failure(now)
            if failure is not None:
                response = self.error_response(failure.status, retry_after=failure.retry_after)
            else:
                response = self.handle(request, body, now)
            self._attempts.append(
                Attempt(
                    at=time.time(),
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    status=response.status,
                )
            )
            self._changed.notify_all()
        return response

    def _scripted_failure(self, now: float) -> Failure | None:
        if self._failures:
            return self._failures.popleft()
        if self._failing is not None:
            failure, until = self._failing
            if now < until:
                return failure
            self._failing = None
        return None


def json_response(
    document: Any, *, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(document), status=status, content_type="application/json", headers=headers
    )
