"""Consecutive-check thresholds turned into incident transitions.

The detector is a plain state machine fed one CheckResult at a time. It never reads a clock:
every time it reports comes from the checks themselves, so ``started_at`` is the first failed
check of the streak and ``ended_at`` the first successful check of the streak that resolved it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from downtime_operator.domain.models import CheckResult, MonitorState


@dataclass(frozen=True, kw_only=True)
class Opened:
    started_at: datetime
    detected_at: datetime
    first_failure: CheckResult
    last_failure: CheckResult
    failed_checks: int


@dataclass(frozen=True, kw_only=True)
class StillDown:
    last_failure: CheckResult
    failed_checks: int


@dataclass(frozen=True, kw_only=True)
class Resolved:
    ended_at: datetime


Transition = Opened | StillDown | Resolved | None


@dataclass(kw_only=True)
class Detector:
    failure_threshold: int
    success_threshold: int
    incident_open: bool = False
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    failed_checks: int = 0
    streak_started_at: datetime | None = None
    first_failure: CheckResult | None = None
    recovery_started_at: datetime | None = None
    last_result: CheckResult | None = None
    ever_succeeded: bool = False

    @classmethod
    def resuming(
        cls,
        *,
        failure_threshold: int,
        success_threshold: int,
        started_at: datetime,
        failed_checks: int,
    ) -> Detector:
        """A detector that continues an incident reloaded after a restart.

        The outage stays one incident: further failures extend it, and only a recovery streak
        of ``success_threshold`` checks resolves it.
        """
        return cls(
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
            incident_open=True,
            consecutive_failures=max(failed_checks, failure_threshold),
            failed_checks=failed_checks,
            streak_started_at=started_at,
        )

    @property
    def state(self) -> MonitorState:
        # Failures below the threshold keep a monitor that was Up "Up" (no flapping), but one
        # that has never answered well is not shown as Up on the strength of nothing.
        if self.incident_open:
            return MonitorState.DOWN
        if not self.ever_succeeded:
            return MonitorState.UNKNOWN
        return MonitorState.UP

    @property
    def failing(self) -> bool:
        """True while the latest check failed or an incident is open: re-check sooner."""
        return self.incident_open or (self.last_result is not None and not self.last_result.ok)

    @property
    def opens_on_failure(self) -> bool:
        """True when a failure of the next check would open an incident."""
        return not self.incident_open and self.consecutive_failures + 1 >= self.failure_threshold

    def observe(self, result: CheckResult) -> Transition:
        self.last_result = result
        if result.ok:
            return self._on_success(result)
        return self._on_failure(result)

    def _on_failure(self, result: CheckResult) -> Transition:
        self.consecutive_successes = 0
        self.recovery_started_at = None
        self.consecutive_failures += 1
        if self.consecutive_failures == 1:
            self.streak_started_at = result.at
            self.first_failure = result
        if self.incident_open:
            self.failed_checks += 1
            return StillDown(last_failure=result, failed_checks=self.failed_checks)
        if self.consecutive_failures >= self.failure_threshold:
            assert self.streak_started_at is not None
            self.incident_open = True
            self.failed_checks = self.consecutive_failures
            return Opened(
                started_at=self.streak_started_at,
                detected_at=result.at,
                first_failure=self.first_failure or result,
                last_failure=result,
                failed_checks=self.failed_checks,
            )
        return None

    def _on_success(self, result: CheckResult) -> Transition:
        self.ever_succeeded = True
        if not self.incident_open:
            self.consecutive_failures = 0
            self.streak_started_at = None
            self.first_failure = None
            return None
        self.consecutive_successes += 1
        if self.consecutive_successes == 1:
            self.recovery_started_at = result.at
        if self.consecutive_successes < self.success_threshold:
            return None
        ended_at = self.recovery_started_at or result.at
        self.incident_open = False
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.failed_checks = 0
        self.streak_started_at = None
        self.first_failure = None
        self.recovery_started_at = None
        return Resolved(ended_at=ended_at)

    def next_delay(self, *, interval: timedelta, retry_interval: timedelta) -> timedelta:
        """After a failure (or while down) re-check at ``retryInterval`` so detection is fast."""
        if self.failing:
            return min(interval, retry_interval)
        return interval
