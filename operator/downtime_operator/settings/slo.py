"""SLO settings (issue 15): the burn-rate alert factors, and the standalone monitor's objective
and maintenance windows, which it has no HealthMonitor or MaintenanceWindow to read them from."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from downtime_operator.domain.burn_alerts import BurnFactors
from downtime_operator.domain.durations import parse_duration
from downtime_operator.domain.maintenance import (
    CronSchedule,
    Recurring,
    WindowSpec,
    parse_time_zone,
)
from downtime_operator.domain.slo import DEFAULT_WINDOW, parse_objective, parse_window
from downtime_operator.settings.groups import Group
from downtime_operator.settings.sources import Source


class SloSettings(Group):
    """The Google SRE workbook's factors by default; a test compresses time with the scale."""

    burn_page_fast: Annotated[float, Source(env=("SLO_BURN_PAGE_FAST",))] = Field(
        default=14.4,
        gt=0,
        allow_inf_nan=False,
        description="page when the 1h and the 5m burn rates both exceed this",
    )
    burn_page_slow: Annotated[float, Source(env=("SLO_BURN_PAGE_SLOW",))] = Field(
        default=6.0,
        gt=0,
        allow_inf_nan=False,
        description="page when the 6h and the 30m burn rates both exceed this",
    )
    burn_ticket: Annotated[float, Source(env=("SLO_BURN_TICKET",))] = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="ticket when the 3d and the 6h burn rates both exceed this",
    )
    burn_time_scale: Annotated[float, Source(env=("SLO_BURN_TIME_SCALE",))] = Field(
        default=1.0,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="multiplies every burn-rate window (0.001: the 1h window lasts 3.6 s), so"
        " that tests cross a threshold in seconds",
    )

    def burn_factors(self) -> BurnFactors:
        return BurnFactors(
            page_fast=self.burn_page_fast,
            page_slow=self.burn_page_slow,
            ticket=self.burn_ticket,
            time_scale=self.burn_time_scale,
        )


class MonitorSloSettings(Group):
    """``monitor``'s ``spec.slo`` and its recurring maintenance windows."""

    objective: Annotated[str | None, Source(flag="--slo", metavar="PERCENT")] = Field(
        default=None,
        description="the monitor's objective in percent, e.g. 99.9 (`spec.slo.objective`):"
        " `status.slo` figures, burn-rate alerts and the SLA report",
    )
    window: Annotated[str, Source(flag="--slo-window", metavar="DAYS")] = Field(
        default=DEFAULT_WINDOW, description="the objective's window, whole days from 1d to 90d"
    )
    maintenance: Annotated[
        tuple[str, ...], Source(flag="--maintenance", metavar="CRON/DURATION", repeatable=True)
    ] = Field(
        default=(),
        description="a recurring maintenance window, five cron fields and a duration, e.g."
        " `'30 2 * * 0/1h'` (repeatable)",
    )
    time_zone: Annotated[str, Source(flag="--time-zone", metavar="ZONE")] = Field(
        default="UTC", description="IANA time zone of the `--maintenance` crons"
    )

    @field_validator("objective")
    @classmethod
    def _objective(cls, value: str | None) -> str | None:
        if value is not None:
            parse_objective(value)
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        parse_time_zone(value)
        return value

    @field_validator("maintenance")
    @classmethod
    def _windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            _recurring(text, zone="UTC")
        return value

    def spec(self) -> dict[str, Any] | None:
        """``spec.slo`` as a HealthMonitor would carry it; None without ``--slo``."""
        if self.objective is None:
            return None
        return {"objective": self.objective, "window": self.window}

    def windows(self, *, monitor: str) -> dict[str, WindowSpec]:
        """The ``--maintenance`` windows of the one monitor, named by their order."""
        return {
            f"maintenance-{index}": WindowSpec(
                monitors=frozenset({monitor}),
                match_labels={},
                match_expressions=(),
                schedule=_recurring(text, zone=self.time_zone),
                reason=f"--maintenance {text}",
            )
            for index, text in enumerate(self.maintenance)
        }


def _recurring(text: str, *, zone: str) -> Recurring:
    """``CRON/DURATION``: the duration follows the last slash (a cron step has one too)."""
    cron, slash, duration = text.rpartition("/")
    if not slash:
        raise ValueError(f"{text!r}: expected CRON/DURATION, e.g. '30 2 * * 0/1h'")
    return Recurring(
        cron=CronSchedule.parse(cron),
        duration=parse_duration(duration),
        zone=parse_time_zone(zone),
    )
