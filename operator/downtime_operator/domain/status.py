"""The HealthMonitor ``status`` we want Kubernetes to show, and when it is worth writing.

Writing status on every check would cost one API request per check per monitor. The rule:
write when anything but ``lastCheck`` changed; refresh ``lastCheck`` alone at most once per sync
period. So a healthy monitor checked every second costs about one PATCH a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from downtime_operator.domain.models import CheckResult, MonitorState
from downtime_operator.domain.slo import Timeline


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def last_check_view(result: CheckResult) -> dict[str, Any]:
    view: dict[str, Any] = {"time": _iso(result.at), "ok": result.ok}
    if result.status_code is not None:
        view["statusCode"] = result.status_code
    if result.latency_ms is not None:
        view["latencyMs"] = round(result.latency_ms, 1)
    view["error"] = result.error
    return view


@dataclass(frozen=True, kw_only=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class StatusFacts:
    """Everything except lastCheck: a change here is always written."""

    state: MonitorState
    consecutive_failures: int
    current_incident: str | None
    observed_generation: int | None
    conditions: tuple[Condition, ...] = ()
    shard: int | None = None
    """The shard checking the monitor, when the replicas split the monitors."""


@dataclass(frozen=True, kw_only=True)
class StatusPatch:
    body: dict[str, Any]
    urgent: bool
    """It changes what ``kubectl get`` shows (state, incident, conditions, generation): sent at
    once, ahead of the periodic refreshes, which may wait for the write budget."""


def _shown(facts: StatusFacts) -> tuple[object, ...]:
    return (facts.state, facts.current_incident, facts.conditions, facts.observed_generation)


@dataclass(kw_only=True)
class StatusSync:
    sync_period: timedelta
    written: StatusFacts | None = None
    transition_time: datetime | None = None
    last_check_written_at: datetime | None = None

    def periodic_due(self, now: datetime) -> bool:
        """Whether lastCheck (and uptime) may be refreshed now."""
        return (
            self.last_check_written_at is None
            or now - self.last_check_written_at >= self.sync_period
        )

    def patch_for(
        self,
        facts: StatusFacts,
        *,
        last_check: CheckResult | None,
        now: datetime,
        uptime: dict[str, float] | None = None,
        slo: dict[str, object] | None = None,
    ) -> StatusPatch | None:
        """The status patch to send now, or None when nothing is worth a request.

        ``slo`` rides with ``uptime``: both are refreshed once per sync period."""
        facts_changed = facts != self.written
        urgent = self.written is None or _shown(facts) != _shown(self.written)
        last_check_due = last_check is not None and self.periodic_due(now)
        if not facts_changed and not last_check_due and uptime is None:
            return None
        if self.written is None or facts.state != self.written.state:
            self.transition_time = now
        patch: dict[str, Any] = {
            "state": facts.state.value,
            "consecutiveFailures": facts.consecutive_failures,
            "currentIncident": facts.current_incident,
            "conditions": [
                _condition_view(c, now, facts.observed_generation) for c in facts.conditions
            ],
        }
        if facts.shard is not None:
            patch["shard"] = facts.shard
        if self.transition_time is not None:
            patch["lastTransitionTime"] = _iso(self.transition_time)
        if facts.observed_generation is not None:
            patch["observedGeneration"] = facts.observed_generation
        if last_check is not None and last_check_due:
            patch["lastCheck"] = last_check_view(last_check)
            self.last_check_written_at = now
        elif last_check is not None:
            patch["lastCheck"] = last_check_view(last_check)
        if uptime is not None:
            patch["uptime"] = uptime
        if slo is not None:
            patch["slo"] = slo
        self.written = facts
        return StatusPatch(body=patch, urgent=urgent)

    def forget(self) -> None:
        """After a failed write, the next call must send everything again."""
        self.written = None
        self.last_check_written_at = None


def _condition_view(condition: Condition, now: datetime, generation: int | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "lastTransitionTime": _iso(now),
    }
    if generation is not None:
        view["observedGeneration"] = generation
    return view


UPTIME_WINDOWS = {"h24": timedelta(hours=24), "d7": timedelta(days=7), "d30": timedelta(days=30)}


def uptime_percent(*, downtime_seconds: float, window: timedelta) -> float:
    """Share of the window not spent in incidents, as a percentage with 3 decimals.

    An empty window (a monitor created this instant) had no downtime: 100.
    """
    seconds = window.total_seconds()
    if seconds <= 0:
        return 100.0
    return round(max(0.0, 100.0 * (1.0 - downtime_seconds / seconds)), 3)


def uptime_windows(timeline: Timeline) -> dict[str, float]:
    """``status.uptime`` from one monitor's timeline (its incidents of the widest window).

    Each window starts no earlier than the monitor's creation: a monitor 9 s old that was down
    for 7 s reads 22 %, not 100 % of a day; incidents of an earlier monitor of the same name
    fall before it and are left out too. Maintenance is neither up nor down: it is left out of
    the window (issue 15).
    """
    windows = {}
    for key, window in UPTIME_WINDOWS.items():
        figures = timeline.figures(window)
        windows[key] = uptime_percent(
            downtime_seconds=figures.downtime_seconds,
            window=timedelta(seconds=figures.judged_seconds),
        )
    return windows
