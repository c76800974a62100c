"""The log capture of one incident: its plan, a run's result, and how the capture state moves.

The plan is fixed when the outage is detected and stored with the incident, so a restarted
operator can finish a capture without the monitor (which may have been edited or deleted since).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from downtime_operator.domain.analysis import LogAnalysis
from downtime_operator.domain.models import (
    Incident,
    LogCaptureSpec,
    LogCaptureState,
    LogStorage,
    MonitorSpec,
)
from downtime_operator.domain.prometheus import MetricsPlan
from downtime_operator.domain.window import CaptureWindow, format_unix_ns

DEFAULT_AFTER = timedelta(minutes=5)
ERROR_MAX_CHARS = 1024
"""A capture error (often Loki's plain-text body) is kept this long: enough to act on."""


@dataclass(frozen=True, kw_only=True)
class CapturePlan:
    enabled: bool
    query: str | None = None
    before: timedelta = timedelta(minutes=5)
    after: timedelta = DEFAULT_AFTER
    max_lines: int = 10000
    storage: LogStorage = LogStorage.AUTO
    disabled_reason: str | None = None


def plan_capture(spec: LogCaptureSpec, *, loki_configured: bool) -> CapturePlan:
    """The plan for a monitor's new incident; disabled, with the reason, when it cannot run.

    ``enabled`` defaults to "when Loki is configured" (docs/crds.md), and a monitor cannot turn
    capture on without Loki or without a query to run.
    """
    plan = CapturePlan(
        enabled=True,
        query=spec.query,
        before=spec.before,
        after=spec.after,
        max_lines=spec.max_lines,
        storage=spec.storage,
    )
    reason = None
    if spec.enabled is False:
        reason = "disabled by logCapture.enabled"
    elif not loki_configured:
        reason = "Loki is not configured"
    elif not spec.query:
        reason = "logCapture.query is not set"
    return plan if reason is None else replace(plan, enabled=False, disabled_reason=reason)


def plan_metrics(spec: MonitorSpec) -> MetricsPlan | None:
    """The Prometheus queries for a monitor's new incident, over the log capture's margins (one
    window for both, so a log line and a metric point of the same moment are both there); None
    when the monitor lists none."""
    if not spec.metrics:
        return None
    return MetricsPlan(
        queries=spec.metrics, before=spec.log_capture.before, after=spec.log_capture.after
    )


def state_at_resolution(state: LogCaptureState | None) -> LogCaptureState | None:
    """A capture that was planned becomes pending again at resolution: the final one is due."""
    if state in (LogCaptureState.PENDING, LogCaptureState.CAPTURED, LogCaptureState.FAILED):
        return LogCaptureState.PENDING
    return state


@dataclass(frozen=True, kw_only=True)
class LogQuery:
    """One capture's request to a log source."""

    query: str
    window: CaptureWindow
    max_lines: int


@dataclass(frozen=True, kw_only=True)
class CaptureResult:
    """The outcome of one capture run, as it is recorded."""

    state: LogCaptureState
    captured_at: datetime
    window: CaptureWindow | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    """Entries in their stored shape, in time order (captured runs only)."""
    available: int | None = None
    truncated: bool = False
    storage: LogStorage | None = None
    """DATABASE or FILE for a captured run."""
    analysis: LogAnalysis | None = None
    error: str | None = None


def failed(*, error: str, at: datetime, window: CaptureWindow | None = None) -> CaptureResult:
    return CaptureResult(
        state=LogCaptureState.FAILED, captured_at=at, window=window, error=error[:ERROR_MAX_CHARS]
    )


def disabled(*, reason: str | None, at: datetime) -> CaptureResult:
    return CaptureResult(state=LogCaptureState.DISABLED, captured_at=at, error=reason)


def capture_view(result: CaptureResult) -> dict[str, Any]:
    """The capture state as users see it (CR ``status.logs``, the API's capture answer).

    A captured run clears an earlier run's error (``None`` removes it in a merge patch); a failed
    run leaves the line count of whatever an earlier run stored, which is still there.
    """
    view: dict[str, Any] = {"state": result.state.value, "error": result.error}
    if result.window is not None:
        view["window"] = {
            "start": format_unix_ns(result.window.start_ns),
            "end": format_unix_ns(result.window.end_ns),
        }
    if result.state is LogCaptureState.CAPTURED:
        view["lines"] = len(result.records)
        view["truncated"] = result.truncated
        if result.storage is not None:
            view["storage"] = result.storage.value
    return view


@dataclass(frozen=True, kw_only=True)
class PendingCapture:
    """A capture that is due, claimed by this process, with what it needs to run."""

    incident: Incident
    plan: CapturePlan
    due_at: datetime
    file_path: str | None = None
    """The file an earlier capture wrote, which this one replaces."""


@dataclass(frozen=True, kw_only=True)
class StoredCapture:
    """An incident's capture as stored: plan, state and where the entries are."""

    incident: Incident
    plan: CapturePlan
    state: LogCaptureState | None
    due_at: datetime | None
    records: list[dict[str, Any]] | None
    """The entries when kept in the row (JSONB); None when in a file or not captured."""
    file_path: str | None
    analysis: dict[str, Any] | None
