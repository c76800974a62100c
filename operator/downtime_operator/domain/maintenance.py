"""Maintenance windows: one-off ``start``/``end``, or a 5-field cron + duration in a time zone.

A recurring window starts at the cron's local wall-clock times in its IANA time zone, and lasts
``duration`` of real (elapsed) time, so a one-hour window is one hour long on a DST day too.

Two local times need a rule, as the clock jumps twice a year:

- **A start that does not exist** (spring forward: ``02:30`` in Europe/Berlin on 2026-03-29,
  when 02:00 CET jumps to 03:00 CEST) is read with the offset in force before the jump, which
  moves it forward by the jump: the window opens at 03:30 CEST (01:30 UTC), the instant the
  missed start would have been had the clock not jumped. It is not skipped: a nightly
  maintenance still happens that night. (This is what Python's ``fold=0`` gives, and what cron
  daemons do with jobs in the skipped hour.)
- **A start that occurs twice** (fall back: ``02:30`` on 2026-10-25 comes once in CEST, once
  in CET) opens the window once, at the first occurrence (02:30 CEST, 00:30 UTC).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from downtime_operator.domain.durations import parse_duration

_T = TypeVar("_T")

CRON_FIELDS = 5
_FIELD = re.compile(r"^(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?$")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")
SEARCH_DAYS = 366 * 8
"""How far ahead the next start is looked for: ``0 0 29 2 *`` recurs within 8 years."""

Period = tuple[datetime, datetime]
"""An actual maintenance period ``[start, end)`` in UTC."""


def _parse_field(text: str, index: int) -> frozenset[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        match = _FIELD.fullmatch(part)
        if match is None:
            raise ValueError(f"invalid cron {_NAMES[index]} {part!r}")
        base, _, step_text = match.group(1), match.group(2), match.group(3)
        step = int(step_text[1:]) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(x) for x in base.split("-"))
        else:
            first = last = int(base)
            if step_text:  # "5/15" means from 5 to the end, every 15 (as in Vixie cron)
                last = high
        if not low <= first <= last <= high or step < 1:
            raise ValueError(f"cron {_NAMES[index]} {part!r} out of range {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    """The five fields as sets; day of week 0 and 7 are both Sunday.

    As in every cron, when both day of month and day of week are restricted (neither is ``*``)
    a day matches if either does.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        fields = text.split()
        if len(fields) != CRON_FIELDS:
            raise ValueError(f"cron {text!r} must have 5 fields, has {len(fields)}")
        minutes, hours, days, months, weekdays = (_parse_field(f, i) for i, f in enumerate(fields))
        return cls(
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=frozenset(d % 7 for d in weekdays),
            days_restricted=not fields[2].startswith("*"),
            weekdays_restricted=not fields[4].startswith("*"),
        )

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def times(self) -> list[time]:
        return [time(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]


def parse_time_zone(name: str) -> ZoneInfo:
    """An IANA zone; ValueError for an unknown one (or a path trying to leave the database)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local_start(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local start, by the module's rule for skipped and repeated times.

    ``fold=0`` gives both halves of the rule: the earlier of a repeated time, and for a skipped
    one the offset before the jump.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Recurring:
    cron: CronSchedule
    duration: timedelta
    zone: ZoneInfo

    def _starts_on(self, day: date) -> Iterator[datetime]:
        if self.cron.matches_day(day):
            for at in self.cron.times():
                yield local_start(day, at, self.zone)

    def periods(self, *, since: datetime, until: datetime) -> list[Period]:
        """The periods overlapping ``[since, until)``, unclipped, in order."""
        # One local day of margin either side: a UTC instant's local date differs by up to one.
        first = (since - self.duration).astimezone(self.zone).date() - timedelta(days=1)
        last = until.astimezone(self.zone).date() + timedelta(days=1)
        found = []
        day = first
        while day <= last:
            for start in self._starts_on(day):
                end = start + self.duration
                if start < until and end > since:
                    found.append((start, end))
            day += timedelta(days=1)
        return sorted(set(found))

    def next_start(self, *, after: datetime) -> datetime | None:
        """The first start strictly after ``after``; None if the cron never matches again."""
        day = after.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(SEARCH_DAYS):
            starts = sorted(s for s in self._starts_on(day) if s > after)
            if starts:
                return starts[0]
            day += timedelta(days=1)
        return None


@dataclass(frozen=True, kw_only=True)
class OneOff:
    start: datetime
    end: datetime

    def periods(self, *, since: datetime, until: datetime) -> list[Period]:
        return [(self.start, self.end)] if self.start < until and self.end > since else []

    def next_start(self, *, after: datetime) -> datetime | None:
        return self.start if self.start > after else None


Schedule = Recurring | OneOff


def active_period(schedule: Schedule, *, at: datetime) -> Period | None:
    """The period ``at`` falls in (the one ending last if they overlap), or None."""
    periods = schedule.periods(since=at, until=at + timedelta(microseconds=1))
    return max(periods, key=lambda p: p[1]) if periods else None


@dataclass(frozen=True, kw_only=True)
class Requirement:
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        inside = present and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside


@dataclass(frozen=True, kw_only=True)
class WindowSpec:
    """A MaintenanceWindow's ``spec``: which monitors (by name or by labels), when, and why."""

    monitors: frozenset[str] | None
    match_labels: Mapping[str, str]
    match_expressions: tuple[Requirement, ...]
    schedule: Schedule
    reason: str

    def applies_to(self, *, name: str, labels: Mapping[str, str]) -> bool:
        if self.monitors is not None:
            return name in self.monitors
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


class InvalidWindowError(ValueError):
    """The window cannot be used; the message names the field."""


def _field(path: str, parse: Callable[[], _T]) -> _T:
    try:
        return parse()
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidWindowError(f"spec.{path}: {exc}") from exc


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)


def _schedule(spec: Mapping[str, Any]) -> Schedule:
    if ("start" in spec) == ("cron" in spec):
        raise InvalidWindowError("spec: exactly one of spec.start and spec.cron must be set")
    if "cron" in spec:
        return Recurring(
            cron=_field("cron", lambda: CronSchedule.parse(spec["cron"])),
            duration=_field("duration", lambda: parse_duration(spec["duration"])),
            zone=_field("timeZone", lambda: parse_time_zone(spec.get("timeZone", "UTC"))),
        )
    start = _field("start", lambda: _instant(spec["start"]))
    end = _field("end", lambda: _instant(spec["end"]))
    if end <= start:
        raise InvalidWindowError("spec.end: must be after spec.start")
    return OneOff(start=start, end=end)


def parse_window_spec(spec: Mapping[str, Any]) -> WindowSpec:
    """The API server validates the same (crds/maintenancewindows.yaml); this is the second line
    for clusters where the CRD was edited, and for the ad-hoc windows of the admin API."""
    if ("monitors" in spec) == ("selector" in spec):
        raise InvalidWindowError("spec: exactly one of spec.selector and spec.monitors must be set")
    selector: Mapping[str, Any] = spec.get("selector") or {}
    return WindowSpec(
        monitors=frozenset(spec["monitors"]) if "monitors" in spec else None,
        match_labels=dict(selector.get("matchLabels") or {}),
        match_expressions=tuple(
            Requirement(key=e["key"], operator=e["operator"], values=frozenset(e.get("values", ())))
            for e in selector.get("matchExpressions") or ()
        ),
        schedule=_schedule(spec),
        reason=str(spec.get("reason", "")),
    )


def ad_hoc_window(
    *,
    monitors: Sequence[str] | None,
    match_labels: Mapping[str, str] | None,
    start: datetime,
    duration: timedelta,
    reason: str,
) -> tuple[str, dict[str, Any]]:
    """The name and ``spec`` of a one-off window starting now (``POST .../maintenance``).

    The name carries the start to the second and a few characters of its hash, so that two
    windows started in the same second for other monitors do not collide.
    """
    target: dict[str, Any] = (
        {"monitors": list(monitors)}
        if monitors is not None
        else {"selector": {"matchLabels": dict(match_labels or {})}}
    )
    spec = {
        **target,
        "start": start.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "end": (start + duration)
        .astimezone(UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "reason": reason,
    }
    digest = hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()[:6]
    return f"adhoc-{start.astimezone(UTC):%Y%m%d-%H%M%S}-{digest}", spec


def window_status(schedule: Schedule, *, now: datetime, monitors: int) -> dict[str, Any]:
    """A MaintenanceWindow's ``status`` (columns ACTIVE, NEXT, MONITORS) at ``now``; what is
    not there is null, so that a merge patch removes it."""

    def iso(moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    period = active_period(schedule, at=now)
    upcoming = schedule.next_start(after=now)
    return {
        "active": period is not None,
        "nextStart": None if upcoming is None else iso(upcoming),
        "monitors": monitors,
        "currentPeriod": None
        if period is None
        else {"start": iso(period[0]), "end": iso(period[1])},
    }
