"""Severity of an ongoing incident: the monitor's base severity raised by escalation rules, and
the record of each change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from downtime_operator.domain.models import Escalation, Severity


def effective_severity(
    *, base: Severity, escalation: Iterable[Escalation], elapsed: timedelta
) -> Severity:
    """The highest of the base and every rule whose ``after`` has passed.

    Escalation only ever raises: a rule naming a lower severity than the base is ignored, so a
    misordered list cannot quietly downgrade an outage.
    """
    severity = base
    for rule in escalation:
        if elapsed >= rule.after and rule.severity.rank > severity.rank:
            severity = rule.severity
    return severity


@dataclass(frozen=True, kw_only=True)
class SeverityChange:
    """One change of an open incident's severity (an escalation), as ``severity_changes`` keeps
    it: a list of ``{at, from, to}`` on the incident, for the report's impact and timeline."""

    at: datetime
    """The check that crossed the escalation rule's ``after``."""
    previous: Severity
    severity: Severity

    def to_json(self) -> dict[str, str]:
        return {
            "at": self.at.astimezone(UTC).isoformat(),
            "from": self.previous.value,
            "to": self.severity.value,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SeverityChange:
        return cls(
            at=datetime.fromisoformat(value["at"]),
            previous=Severity(value["from"]),
            severity=Severity(value["to"]),
        )
