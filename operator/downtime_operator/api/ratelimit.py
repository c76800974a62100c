"""Token buckets per client, for 429 with Retry-After.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a request takes one.
So a client may burst briefly and is then held to the steady rate, and one client's buckets
never affect another's. The number of buckets kept is bounded (least recently used ones are
dropped; a dropped bucket comes back full, which only ever errs towards letting a request in),
so a stream of new client addresses cannot grow memory without limit.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    rate: float
    """Tokens added per second: the sustained requests per second allowed."""
    burst: int
    """Bucket size: how many requests may arrive at once after a quiet spell."""

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {self.rate}, {self.burst}")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(
        self, *, limit: RateLimit, clock: Callable[[], float], max_clients: int = 10_000
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str) -> float | None:
        """Take a token for ``client``; None if allowed, else seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self._limit.burst), updated=now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self._limit.burst), bucket.tokens + elapsed * self._limit.rate)
        bucket.updated = now
        self._buckets[client] = bucket
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._limit.rate


def retry_after_header(wait_seconds: float) -> str:
    """HTTP's Retry-After takes whole seconds; round up so a client that obeys it succeeds."""
    return str(max(1, math.ceil(wait_seconds)))
