"""A monitor's recent checks, kept compactly for the metrics snapshot of its next incident.

Every runner keeps one, and one process runs up to 10,000 runners, so a check costs a few bytes
in arrays here rather than a ``CheckResult`` object (a few hundred bytes with its datetime).
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections import deque
from datetime import UTC, datetime

from downtime_operator.domain.evidence import (
    CHECKS_BEFORE,
    LATENCY_WINDOW,
    SAMPLES_DURING,
    CheckSample,
    ChecksDuring,
    MetricsSnapshot,
    detection_snapshot,
    sample_at,
)
from downtime_operator.domain.models import CheckResult

MAX_CHECKS = 120
"""Ten minutes of checks down to a 5 s interval; shorter intervals keep a shorter window."""
KEPT_SECONDS = LATENCY_WINDOW.total_seconds() + 60
"""The latency window plus a failing streak's usual length (the streak is not "before")."""
ERRORS_KEPT = 2 * CHECKS_BEFORE


class CheckHistory:
    """The last checks of one monitor: time, outcome, status code, latency, and recent errors.

    Memory: 16 bytes per check (a float64 time, a float32 latency, an int32 of status code and
    outcome) in three arrays, plus about 400 bytes of objects and the arrays' spare room. The
    arrays grow until they hold ``KEPT_SECONDS`` of checks and ``CHECKS_BEFORE`` checks before
    the current failing streak, up to ``MAX_CHECKS``, then the oldest check is overwritten:
    measured (``tests/unit/test_evidence.py``) 0.7 KiB per monitor at a 60 s interval (20
    checks), 1.5 KiB at 10 s (66), 2.4 KiB at 5 s or less or after a long outage (120; a
    streak longer than 100 checks leaves fewer before it): 15 MiB for 10,000 monitors at 10 s.
    Error texts are kept only for failed checks (the last ``ERRORS_KEPT``) and dropped once
    their checks are: a healthy monitor keeps none. Recording a check writes three array slots
    and nothing else.
    """

    __slots__ = ("_codes", "_errors", "_failing", "_head", "_latencies", "_times")

    def __init__(self) -> None:
        self._times = array("d")
        self._latencies = array("f")
        self._codes = array("i")
        """``status_code << 1 | ok`` (status 0: no answer)."""
        self._head = 0
        """The oldest check's slot: the next one to overwrite once the arrays stop growing."""
        self._errors: deque[tuple[float, str | None]] | None = None
        self._failing = 0
        """Consecutive failed checks at the newest end: the streak is kept beside the
        ``CHECKS_BEFORE`` checks before it."""

    def __len__(self) -> int:
        return len(self._times)

    def record(self, result: CheckResult) -> None:
        at = result.at.timestamp()
        latency = math.nan if result.latency_ms is None else result.latency_ms
        code = (result.status_code or 0) << 1 | result.ok
        self._failing = 0 if result.ok else self._failing + 1
        times, head = self._times, self._head
        size = len(times)
        # Grow while short of the checks before the failing streak, or of KEPT_SECONDS.
        short = size < CHECKS_BEFORE + self._failing or times[head] > at - KEPT_SECONDS
        if size < MAX_CHECKS and short:
            # Inserted just before the oldest, it is the newest in ring order.
            times.insert(head, at)
            self._latencies.insert(head, latency)
            self._codes.insert(head, code)
            self._head = (head + 1) % (size + 1)
        else:
            times[head] = at
            self._latencies[head] = latency
            self._codes[head] = code
            self._head = (head + 1) % size
        if not result.ok:
            if self._errors is None:
                self._errors = deque(maxlen=ERRORS_KEPT)
            self._errors.append((at, result.error))
        if self._errors is not None:
            self._forget_errors_before(times[self._head])

    def _forget_errors_before(self, oldest: float) -> None:
        errors = self._errors
        assert errors is not None
        while errors and errors[0][0] < oldest:
            errors.popleft()
        if not errors:
            self._errors = None

    def samples(self) -> list[CheckSample]:
        """Every kept check, oldest first."""
        errors = dict(self._errors or ())
        size = len(self._times)
        return [
            self._sample(slot, errors)
            for slot in itertools.chain(range(self._head, size), range(self._head))
        ]

    def _sample(self, slot: int, errors: dict[float, str | None]) -> CheckSample:
        at, latency, code = self._times[slot], self._latencies[slot], self._codes[slot]
        return sample_at(
            at=datetime.fromtimestamp(at, UTC),
            ok=bool(code & 1),
            status_code=(code >> 1) or None,
            latency_ms=None if math.isnan(latency) else latency,
            error=errors.get(at),
        )

    def at_detection(
        self, *, started_at: datetime, failed_checks: int
    ) -> tuple[MetricsSnapshot, IncidentChecks]:
        """The snapshot of an incident opening now, and its checks so far to count on with.

        ``failed_checks`` (the failing streak) may be longer than the history kept; the checks
        it no longer holds are counted, not shown.
        """
        samples = self.samples()
        during = IncidentChecks()
        for sample in samples:
            if sample.at >= started_at:
                during.add(sample)
        during.count_unseen(failures=failed_checks)
        snapshot = detection_snapshot(samples, started_at=started_at, during=during.summary())
        return snapshot, during


class IncidentChecks:
    """The checks of one open incident: all counted, the first and last ``SAMPLES_DURING`` kept.

    Memory: about 150 bytes per kept check (a ``CheckSample`` with its check's datetime and
    latency; error texts are interned), so about 6 KiB per open incident, 11 KiB with its
    detection snapshot (measured in ``tests/unit/test_evidence.py``), and nothing for a monitor
    without one.
    """

    __slots__ = ("_first", "_last", "checks", "failures")

    def __init__(self, during: ChecksDuring | None = None) -> None:
        self.checks = 0 if during is None else during.checks
        self.failures = 0 if during is None else during.failures
        self._first: list[CheckSample] = [] if during is None else list(during.first)
        self._last: deque[CheckSample] = deque(
            () if during is None else during.last, maxlen=SAMPLES_DURING
        )

    @classmethod
    def resuming(cls, snapshot: MetricsSnapshot | None, *, failed_checks: int) -> IncidentChecks:
        """Carry on counting an incident reloaded after a restart, from its stored snapshot."""
        checks = cls(None if snapshot is None else snapshot.during)
        checks.count_unseen(failures=failed_checks)
        return checks

    def add_result(self, result: CheckResult) -> None:
        self.add(
            sample_at(
                at=result.at,
                ok=result.ok,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error,
            )
        )

    def add(self, sample: CheckSample) -> None:
        self.checks += 1
        if not sample.ok:
            self.failures += 1
        if len(self._first) < SAMPLES_DURING:
            self._first.append(sample)
        else:
            self._last.append(sample)

    def count_unseen(self, *, failures: int) -> None:
        """Count failed checks known only by number: a streak longer than the history, or
        those after the snapshot a restarted process reloaded (the incident's
        ``failed_checks`` is the count of its failed checks)."""
        unseen = failures - self.failures
        if unseen > 0:
            self.checks += unseen
            self.failures += unseen

    def summary(self) -> ChecksDuring:
        return ChecksDuring(
            checks=self.checks,
            failures=self.failures,
            first=tuple(self._first),
            last=tuple(self._last),
        )
