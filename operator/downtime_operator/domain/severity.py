"""Severity of an ongoing incident: the monitor's base severity raised by escalation rules."""

from collections.abc import Iterable
from datetime import timedelta

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
