"""Capture window arithmetic, in Loki's integer nanoseconds.

Why integers: Loki reads a timestamp containing a ``.`` as float seconds rounded to the
millisecond, so a float bound silently moves the window; an integer is taken as exact
nanoseconds since the epoch. Why half-open ``[start, end)``: that is Loki's own rule for
``query_range`` (start inclusive, end exclusive), so a line is in a window here exactly when Loki
returns it for that window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

NS_PER_SECOND = 1_000_000_000
_NS_PER_MICROSECOND = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_unix_ns(moment: datetime) -> int:
    """Exact nanoseconds since the epoch (integer arithmetic: no float rounding)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {moment!r}")
    delta = moment - _EPOCH
    return (
        delta.days * 86_400 + delta.seconds
    ) * NS_PER_SECOND + delta.microseconds * _NS_PER_MICROSECOND


def from_unix_ns(ns: int) -> datetime:
    """The datetime of ``ns``, truncated to the microsecond (datetime's resolution)."""
    seconds, rest = divmod(ns, NS_PER_SECOND)
    return _EPOCH + timedelta(seconds=seconds, microseconds=rest // _NS_PER_MICROSECOND)


def format_unix_ns(ns: int) -> str:
    """RFC 3339 with all nine fractional digits: fixed width, so text order is time order."""
    seconds, rest = divmod(ns, NS_PER_SECOND)
    whole = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{rest:09d}Z"


@dataclass(frozen=True, kw_only=True)
class CaptureWindow:
    """``[start_ns, end_ns)``; empty when ``end_ns <= start_ns`` (nothing to ask Loki for)."""

    start_ns: int
    end_ns: int

    @property
    def is_empty(self) -> bool:
        return self.end_ns <= self.start_ns

    def contains(self, ns: int) -> bool:
        return self.start_ns <= ns < self.end_ns

    @property
    def start(self) -> datetime:
        return from_unix_ns(self.start_ns)

    @property
    def end(self) -> datetime:
        return from_unix_ns(self.end_ns)


def capture_window(
    *,
    started_at: datetime,
    ended_at: datetime | None,
    now: datetime,
    before: timedelta,
    after: timedelta,
) -> CaptureWindow:
    """The window a capture run at ``now`` covers.

    Ongoing: ``[start - before, now)``, the first capture. Resolved: ``[start - before,
    end + after)``, the final one, but never past ``now``: lines that do not exist yet cannot be
    captured, and claiming a window they were not looked for in would misreport it.
    """
    end = now if ended_at is None else min(ended_at + after, now)
    return CaptureWindow(start_ns=to_unix_ns(started_at - before), end_ns=to_unix_ns(end))


def final_capture_due_at(*, ended_at: datetime, after: timedelta) -> datetime:
    """When the final capture can run: once the whole ``after`` margin has happened."""
    return ended_at + after
