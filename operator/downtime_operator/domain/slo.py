"""Service level objectives over the incident record: availability, error budget, burn rates.

Availability is time-based: ``1 - downtime / judged``, where *judged* is the part of the window
the monitor existed and was not in maintenance, and *downtime* is the union of its incidents
inside the judged time. Time before the monitor was created is not judged at all, so a monitor
created yesterday is measured on one day and not credited with 29 quiet ones it never had.

The error budget is what the objective allows of the judged time, ``(1 - objective) * judged``;
what remains of it can go negative (the objective is missed). A burn rate is the error rate of
a recent window divided by the allowed one: 1 spends the budget exactly over the SLO window,
14.4 spends 2 % of a 30-day budget in an hour (Google SRE workbook, chapter 5).

Figures are computed in whole microseconds, as the statistics are, so that every store and the
brute-force tests agree to the last digit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from downtime_operator.domain.statistics import DowntimeSpan

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

OBJECTIVE_PATTERN = r"^[5-9][0-9](\.[0-9]{1,6})?$"
"""``spec.slo.objective``: a percentage from 50 to below 100 (100 leaves no budget to burn),
written so that a pattern alone, the same in the CRD, says it."""
WINDOW_PATTERN = r"^([1-9]|[1-8][0-9]|90)d$"
"""``spec.slo.window``: whole days from 1 to 90, the same pattern as the CRD's."""
DEFAULT_WINDOW = "30d"
LONGEST_WINDOW = timedelta(days=90)
"""The widest window an objective may judge, so the widest a status read must cover."""

STATUS_BURN_WINDOWS = {"h1": timedelta(hours=1), "h6": timedelta(hours=6), "d3": timedelta(days=3)}
"""The burn rates ``status.slo`` shows."""

Span = tuple[datetime, datetime]
"""A closed-open ``[start, end)`` interval of time."""
_Micros = tuple[int, int]


def parse_objective(text: str) -> Fraction:
    """``"99.9"`` -> 999/1000, exactly."""
    if not re.fullmatch(OBJECTIVE_PATTERN, text):
        raise ValueError(
            f"invalid objective {text!r}: expected a percentage from 50 to below 100, e.g. '99.9'"
        )
    return Fraction(Decimal(text)) / 100


def parse_window(text: str) -> timedelta:
    """``"30d"`` -> 30 days."""
    if not re.fullmatch(WINDOW_PATTERN, text):
        raise ValueError(f"invalid SLO window {text!r}: expected whole days from 1d to 90d")
    return timedelta(days=int(text[:-1]))


@dataclass(frozen=True, kw_only=True)
class SloSpec:
    """A monitor's objective: ``target`` is a ratio (0.999), ``window`` the judged period."""

    target: Fraction
    window: timedelta

    @classmethod
    def parse(cls, *, objective: str, window: str = DEFAULT_WINDOW) -> SloSpec:
        return cls(target=parse_objective(objective), window=parse_window(window))


@dataclass(frozen=True, kw_only=True)
class WindowFigures:
    """One window's seconds: judged (existing, not in maintenance) and down within them."""

    judged_seconds: float
    downtime_seconds: float
    maintenance_seconds: float

    @property
    def error_ratio(self) -> float:
        """Share of the judged time spent down; 0 when nothing was judged."""
        return self.downtime_seconds / self.judged_seconds if self.judged_seconds else 0.0


@dataclass(frozen=True, kw_only=True)
class SloFigures:
    """``status.slo`` of one monitor at one instant."""

    availability: float
    """Ratio 0..1 over the SLO window (1 when nothing was judged yet)."""
    budget_remaining_ratio: float
    """Share of the allowed downtime still unspent; negative once the objective is missed."""
    budget_remaining_seconds: float
    burn_rates: dict[str, float]
    window: WindowFigures

    def status_view(self) -> dict[str, object]:
        """As shown in ``status.slo`` (percentages with 3 decimals, like ``status.uptime``)."""
        return {
            "availability": round(100 * self.availability, 3),
            "budgetRemaining": round(100 * self.budget_remaining_ratio, 3),
            "budgetRemainingSeconds": round(self.budget_remaining_seconds, 3),
            "burnRates": {key: round(rate, 3) for key, rate in self.burn_rates.items()},
        }


def _to_micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _merged(spans: Iterable[_Micros]) -> list[_Micros]:
    """Overlapping or touching spans as one; empty ones dropped; sorted."""
    merged: list[_Micros] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _without(spans: Sequence[_Micros], removed: Sequence[_Micros]) -> list[_Micros]:
    """Merged ``spans`` minus merged ``removed``: downtime during maintenance is not counted."""
    result: list[_Micros] = []
    index = 0
    for start, end in spans:
        cursor = start
        while index < len(removed) and removed[index][1] <= cursor:
            index += 1
        probe = index
        while probe < len(removed) and removed[probe][0] < end:
            if removed[probe][0] > cursor:
                result.append((cursor, removed[probe][0]))
            cursor = max(cursor, removed[probe][1])
            probe += 1
        if cursor < end:
            result.append((cursor, end))
    return result


def _measure(spans: Sequence[_Micros], *, lo: int, hi: int) -> int:
    """Microseconds of merged ``spans`` inside ``[lo, hi)``."""
    return sum(max(0, min(end, hi) - max(start, lo)) for start, end in spans)


class Timeline:
    """One monitor's downtime and maintenance, merged once and then measured per window.

    ``created_at`` (None: unknown, judged from the window's start) bounds every window from
    below; open incidents run up to ``now``.
    """

    def __init__(
        self,
        *,
        incidents: Iterable[DowntimeSpan],
        maintenance: Iterable[Span],
        created_at: datetime | None,
        now: datetime,
    ) -> None:
        self._now = _to_micros(now)
        self._created = None if created_at is None else _to_micros(created_at)
        self._maintenance = _merged(
            (_to_micros(start), min(_to_micros(end), self._now)) for start, end in maintenance
        )
        down = _merged(
            (_to_micros(start), self._now if end is None else min(_to_micros(end), self._now))
            for start, end in incidents
        )
        self._down = _without(down, self._maintenance)

    def figures(self, window: timedelta) -> WindowFigures:
        """The window ending now."""
        lo = self._now - window // _MICROSECOND
        if self._created is not None:
            lo = max(lo, self._created)
        hi = self._now
        if hi <= lo:
            return WindowFigures(judged_seconds=0.0, downtime_seconds=0.0, maintenance_seconds=0.0)
        maintenance = _measure(self._maintenance, lo=lo, hi=hi)
        return WindowFigures(
            judged_seconds=(hi - lo - maintenance) / 1e6,
            downtime_seconds=_measure(self._down, lo=lo, hi=hi) / 1e6,
            maintenance_seconds=maintenance / 1e6,
        )

    def burn_rate(self, window: timedelta, *, target: Fraction) -> float:
        """The window's error rate over the allowed one (``1 - target``)."""
        return self.figures(window).error_ratio / float(1 - target)


def slo_figures(
    spec: SloSpec,
    *,
    timeline: Timeline,
    burn_windows: Mapping[str, timedelta] = STATUS_BURN_WINDOWS,
) -> SloFigures:
    """Availability and budget over ``spec.window``, burn rates over ``burn_windows``."""
    figures = timeline.figures(spec.window)
    allowed = float(1 - spec.target) * figures.judged_seconds
    remaining = allowed - figures.downtime_seconds
    return SloFigures(
        availability=1.0 - figures.error_ratio,
        budget_remaining_ratio=remaining / allowed if allowed else 1.0,
        budget_remaining_seconds=remaining,
        burn_rates={
            key: timeline.burn_rate(window, target=spec.target)
            for key, window in burn_windows.items()
        },
        window=figures,
    )
