"""The incident's own evidence: percentiles, the bounded check history, the snapshot's parts."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from downtime_operator.domain.check_history import MAX_CHECKS, CheckHistory, IncidentChecks
from downtime_operator.domain.evidence import (
    HEADER_VALUE_CHARS,
    Certificate,
    CheckSample,
    ChecksDuring,
    MetricsSnapshot,
    ServerInfo,
    SnapshotStage,
    detection_snapshot,
    latency_summary,
    percentile,
    resolution_snapshot,
    server_info_from_json,
    server_info_json,
    shown_headers,
    snapshot_from_json,
    snapshot_json,
)
from downtime_operator.domain.models import CheckResult

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ok(seconds: float, latency: float = 5.0) -> CheckResult:
    return CheckResult(at=at(seconds), ok=True, status_code=200, latency_ms=latency)


def failed(seconds: float, error: str = "HTTP 503 Service Unavailable") -> CheckResult:
    return CheckResult(at=at(seconds), ok=False, status_code=503, latency_ms=2.0, error=error)


def refused(seconds: float) -> CheckResult:
    return CheckResult(at=at(seconds), ok=False, error="connection refused")


def sample(seconds: float, latency: float | None = 5.0, *, good: bool = True) -> CheckSample:
    return CheckSample(at=at(seconds), ok=good, status_code=200, latency_ms=latency)


def history_of(*results: CheckResult) -> CheckHistory:
    history = CheckHistory()
    for result in results:
        history.record(result)
    return history


# -- percentiles -------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 0.50), percentile(values, 0.95)) == (10.0, 19.0)
    assert percentile([7.0], 0.95) == percentile([7.0], 0.50) == 7.0
    assert percentile([1.0, 2.0], 0.5) == 1.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_latency_summary_counts_the_answered_checks_of_the_window_only() -> None:
    started = at(1800)
    samples = [
        sample(1199, 1000.0),  # before the ten minutes
        *(sample(1200 + 30 * i, float(i + 1)) for i in range(20)),  # 1200 .. 1770
        sample(1790, None, good=False),  # no answer: no latency
        sample(1800, 999.0),  # the outage's first check is not "before"
    ]
    summary = latency_summary(samples, until=started)
    assert summary.window_seconds == 600.0
    assert summary.samples == 20
    assert summary.since == at(1200)
    assert (summary.p50_ms, summary.p95_ms) == (10.0, 19.0)
    empty = latency_summary([], until=started)
    assert (empty.samples, empty.since, empty.p50_ms, empty.p95_ms) == (0, None, None, None)


# -- the snapshot ------------------------------------------------------------------------------


def test_detection_snapshot_keeps_the_last_20_checks_before_the_outage() -> None:
    samples = [sample(60 * i) for i in range(30)] + [sample(1800, good=False)]
    during = ChecksDuring(checks=1, failures=1, first=(samples[-1],))
    snapshot = detection_snapshot(samples, started_at=at(1800), during=during)
    assert snapshot.stage is SnapshotStage.DETECTION
    assert [s.at for s in snapshot.checks_before] == [at(60 * i) for i in range(10, 30)]
    assert snapshot.latency_before.samples == 10  # 1200 .. 1740
    assert snapshot.during == during


def test_resolution_completes_the_detection_snapshot() -> None:
    before = (sample(0),)
    opened = detection_snapshot(
        before, started_at=at(60), during=ChecksDuring(checks=3, failures=3)
    )
    during = ChecksDuring(checks=40, failures=38)
    resolved = resolution_snapshot(opened, during=during, started_at=at(60))
    assert resolved.stage is SnapshotStage.RESOLUTION
    assert (resolved.checks_before, resolved.during) == (before, during)
    # An incident carried on from its DowntimeIncident alone: nothing known before it.
    unknown = resolution_snapshot(None, during=during, started_at=at(60))
    assert (unknown.checks_before, unknown.latency_before.samples) == ((), 0)
    assert unknown.during == during


def test_snapshot_and_server_info_round_trip_through_json() -> None:
    snapshot = MetricsSnapshot(
        stage=SnapshotStage.RESOLUTION,
        checks_before=(sample(0, 12.34), CheckSample(at=at(60), ok=False, error="reset")),
        latency_before=latency_summary([sample(0, 12.34)], until=at(120)),
        during=ChecksDuring(checks=2, failures=1, first=(sample(120, good=False), sample(130))),
    )
    info = ServerInfo(
        addresses=("127.0.0.1", "::1"),
        http_version="HTTP/1.1",
        certificate=Certificate(subject="CN=a", issuer="CN=b", not_after=at(86_400)),
        headers={"Server": "nginx", "Retry-After": "30"},
        operator_instance="downtime-operator-0",
        operator_version="0.1.0",
        problems=("certificate not read: no answer within 2s",),
    )
    stored = json.dumps(snapshot_json(snapshot))
    assert json.loads(stored)["checks_before"][0] == {
        "at": "2026-04-01T12:00:00Z",
        "ok": True,
        "status_code": 200,
        "latency_ms": 12.34,
        "error": None,
    }
    assert snapshot_from_json(stored) == snapshot
    assert server_info_from_json(json.dumps(server_info_json(info))) == info
    # Absent, or written in another shape (an older or hand-made value): nothing to show.
    assert snapshot_from_json(None) is None
    assert snapshot_from_json('{"latency_ms": 12.5}') is None
    assert server_info_from_json('["no"]') is None


def test_only_the_headers_that_name_the_server_are_kept() -> None:
    headers = [
        ("server", "nginx/1.27"),
        ("Via", "1.1 edge-a"),
        ("VIA", "1.1 edge-b"),
        ("X-Request-Id", "r" * 1000),
        ("Retry-After", "120"),
        ("Set-Cookie", "secret=1"),
        ("Authorization", "Bearer nope"),
    ]
    assert shown_headers(headers) == {
        "Server": "nginx/1.27",
        "Via": "1.1 edge-a, 1.1 edge-b",
        "X-Request-Id": "r" * HEADER_VALUE_CHARS,
        "Retry-After": "120",
    }


# -- the check history -------------------------------------------------------------------------


@pytest.mark.parametrize(("interval", "kept"), [(60, 20), (10, 66), (5, MAX_CHECKS), (1, 120)])
def test_the_history_is_bounded_by_count_and_time(interval: int, kept: int) -> None:
    history = history_of(*(ok(interval * i) for i in range(1000)))
    assert len(history) == kept
    samples = history.samples()
    assert [s.at for s in samples] == [at(interval * i) for i in range(1000 - kept, 1000)]


def test_samples_keep_outcome_status_latency_and_error() -> None:
    history = history_of(ok(0, 12.345), failed(60), refused(70), ok(80, 7.0))
    assert history.samples() == [
        CheckSample(at=at(0), ok=True, status_code=200, latency_ms=12.35),
        CheckSample(
            at=at(60),
            ok=False,
            status_code=503,
            latency_ms=2.0,
            error="HTTP 503 Service Unavailable",
        ),
        CheckSample(at=at(70), ok=False, error="connection refused"),
        CheckSample(at=at(80), ok=True, status_code=200, latency_ms=7.0),
    ]


def test_a_failing_streak_keeps_the_20_checks_before_it() -> None:
    """At a 60 s interval the history holds 20 checks; a streak at 10 s is kept beside them."""
    healthy = [ok(60 * i) for i in range(30)]
    streak = [failed(1800 + 10 * i) for i in range(3)]
    history = history_of(*healthy, *streak)
    snapshot, during = history.at_detection(started_at=at(1800), failed_checks=3)
    assert [s.at for s in snapshot.checks_before] == [at(60 * i) for i in range(10, 30)]
    assert (during.checks, during.failures) == (3, 3)
    assert [s.at for s in snapshot.during.first] == [at(1800), at(1810), at(1820)]
    assert all(s.error == "HTTP 503 Service Unavailable" for s in snapshot.during.first)


def test_a_streak_longer_than_the_history_is_counted_not_shown() -> None:
    history = history_of(*(refused(i) for i in range(500)))
    snapshot, during = history.at_detection(started_at=at(0), failed_checks=500)
    assert snapshot.checks_before == ()
    assert (during.checks, during.failures) == (500, 500)
    summary = during.summary()
    assert len(summary.first) + len(summary.last) == 40
    assert summary.first[0].at == at(380)  # the oldest kept, as the history's bound allows
    assert summary.last[-1].at == at(499)


def test_a_healthy_monitors_history_stays_small() -> None:
    """The docstring's cost: about 1.5 KiB per monitor at a 10 s interval, no error texts."""
    tracemalloc.start()
    try:
        histories = [history_of(*(ok(10 * i) for i in range(200))) for _ in range(200)]
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(histories) == 200
    assert size / len(histories) < 1.6 * 1024


def test_an_open_incidents_evidence_stays_small() -> None:
    """The docstring's cost: about 11 KiB per open incident, however long it lasts."""
    histories = [history_of(*(ok(60 * i) for i in range(40)), failed(2400)) for _ in range(50)]
    tracemalloc.start()
    try:
        kept = []
        for history in histories:
            snapshot, during = history.at_detection(started_at=at(2400), failed_checks=1)
            for i in range(1, 200):
                during.add_result(failed(2400 + 10 * i, error="connection" + " refused"))
            kept.append((snapshot, during))
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size / len(kept) < 12 * 1024


# -- the checks during an incident -------------------------------------------------------------


def test_incident_checks_keep_the_first_and_last_20() -> None:
    checks = IncidentChecks()
    for i in range(50):
        checks.add_result(failed(10 * i) if i % 5 else ok(10 * i))
    summary = checks.summary()
    assert (summary.checks, summary.failures) == (50, 40)
    assert [s.at for s in summary.first] == [at(10 * i) for i in range(20)]
    assert [s.at for s in summary.last] == [at(10 * i) for i in range(30, 50)]


def test_a_resumed_incident_counts_on_from_its_stored_snapshot() -> None:
    stored = detection_snapshot(
        (),
        started_at=at(0),
        during=ChecksDuring(checks=3, failures=3, first=(sample(0, good=False),)),
    )
    # 10 failed checks in all by the restart: 7 of them after the snapshot was written.
    checks = IncidentChecks.resuming(stored, failed_checks=10)
    checks.add_result(ok(200))
    summary = checks.summary()
    assert (summary.checks, summary.failures) == (11, 10)
    assert [s.at for s in summary.first] == [at(0), at(200)]
    fresh = IncidentChecks.resuming(None, failed_checks=4).summary()
    assert (fresh.checks, fresh.failures, fresh.first) == (4, 4, ())
