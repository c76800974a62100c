"""Prometheus series around an outage, kept in the incident's ``metrics_snapshot.prometheus``.

A monitor lists PromQL queries (``spec.metrics``); when an incident opens they are planned with
the log capture's margins and run like it: once at detection (the window so far) and once
``after`` past the end (the final window, which replaces the first). The plan is stored with the
incident, so the final run needs neither the monitor nor the operator that saw the outage.

Pure shapes and arithmetic: the step that keeps a series within ``MAX_POINTS``, reading a
``query_range`` answer, and the JSON the stores keep. The values stay Prometheus' strings
(``"NaN"`` and ``"+Inf"`` are values too, and JSON has no number for them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from downtime_operator.domain.window import NS_PER_SECOND, CaptureWindow, format_unix_ns

MAX_POINTS = 300
"""Points per series at most: the step is the window divided by this, rounded up to a second."""
MAX_SERIES = 20
"""Series kept per query; a query matching more (a missing ``sum``) is marked truncated."""
MAX_QUERIES = 10
ERROR_MAX_CHARS = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricQuery:
    """One entry of ``spec.metrics``: a name the report shows and its PromQL."""

    name: str
    query: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsPlan:
    """What to ask Prometheus about one incident, fixed when it opened."""

    queries: tuple[MetricQuery, ...]
    before: timedelta
    after: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class DueMetricsCapture:
    """A claimed run: the incident's times and plan, and the due time it was claimed for."""

    incident_id: UUID
    started_at: datetime
    ended_at: datetime | None
    plan: MetricsPlan
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    labels: dict[str, str]
    values: tuple[tuple[float, str], ...]
    """``(unix seconds, value)`` oldest first, as Prometheus answers them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryOutcome:
    """One query's answer over the window, or why there is none."""

    name: str
    query: str
    series: tuple[Series, ...] = ()
    truncated: bool = False
    """More than ``MAX_SERIES`` series matched; the first ones (in label order) are kept."""
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsCapture:
    """``metrics_snapshot.prometheus``: every query of the plan over one window."""

    captured_at: datetime
    window_start: str
    """RFC 3339, like the log capture's window."""
    window_end: str
    step_seconds: int
    queries: tuple[QueryOutcome, ...] = ()
    error: str | None = None
    """Why nothing was asked (Prometheus is not configured); the queries are then empty."""
    final: bool = False
    """Whether the window reached ``after`` past the end: the last run of this incident."""


def query_step(window: CaptureWindow) -> int:
    """Whole seconds between points so the window has at most ``MAX_POINTS`` of them."""
    seconds = max(window.end_ns - window.start_ns, 0) / NS_PER_SECOND
    return max(math.ceil(seconds / MAX_POINTS), 1)


def parse_matrix(body: Mapping[str, Any]) -> tuple[tuple[Series, ...], bool]:
    """The series of a successful ``query_range`` answer and whether some were left out.

    Raises ValueError when the answer is not a matrix (a scalar query is not a range query's
    answer; anything else means the server is not Prometheus-compatible).
    """
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "matrix":
        raise ValueError("the answer is not a range vector (resultType matrix)")
    result = data.get("result")
    if not isinstance(result, list):
        raise ValueError("the answer has no result list")
    parsed: list[Series] = []
    for item in result:
        if not isinstance(item, Mapping):
            raise ValueError("a series is not an object")
        labels = item.get("metric") or {}
        values = item.get("values") or []
        parsed.append(
            Series(
                labels={str(k): str(v) for k, v in labels.items()},
                values=tuple((float(at), str(value)) for at, value in values),
            )
        )
    parsed.sort(key=lambda s: sorted(s.labels.items()))
    return tuple(parsed[:MAX_SERIES]), len(parsed) > MAX_SERIES


def failed_query(query: MetricQuery, error: str) -> QueryOutcome:
    return QueryOutcome(name=query.name, query=query.query, error=error[:ERROR_MAX_CHARS])


def capture_of(
    *,
    window: CaptureWindow,
    at: datetime,
    outcomes: Sequence[QueryOutcome] = (),
    error: str | None = None,
    final: bool,
) -> MetricsCapture:
    return MetricsCapture(
        captured_at=at,
        window_start=format_unix_ns(window.start_ns),
        window_end=format_unix_ns(window.end_ns),
        step_seconds=query_step(window),
        queries=tuple(outcomes),
        error=error,
        final=final,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySummary:
    """One query of a stored capture as the report lists it: the range of its values."""

    name: str
    query: str
    series: int
    lowest: float | None
    highest: float | None
    last: float | None
    """The newest point of the first series (label order)."""
    note: str
    """Prometheus' error, or that series were left out, or ``""``."""


def summarize(stored: Mapping[str, Any]) -> tuple[QuerySummary, ...]:
    """The stored ``metrics_snapshot.prometheus`` query by query; NaN and infinities are left
    out of the range (they are not a level the endpoint was at)."""
    summaries = []
    for item in stored.get("queries") or ():
        series = item.get("series") or []
        numbers = [
            value
            for entry in series
            for _, text in entry.get("values") or ()
            if math.isfinite(value := _number(text))
        ]
        first = (series[0].get("values") or []) if series else []
        last = _number(first[-1][1]) if first else math.nan
        note = item.get("error") or ("more series matched" if item.get("truncated") else "")
        summaries.append(
            QuerySummary(
                name=str(item.get("name")),
                query=str(item.get("query")),
                series=len(series),
                lowest=min(numbers, default=None),
                highest=max(numbers, default=None),
                last=last if math.isfinite(last) else None,
                note=str(note),
            )
        )
    return tuple(summaries)


def _number(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan


# -- JSON, as the stores keep them ---------------------------------------------------------------

_QUERIES: TypeAdapter[tuple[MetricQuery, ...]] = TypeAdapter(tuple[MetricQuery, ...])
_CAPTURE: TypeAdapter[MetricsCapture] = TypeAdapter(MetricsCapture)


def plan_json(plan: MetricsPlan) -> dict[str, Any]:
    """Margins in seconds: the stores compute the final run's due time from ``after_seconds``."""
    return {
        "queries": _QUERIES.dump_python(plan.queries, mode="json"),
        "before_seconds": plan.before.total_seconds(),
        "after_seconds": plan.after.total_seconds(),
    }


def plan_from_json(text: str | None) -> MetricsPlan | None:
    """The stored plan; None when absent or not in this shape."""
    if text is None:
        return None
    try:
        stored = json.loads(text)
        return MetricsPlan(
            queries=_QUERIES.validate_python(stored["queries"]),
            before=timedelta(seconds=float(stored["before_seconds"])),
            after=timedelta(seconds=float(stored["after_seconds"])),
        )
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def capture_json(capture: MetricsCapture) -> dict[str, Any]:
    return _CAPTURE.dump_python(capture, mode="json")  # type: ignore[no-any-return]
