"""A replica starting with many monitors checks each within its first interval, spread evenly."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.start_phase import first_check_delay, phase

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=10)


def ref(i: int) -> MonitorRef:
    return MonitorRef(namespace="bench", name=f"m-{i:05d}")


def existing(i: int, *, now: datetime) -> timedelta:
    """The first-check delay of monitor ``i``, created the day before the process started."""
    return first_check_delay(
        ref(i), interval=INTERVAL, created_at=START - timedelta(days=1), started_at=START, now=now
    )


def test_existing_monitors_are_spread_evenly_over_the_first_interval() -> None:
    delays = [existing(i, now=START) for i in range(10_000)]
    assert all(timedelta(0) <= d < INTERVAL for d in delays)
    per_second = Counter(int(d.total_seconds()) for d in delays)
    assert sorted(per_second) == list(range(10))
    assert all(900 <= n <= 1100 for n in per_second.values())  # ~1,000 a second, no burst


def test_the_phase_is_stable() -> None:
    assert phase(ref(7), INTERVAL) == phase(ref(7), INTERVAL)


def test_runners_starting_late_keep_their_phases_instead_of_checking_together() -> None:
    # The runners start 4.5 s into the first interval (a long start-up listing): those whose
    # phase has passed wait for its next turn, so the checks stay ~1,000 a second.
    late = START + timedelta(seconds=4.5)
    first_checks = [late + existing(i, now=late) for i in range(10_000)]
    assert all(late <= at < late + INTERVAL for at in first_checks)
    per_second = Counter(int((at - START).total_seconds()) % 10 for at in first_checks)
    assert all(900 <= n <= 1100 for n in per_second.values())
    just_missed = START + phase(ref(7), INTERVAL) + timedelta(milliseconds=1)
    assert existing(7, now=just_missed) == INTERVAL - timedelta(milliseconds=1)


def test_a_monitor_created_while_the_process_runs_is_checked_at_once() -> None:
    for created_at in (START, START + timedelta(seconds=1), None):
        delay = first_check_delay(
            ref(1), interval=INTERVAL, created_at=created_at, started_at=START, now=START
        )
        assert delay == timedelta(0)
