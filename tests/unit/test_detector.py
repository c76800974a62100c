from datetime import UTC, datetime, timedelta

from downtime_operator.domain.detector import Detector, Opened, Resolved, StillDown
from downtime_operator.domain.models import CheckResult, MonitorState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def check(second: int, *, ok: bool) -> CheckResult:
    return CheckResult(
        at=T0 + timedelta(seconds=second),
        ok=ok,
        status_code=200 if ok else 503,
        error=None if ok else "HTTP 503",
    )


def test_opens_after_threshold_with_first_failure_as_start() -> None:
    detector = Detector(failure_threshold=3, success_threshold=1)
    assert detector.observe(check(0, ok=True)) is None
    assert detector.observe(check(10, ok=False)) is None
    assert detector.observe(check(20, ok=False)) is None
    opened = detector.observe(check(30, ok=False))
    assert isinstance(opened, Opened)
    assert opened.started_at == T0 + timedelta(seconds=10)
    assert opened.detected_at == T0 + timedelta(seconds=30)
    assert opened.failed_checks == 3
    assert detector.state is MonitorState.DOWN


def test_flapping_below_threshold_opens_nothing() -> None:
    detector = Detector(failure_threshold=3, success_threshold=1)
    results = [detector.observe(check(i, ok=i % 3 != 0)) for i in range(1, 30)]
    assert all(r is None for r in results)
    assert detector.state is MonitorState.UP


def test_a_monitor_that_never_answered_well_is_unknown_until_it_does_or_goes_down() -> None:
    detector = Detector(failure_threshold=3, success_threshold=1)
    assert detector.state is MonitorState.UNKNOWN
    detector.observe(check(0, ok=False))
    detector.observe(check(10, ok=False))
    assert detector.state is MonitorState.UNKNOWN  # not Up: nothing has shown it up
    detector.observe(check(20, ok=True))
    assert detector.state is MonitorState.UP
    detector.observe(check(30, ok=False))
    assert detector.state is MonitorState.UP  # below the threshold a known-Up monitor stays Up


def test_resolution_ends_at_first_success_of_the_resolving_streak() -> None:
    detector = Detector(failure_threshold=1, success_threshold=3)
    assert isinstance(detector.observe(check(0, ok=False)), Opened)
    assert detector.observe(check(1, ok=True)) is None
    assert isinstance(detector.observe(check(2, ok=False)), StillDown)
    assert detector.observe(check(3, ok=True)) is None
    assert detector.observe(check(4, ok=True)) is None
    resolved = detector.observe(check(5, ok=True))
    assert resolved == Resolved(ended_at=T0 + timedelta(seconds=3))
    assert detector.state is MonitorState.UP


def test_a_new_outage_after_resolution_is_a_new_incident() -> None:
    detector = Detector(failure_threshold=1, success_threshold=1)
    assert isinstance(detector.observe(check(0, ok=False)), Opened)
    assert isinstance(detector.observe(check(1, ok=True)), Resolved)
    opened = detector.observe(check(2, ok=False))
    assert isinstance(opened, Opened)
    assert opened.started_at == T0 + timedelta(seconds=2)


def test_resuming_continues_the_reloaded_incident() -> None:
    detector = Detector.resuming(
        failure_threshold=3, success_threshold=1, started_at=T0, failed_checks=5
    )
    down = detector.observe(check(60, ok=False))
    assert isinstance(down, StillDown)
    assert down.failed_checks == 6
    assert detector.observe(check(70, ok=True)) == Resolved(ended_at=T0 + timedelta(seconds=70))


def test_retry_interval_applies_while_failing() -> None:
    detector = Detector(failure_threshold=3, success_threshold=1)
    interval, retry = timedelta(seconds=60), timedelta(seconds=10)
    detector.observe(check(0, ok=True))
    assert detector.next_delay(interval=interval, retry_interval=retry) == interval
    detector.observe(check(60, ok=False))
    assert detector.next_delay(interval=interval, retry_interval=retry) == retry


def test_only_the_check_that_would_open_an_incident_is_worth_describing() -> None:
    detector = Detector(failure_threshold=3, success_threshold=1)
    worth: list[bool] = []
    for second, ok in [(0, True), (10, False), (20, False), (30, False), (40, False), (50, True)]:
        worth.append(detector.opens_on_failure)
        detector.observe(check(second, ok=ok))
    # Asked before the third failure of the streak only: not while healthy, not while down.
    assert worth == [False, False, False, True, False, False]
    assert Detector(failure_threshold=1, success_threshold=1).opens_on_failure
