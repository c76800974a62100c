"""Maintenance window recurrence across DST changes (acceptance 2) and the cron fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from downtime_operator.domain.maintenance import (
    CronSchedule,
    OneOff,
    Recurring,
    active_period,
    parse_time_zone,
)

BERLIN = parse_time_zone("Europe/Berlin")
NIGHTLY = Recurring(cron=CronSchedule.parse("30 2 * * *"), duration=timedelta(hours=1), zone=BERLIN)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_an_ordinary_day_opens_at_local_0230() -> None:
    # 2026-03-28 is in CET (+01:00).
    assert NIGHTLY.periods(since=utc(2026, 3, 28), until=utc(2026, 3, 28, 23)) == [
        (utc(2026, 3, 28, 1, 30), utc(2026, 3, 28, 2, 30))
    ]


def test_spring_forward_start_that_does_not_exist_opens_after_the_jump() -> None:
    """2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 is read as 03:30 CEST (01:30 UTC)."""
    periods = NIGHTLY.periods(since=utc(2026, 3, 28, 22), until=utc(2026, 3, 29, 22))
    assert periods == [(utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30))]
    start, end = periods[0]
    assert start.astimezone(BERLIN).isoformat() == "2026-03-29T03:30:00+02:00"
    assert end.astimezone(BERLIN).isoformat() == "2026-03-29T04:30:00+02:00"
    # The next night is ordinary summer time again: 02:30 CEST.
    assert NIGHTLY.next_start(after=end) == utc(2026, 3, 30, 0, 30)
    assert active_period(NIGHTLY, at=utc(2026, 3, 29, 1, 29, 59)) is None
    assert active_period(NIGHTLY, at=utc(2026, 3, 29, 1, 30)) == periods[0]
    assert active_period(NIGHTLY, at=utc(2026, 3, 29, 2, 30)) is None


def test_fall_back_start_that_occurs_twice_opens_once_at_the_first() -> None:
    """2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 comes at 00:30 and 01:30 UTC."""
    periods = NIGHTLY.periods(since=utc(2026, 10, 24, 22), until=utc(2026, 10, 25, 22))
    assert periods == [(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))]
    # It lasts one real hour: it closes at the second 02:30, now in CET.
    assert periods[0][1].astimezone(BERLIN).isoformat() == "2026-10-25T02:30:00+01:00"
    assert active_period(NIGHTLY, at=utc(2026, 10, 25, 1, 29)) == periods[0]
    assert active_period(NIGHTLY, at=utc(2026, 10, 25, 1, 30)) is None
    assert NIGHTLY.next_start(after=utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)


def test_a_long_window_spans_midnight_and_periods_overlapping_the_range_are_found() -> None:
    weekly = Recurring(
        cron=CronSchedule.parse("0 22 * * 6"), duration=timedelta(hours=6), zone=BERLIN
    )
    # Saturday 2026-11-28 22:00 CET = 21:00 UTC, until Sunday 03:00 UTC.
    assert weekly.periods(since=utc(2026, 11, 29, 2), until=utc(2026, 11, 29, 3)) == [
        (utc(2026, 11, 28, 21), utc(2026, 11, 29, 3))
    ]
    assert weekly.next_start(after=utc(2026, 11, 29)) == utc(2026, 12, 5, 21)


def test_a_cron_that_never_matches_has_no_next_start() -> None:
    never = Recurring(cron=CronSchedule.parse("0 0 31 2 *"), duration=timedelta(1), zone=BERLIN)
    assert never.next_start(after=utc(2026, 1, 1)) is None
    leap = Recurring(cron=CronSchedule.parse("0 0 29 2 *"), duration=timedelta(1), zone=BERLIN)
    assert leap.next_start(after=utc(2026, 1, 1)) == utc(2028, 2, 28, 23)


@pytest.mark.parametrize(
    ("text", "minutes", "hours", "weekdays"),
    [
        ("*/15 * * * *", {0, 15, 30, 45}, set(range(24)), set(range(7))),
        ("5,10-12 1-5/2 * * 1-5", {5, 10, 11, 12}, {1, 3, 5}, {1, 2, 3, 4, 5}),
        ("50/5 0 * * 7", {50, 55}, {0}, {0}),
    ],
)
def test_cron_fields(text: str, minutes: set[int], hours: set[int], weekdays: set[int]) -> None:
    cron = CronSchedule.parse(text)
    assert (cron.minutes, cron.hours, cron.weekdays) == (minutes, hours, weekdays)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    cron = CronSchedule.parse("0 0 1 * 1")  # the 1st, and every Monday
    assert cron.matches_day(datetime(2026, 11, 1).date())  # a Sunday, the 1st
    assert cron.matches_day(datetime(2026, 11, 2).date())  # a Monday
    assert not cron.matches_day(datetime(2026, 11, 3).date())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0 * * * *", "5 fields"),
        ("0 0 * *", "5 fields"),
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day of week"),
        ("*/0 * * * *", "minute"),
        ("5-1 * * * *", "minute"),
        ("a * * * *", "minute"),
    ],
)
def test_bad_crons_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule.parse(text)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", ""])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_time_zone(name)


def test_one_off_window() -> None:
    window = OneOff(start=utc(2026, 11, 1, 10), end=utc(2026, 11, 1, 11))
    assert window.periods(since=utc(2026, 11, 1), until=utc(2026, 11, 2)) == [
        (window.start, window.end)
    ]
    assert window.periods(since=utc(2026, 11, 1, 11), until=utc(2026, 11, 2)) == []
    assert window.next_start(after=utc(2026, 11, 1)) == window.start
    assert window.next_start(after=window.start) is None
    assert active_period(window, at=window.start) == (window.start, window.end)
