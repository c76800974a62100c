"""Does one HTTP answer meet a monitor's ``expect``?

Kept pure (no I/O) so the rules, and the exact failure texts users see in incidents, are
unit-tested without a server; the HTTP probe only gathers the facts and asks here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from downtime_operator.domain.durations import format_duration
from downtime_operator.domain.models import Expectation


def status_matches(code: int, accepted: Iterable[str]) -> bool:
    """True when ``code`` is listed exactly ("200") or falls in a listed class ("2xx").

    Patterns are validated when the spec is parsed; one that is malformed anyway matches
    nothing rather than raising, so a bad pattern can never turn a failure into a success.
    """
    for pattern in accepted:
        text = pattern.strip().lower()
        if len(text) == 3 and text.endswith("xx") and text[0].isdigit():
            if code // 100 == int(text[0]):
                return True
        elif text.isdigit() and int(text) == code:
            return True
    return False


def unmet_expectation(
    expect: Expectation,
    *,
    status_code: int,
    reason: str | None,
    body: bytes,
    latency: timedelta,
    body_over_limit: int | None = None,
) -> str | None:
    """The reason the answer counts as a failure, or None when every expectation holds.

    The most telling reason wins: an unexpected status first, then an oversized body
    (``body_over_limit`` is the probe's limit, given when the body exceeded it), then a
    missing ``bodyContains`` text (searched in ``body``, the part the probe kept), then latency.
    """
    if not status_matches(status_code, expect.status):
        return f"HTTP {status_code} {reason or ''}".rstrip()
    if body_over_limit is not None:
        return f"oversized body: more than {format_size(body_over_limit)}"
    if expect.body_contains is not None and expect.body_contains.encode() not in body:
        return f"body did not contain {expect.body_contains!r}"
    if expect.max_latency is not None and latency > expect.max_latency:
        millis = round(latency.total_seconds() * 1000)
        return f"latency {millis}ms exceeded maxLatency {format_duration(expect.max_latency)}"
    return None


def format_size(size: int) -> str:
    """Bytes as people read them in messages: ``1 MiB``, ``64 KiB``, ``1500 bytes``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"
