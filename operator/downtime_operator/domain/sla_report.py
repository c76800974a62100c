"""The SLA report of a calendar month: per monitor with an objective, whether it was met.

A month is judged as a status SLO is (``domain.slo``): time-based availability over the part of
the month the monitor existed and was not in maintenance; the current month is judged up to
now. What customers receive as CSV is the same rows as the JSON, column for column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime

from downtime_operator.domain.models import MonitorRef
from downtime_operator.domain.slo import DEFAULT_WINDOW, SloSpec, Span, Timeline
from downtime_operator.domain.statistics import DowntimeSpan

MONTH_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"
"""Months from 1970 to 2999: every one has a next month a datetime can hold."""


def month_bounds(text: str) -> tuple[datetime, datetime]:
    """``"2026-11"`` -> the month's first instant and the next month's, in UTC."""
    if not re.fullmatch(MONTH_PATTERN, text):
        raise ValueError(f"invalid month {text!r}: expected YYYY-MM")
    year, month = int(text[:4]), int(text[5:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True, kw_only=True)
class MonitorObjective:
    """A monitor's ``spec.slo`` as written (``objective`` shown as given) and its creation."""

    objective: str
    slo: SloSpec
    created_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class SlaRow:
    namespace: str
    name: str
    objective: str
    availability_percent: float
    downtime_seconds: float
    maintenance_seconds: float
    incidents: int
    budget_remaining_seconds: float
    budget_remaining_percent: float
    met: bool


def sla_rows(
    *,
    since: datetime,
    until: datetime,
    objectives: Mapping[MonitorRef, MonitorObjective],
    incidents: Mapping[MonitorRef, Sequence[DowntimeSpan]],
    maintenance: Mapping[MonitorRef, Sequence[Span]],
) -> list[SlaRow]:
    """One row per monitor with an objective, by namespace and name; ``until`` is the end of
    the month or now, whichever comes first."""
    rows = []
    for monitor, wanted in sorted(objectives.items(), key=lambda item: str(item[0])):
        found = incidents.get(monitor, ())
        timeline = Timeline(
            incidents=found,
            maintenance=maintenance.get(monitor, ()),
            created_at=wanted.created_at,
            now=until,
        )
        figures = timeline.figures(until - since)
        # Incidents of an earlier monitor of the same name are not this one's.
        judged_from = since if wanted.created_at is None else max(since, wanted.created_at)
        allowed = float(1 - wanted.slo.target) * figures.judged_seconds
        remaining = allowed - figures.downtime_seconds
        rows.append(
            SlaRow(
                namespace=monitor.namespace,
                name=monitor.name,
                objective=wanted.objective,
                availability_percent=round(100 * (1 - figures.error_ratio), 6),
                downtime_seconds=round(figures.downtime_seconds, 6),
                maintenance_seconds=round(figures.maintenance_seconds, 6),
                incidents=sum(
                    1
                    for start, end in found
                    if start < until and (end is None or end > judged_from)
                ),
                budget_remaining_seconds=round(remaining, 6),
                budget_remaining_percent=round(100 * remaining / allowed, 6) if allowed else 100.0,
                met=remaining >= 0,
            )
        )
    return rows


def sla_csv(rows: Sequence[SlaRow]) -> str:
    """The rows as CSV with a header line, columns as the JSON's fields."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in fields(SlaRow)])
    for row in rows:
        writer.writerow(
            ["true" if v is True else "false" if v is False else v for v in astuple(row)]
        )
    return out.getvalue()


def monitor_objective(
    spec: Mapping[str, object], *, created_at: datetime | None
) -> MonitorObjective | None:
    """The objective of a HealthMonitor ``spec``; None without ``spec.slo`` or with one that
    cannot be read (the CRD refuses it; the monitor's status says so)."""
    slo = spec.get("slo")
    if not isinstance(slo, Mapping):
        return None
    objective, window = slo.get("objective"), slo.get("window", DEFAULT_WINDOW)
    if not isinstance(objective, str) or not isinstance(window, str):
        return None
    try:
        parsed = SloSpec.parse(objective=objective, window=window)
    except ValueError:
        return None
    return MonitorObjective(objective=objective, slo=parsed, created_at=created_at)
