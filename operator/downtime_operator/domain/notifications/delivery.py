"""What to do after a delivery attempt, and how fast a channel may be sent to.

Both are decisions without a clock or I/O: the delivery loop passes the answer, the times and a
random ``jitter``, and carries the decision out. So the policy (429 waits for Retry-After, 5xx
and network failures back off up to a maximum age, other 4xx fail at once, 410 disables the
channel) is tested exactly, and never sleeps in a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from downtime_operator.domain.notifications.channel import ChannelSpec, ChannelType

DEFAULT_MAX_AGE = timedelta(hours=24)
BACKOFF_BASE = timedelta(seconds=2)
BACKOFF_CAP = timedelta(minutes=5)
_GONE = 410
_RETRIED_4XX = frozenset({408, 425, 429})
"""Request Timeout and Too Early are the server's trouble, not the message's: retried."""


@dataclass(frozen=True)
class Sent:
    pass


@dataclass(frozen=True, kw_only=True)
class RetryAt:
    at: datetime
    reason: str


@dataclass(frozen=True, kw_only=True)
class Failed:
    reason: str


@dataclass(frozen=True, kw_only=True)
class DisableChannel:
    """The endpoint is gone (410): fail this notice and stop sending to the channel until its
    spec changes, rather than fail every later notice one by one."""

    reason: str


Step = Sent | RetryAt | Failed | DisableChannel


def backoff(*, attempts: int, jitter: float) -> timedelta:
    """2s, 4s, 8s, ... capped at 5 min, scaled into [half, whole) by ``jitter`` in [0, 1).

    The jitter spreads the retries of many notices failed by one outage of the provider, so
    they do not all come back in the same second.
    """
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    exponent = min(max(attempts - 1, 0), 20)
    full = min(BACKOFF_BASE * (1 << exponent), BACKOFF_CAP)
    return full * (0.5 + jitter / 2)


def next_step(
    *,
    status: int | None,
    retry_after: float | None,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    jitter: float,
    retryable: bool | None = None,
) -> Step:
    """The decision after an attempt answered ``status`` (None: connection error or timeout).

    ``attempts`` counts the attempts made, this one included; ``retry_after`` is the parsed
    Retry-After header in seconds. A retry that would fall after ``first_attempt_at + max_age``
    is not made: the notice fails, saying why. ``retryable`` overrides the reading of
    ``status`` for transports whose codes are not HTTP's (SMTP: 4xx is "later", 5xx "never").
    """
    if status is not None and 200 <= status < 300:
        return Sent()
    if status == _GONE and retryable is not True:
        return DisableChannel(reason="HTTP 410: the endpoint is gone")
    refused = status is not None and status < 500 and status not in _RETRIED_4XX
    if retryable is False or (retryable is None and refused):
        return Failed(reason=f"{status or 'no answer'}: refused, not retried")
    if status == 429 and retry_after is not None:
        wait = timedelta(seconds=max(retry_after, 0.0))
        reason = f"HTTP 429: Retry-After {retry_after:g}s"
    else:
        wait = backoff(attempts=attempts, jitter=jitter)
        reason = f"answered {status}" if status is not None else "connection error or timeout"
    at = now + wait
    if at > first_attempt_at + max_age:
        return Failed(reason=f"{reason}; gave up after {attempts} attempts (max age {max_age})")
    return RetryAt(at=at, reason=reason)


DEFAULT_RATES = {
    "slack": 1.0,
    "pagerduty": 1.8,
    "resend": 2.0,
    "smtp": 10.0,
    "webhook": 10.0,
}
"""Messages per second by transport: Slack's 1 per second per webhook, PagerDuty's 120 events
per minute per routing key (paced 10 % under it, so a sliding window never sees 121), Resend's
2 requests per second; SMTP and webhooks are ours to pick."""


def transport(channel: ChannelSpec) -> str:
    """``slack``, ``pagerduty``, ``resend``, ``smtp`` or ``webhook``: what paces a channel."""
    if channel.type is ChannelType.EMAIL:
        return "resend" if channel.email is not None and channel.email.resend else "smtp"
    return channel.type.value


def pacing_rate(channel: ChannelSpec) -> float:
    """The channel's ``rate`` when set, else its transport's default."""
    return channel.rate if channel.rate is not None else DEFAULT_RATES[transport(channel)]


class Pacer:
    """A token bucket: ``take`` reserves the next send and says how long to wait for it.

    Reservations queue up (the bucket goes negative), so concurrent senders asking at once are
    spread ``1 / rate`` apart instead of all being told "now". ``now`` is any monotonic clock
    in seconds; a clock that steps back is read as no time passing.
    """

    def __init__(self, *, rate: float, burst: float = 1.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def take(self, now: float) -> float:
        """Reserve one send; return the seconds to wait before making it (0: at once)."""
        elapsed = 0.0 if self._last is None else max(now - self._last, 0.0)
        self._last = now if self._last is None else max(now, self._last)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate) - 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
