"""Downtime statistics of a period, by definition: what every store's answer must equal.

PostgreSQL answers from rollups (``adapters.postgres.queries``); the SQLite file, small by
nature, answers with ``period_statistics`` over the incidents that overlap the period. Figures
are whole microseconds, as in PostgreSQL, so the two agree to the last digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

_MICROSECOND = timedelta(microseconds=1)
MICROS = 1_000_000


class MonitorDowntime(NamedTuple):
    """One monitor's share of a period: downtime is the union of its incidents' clipped spans.

    A tuple rather than a dataclass: a period reports every monitor (hundreds) on each call.
    """

    namespace: str
    name: str
    incidents: int
    downtime_seconds: float


@dataclass(frozen=True, kw_only=True)
class PeriodStatistics:
    """Incidents overlapping ``[since, until)``, each clipped to it (ongoing ones up to until).

    ``total_downtime_seconds`` adds incidents up (incident-seconds, as the seed did), while each
    monitor's ``downtime_seconds`` is the union of its incidents, so overlapping incidents of one
    monitor are not counted twice in its uptime.
    """

    since: datetime
    until: datetime
    total_incidents: int
    total_downtime_seconds: float
    by_severity: dict[str, int]
    by_status: dict[str, int]
    resolved_in_period: int
    mttr_seconds: float | None
    longest_incident_seconds: float
    monitors: list[MonitorDowntime] = field(default_factory=list)

    @classmethod
    def from_micros(
        cls,
        *,
        since: datetime,
        until: datetime,
        incidents: int,
        micros: int,
        by_severity: dict[str, int],
        by_status: dict[str, int],
        resolved: int,
        resolved_micros: int,
        longest_micros: int,
        monitors: list[MonitorDowntime],
    ) -> PeriodStatistics:
        """From whole-microsecond totals, as both stores count them."""
        return cls(
            since=since,
            until=until,
            total_incidents=incidents,
            total_downtime_seconds=micros / MICROS,
            by_severity=by_severity,
            by_status=by_status,
            resolved_in_period=resolved,
            mttr_seconds=resolved_micros / MICROS / resolved if resolved else None,
            longest_incident_seconds=longest_micros / MICROS,
            monitors=monitors,
        )


class IncidentSpan(NamedTuple):
    """What statistics need of one incident; ``name`` is None for rows without a monitor."""

    severity: str
    status: str
    namespace: str
    name: str | None
    started_at: datetime
    ended_at: datetime | None


DowntimeSpan = tuple[datetime, datetime | None]
"""``(started_at, ended_at)`` of one incident; ``None``: still open."""


def clip(span: DowntimeSpan, *, since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The part of an incident inside ``[since, until)``; an open one runs to ``until``. Empty
    (end at or before start) when they do not overlap."""
    started_at, ended_at = span
    return max(started_at, since), until if ended_at is None else min(ended_at, until)


def clipped_seconds(span: DowntimeSpan, *, since: datetime, until: datetime) -> float:
    """Seconds of ``[since, until)`` inside one incident."""
    start, end = clip(span, since=since, until=until)
    return max((end - start) / timedelta(seconds=1), 0.0)


def _micros(start: datetime, end: datetime) -> int:
    return max((end - start) // _MICROSECOND, 0)


def period_statistics(
    incidents: Iterable[IncidentSpan], *, since: datetime, until: datetime
) -> PeriodStatistics:
    """Statistics of ``[since, until)`` from the incidents; those outside it are skipped.

    An incident counts when it began before ``until`` and had not ended by ``since``; its
    downtime is clipped to the period (an ongoing one runs to ``until``). MTTR takes the whole
    duration of the incidents resolved by ``until``.
    """
    if until <= since:
        raise ValueError("until must be after since")
    total = resolved = 0
    micros = resolved_micros = longest = 0
    by_severity: dict[str, int] = {}
    by_status: dict[str, int] = {}
    spans: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for incident in incidents:
        if incident.started_at >= until or (
            incident.ended_at is not None and incident.ended_at <= since
        ):
            continue
        start, end = clip((incident.started_at, incident.ended_at), since=since, until=until)
        clipped = _micros(start, end)
        total += 1
        micros += clipped
        longest = max(longest, clipped)
        by_severity[incident.severity] = by_severity.get(incident.severity, 0) + 1
        by_status[incident.status] = by_status.get(incident.status, 0) + 1
        if (
            incident.status == "resolved"
            and incident.ended_at is not None
            and incident.ended_at <= until
        ):
            resolved += 1
            resolved_micros += _micros(incident.started_at, incident.ended_at)
        if incident.name is not None:
            spans.setdefault((incident.namespace, incident.name), []).append((start, end))
    return PeriodStatistics.from_micros(
        since=since,
        until=until,
        incidents=total,
        micros=micros,
        by_severity=by_severity,
        by_status=by_status,
        resolved=resolved,
        resolved_micros=resolved_micros,
        longest_micros=longest,
        monitors=[
            MonitorDowntime(namespace, name, len(found), _union_micros(found) / MICROS)
            for (namespace, name), found in sorted(spans.items())
        ],
    )


def _union_micros(spans: list[tuple[datetime, datetime]]) -> int:
    """Overlapping incidents of one monitor are one outage: count each instant once."""
    total = 0
    covered: datetime | None = None
    for start, end in sorted(spans):
        total += _micros(start if covered is None else max(start, covered), end)
        covered = end if covered is None else max(covered, end)
    return total


def seed_statistics(
    *,
    incidents: int,
    downtime_seconds: float,
    by_severity: dict[str, int],
    by_status: dict[str, int],
) -> dict[str, Any]:
    """The seed's ``get_incident_statistics`` answer, the same from every store."""
    return {
        "total_incidents": incidents,
        "total_downtime_seconds": downtime_seconds,
        "average_duration_seconds": downtime_seconds / incidents if incidents else 0.0,
        "by_severity": by_severity,
        "by_status": by_status,
    }
