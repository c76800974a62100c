"""Multi-window burn-rate alerts (Google SRE workbook, chapter 5), fired once per crossing.

A rule fires when both its long and its short window burn faster than its factor: the long one
says enough budget went, the short one that it is still going (so an alert stops soon after the
outage does, not an hour later). A rule is announced when it starts firing and again only after
it stopped: a monitor checked every second must not page every second.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta


class BurnSeverity(enum.StrEnum):
    PAGE = "page"
    TICKET = "ticket"


@dataclass(frozen=True, kw_only=True)
class BurnRule:
    name: str
    """Stable key of the rule (``page-1h``), remembered while it fires."""
    severity: BurnSeverity
    long_window: timedelta
    short_window: timedelta
    factor: float


_WORKBOOK_RULES = (
    ("page-1h", BurnSeverity.PAGE, timedelta(hours=1), timedelta(minutes=5)),
    ("page-6h", BurnSeverity.PAGE, timedelta(hours=6), timedelta(minutes=30)),
    ("ticket-3d", BurnSeverity.TICKET, timedelta(days=3), timedelta(hours=6)),
)
"""Name, severity, long and short window of each rule; the factors are settings."""


@dataclass(frozen=True, kw_only=True)
class BurnFactors:
    """The workbook's factors for a 30-day budget; the operator's settings may change them.

    ``time_scale`` shrinks every window (0.001: an hour lasts 3.6 s), so that tests can cross
    a threshold in seconds instead of hours.
    """

    page_fast: float = 14.4
    page_slow: float = 6.0
    ticket: float = 1.0
    time_scale: float = 1.0

    def rules(self) -> tuple[BurnRule, ...]:
        factors = {"page-1h": self.page_fast, "page-6h": self.page_slow, "ticket-3d": self.ticket}
        return tuple(
            BurnRule(
                name=name,
                severity=severity,
                long_window=long * self.time_scale,
                short_window=short * self.time_scale,
                factor=factors[name],
            )
            for name, severity, long, short in _WORKBOOK_RULES
        )


def rule_windows(rules: Iterable[BurnRule]) -> set[timedelta]:
    """Every window the rules read, so that each burn rate is computed once."""
    return {w for rule in rules for w in (rule.long_window, rule.short_window)}


@dataclass(frozen=True, kw_only=True)
class BurnAlert:
    """A rule that started firing, with the rates that made it fire."""

    rule: BurnRule
    long_rate: float
    short_rate: float


def firing(rules: Iterable[BurnRule], rate: Callable[[timedelta], float]) -> list[BurnAlert]:
    """The rules whose both windows burn faster than their factor now."""
    alerts = []
    for rule in rules:
        long_rate, short_rate = rate(rule.long_window), rate(rule.short_window)
        if long_rate > rule.factor and short_rate > rule.factor:
            alerts.append(BurnAlert(rule=rule, long_rate=long_rate, short_rate=short_rate))
    return alerts


def crossings(
    *, firing_before: frozenset[str], firing_now: Iterable[BurnAlert]
) -> tuple[frozenset[str], list[BurnAlert]]:
    """The rules firing now (to remember) and those among them that were not firing before.

    A rule that stops firing is forgotten, so that its next crossing is announced again.
    """
    now = list(firing_now)
    return frozenset(a.rule.name for a in now), [a for a in now if a.rule.name not in firing_before]


@dataclass(kw_only=True)
class BurnWatch:
    """One monitor's rules that are firing, so that each crossing is announced once."""

    firing_rules: frozenset[str] = frozenset()

    def update(
        self, *, rules: Iterable[BurnRule], rate: Callable[[timedelta], float]
    ) -> list[BurnAlert]:
        """The alerts to announce now: rules that started firing since the last update."""
        self.firing_rules, new = crossings(
            firing_before=self.firing_rules, firing_now=firing(rules, rate)
        )
        return new


def _window_text(window: timedelta) -> str:
    seconds = window.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def burn_message(alert: BurnAlert) -> str:
    """``page: error budget burning 20.0x over 1h and 21.3x over 5m (above 14.4x)``."""
    rule = alert.rule
    return (
        f"{rule.severity.value}: error budget burning {alert.long_rate:.1f}x over"
        f" {_window_text(rule.long_window)} and {alert.short_rate:.1f}x over"
        f" {_window_text(rule.short_window)} (above {rule.factor:g}x)"
    )
