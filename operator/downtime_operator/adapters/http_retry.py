"""Retries for the query APIs the operator reads evidence from (Loki, Prometheus).

429, 5xx, timeouts and connection errors are worth another attempt; anything else (a bad query,
401, 404) is not. Attempts back off exponentially with jitter, never sooner than a
``Retry-After``, and all of them fit in one deadline, so a capture always ends with an answer or
the server's own last error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIN_ATTEMPT_SECONDS = 0.1
"""An attempt with less time left than this cannot answer; it would only hide the last error
(the server's own text) behind a timeout of our making."""
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500


class Retryable(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_retryable_status(status: int) -> bool:
    return status == HTTP_TOO_MANY_REQUESTS or status >= HTTP_SERVER_ERROR


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: float | None


async def send(
    session: aiohttp.ClientSession, method: str, url: str, *, seconds: float, **options: Any
) -> Answer:
    """One request within ``seconds``; a timeout or a connection error is ``Retryable``."""
    try:
        async with (
            asyncio.timeout(seconds),
            session.request(method, url, **options) as response,
        ):
            return Answer(
                status=response.status,
                body=await response.read(),
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
    except TimeoutError as exc:
        raise Retryable(f"timeout after {seconds:g}s") from exc
    except aiohttp.ClientError as exc:
        raise Retryable(f"{type(exc).__name__}: {exc}") from exc


def body_text(status: int, body: bytes, *, limit: int) -> str:
    """``HTTP 503: <the start of the body>``: the server's own words, bounded."""
    text = body.decode("utf-8", errors="replace").strip()[:limit]
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def retry_after_seconds(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None  # an HTTP date: rare from these servers, and our own backoff applies anyway


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    service: str
    """Named in the errors: ``Loki query failed after 3 attempt(s)...``."""
    deadline: float
    """Seconds one query may take, retries included."""
    request_timeout: float
    base_delay: float = 0.5
    max_delay: float = 10.0
    rng: random.Random = field(default_factory=random.Random)

    async def call(
        self,
        attempt: Callable[[float], Awaitable[T]],
        *,
        deadline_at: float,
        error: Callable[[str], Exception],
    ) -> T:
        """``attempt(timeout)`` until it answers or raises something but ``Retryable``, or the
        deadline (a loop time) passes: then ``error`` with the last reason is raised."""
        loop = asyncio.get_running_loop()
        attempts = 0
        last: Retryable | None = None
        while True:
            remaining = deadline_at - loop.time()
            if remaining < MIN_ATTEMPT_SECONDS:
                # A sleep can overrun on a busy host; the server's own answer still names the cause.
                raise error(self._out_of_time(attempts, last))
            try:
                return await attempt(min(self.request_timeout, remaining))
            except Retryable as exc:
                attempts += 1
                last = exc
                delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
                delay *= self.rng.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if loop.time() + delay + MIN_ATTEMPT_SECONDS > deadline_at:
                    raise error(self._out_of_time(attempts, last)) from exc
                logger.info("%s: %s; retry %d in %.2fs", self.service, exc, attempts, delay)
                await asyncio.sleep(delay)

    def _out_of_time(self, attempts: int, last: Retryable | None) -> str:
        if last is None:
            return f"{self.service} query did not finish within the {self.deadline:g}s deadline"
        return (
            f"{self.service} query failed after {attempts} attempt(s) within the"
            f" {self.deadline:g}s deadline: {last}"
        )
