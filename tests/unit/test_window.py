"""Capture windows in Loki's integer nanoseconds."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from downtime_operator.domain.window import (
    CaptureWindow,
    capture_window,
    final_capture_due_at,
    format_unix_ns,
    from_unix_ns,
    to_unix_ns,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_nanoseconds_are_exact_integers_far_beyond_float_precision() -> None:
    ns = to_unix_ns(T0)
    assert isinstance(ns, int)
    assert ns == 1_772_366_400_123_456_000
    # Through a float the same arithmetic drifts by hundreds of nanoseconds.
    seven_us = T0.replace(microsecond=7)
    assert to_unix_ns(seven_us) == 1_772_366_400_000_007_000
    assert int(seven_us.timestamp() * 1e9) != to_unix_ns(seven_us)
    assert from_unix_ns(ns) == T0
    assert to_unix_ns(T0.astimezone(timezone(timedelta(hours=-5)))) == ns


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_unix_ns(datetime(2026, 1, 1))


def test_formatted_timestamps_keep_nanoseconds_and_sort_as_text() -> None:
    assert format_unix_ns(1_772_366_400_000_000_007) == "2026-03-01T12:00:00.000000007Z"
    stamps = [1_772_366_400_000_000_000 + d for d in (5, 999_999_999, 10**9, 0)]
    assert sorted(map(format_unix_ns, stamps)) == [format_unix_ns(s) for s in sorted(stamps)]


def test_window_is_half_open_like_loki() -> None:
    window = CaptureWindow(start_ns=100, end_ns=200)
    assert window.contains(100)
    assert window.contains(199)
    assert not window.contains(200)
    assert not window.contains(99)
    assert CaptureWindow(start_ns=5, end_ns=5).is_empty


def test_first_capture_runs_from_before_the_start_to_now() -> None:
    started = T0
    now = T0 + timedelta(seconds=90)
    window = capture_window(
        started_at=started,
        ended_at=None,
        now=now,
        before=timedelta(minutes=5),
        after=timedelta(minutes=5),
    )
    assert window.start == started - timedelta(minutes=5)
    assert window.end == now


def test_final_capture_runs_to_after_the_end_but_never_past_now() -> None:
    ended = T0 + timedelta(minutes=2)
    after = timedelta(minutes=5)
    due = final_capture_due_at(ended_at=ended, after=after)
    assert due == ended + after
    full = capture_window(
        started_at=T0, ended_at=ended, now=due + timedelta(hours=1), before=after, after=after
    )
    assert (full.start, full.end) == (T0 - after, ended + after)
    early = capture_window(
        started_at=T0, ended_at=ended, now=ended + timedelta(seconds=30), before=after, after=after
    )
    assert early.end == ended + timedelta(seconds=30)
