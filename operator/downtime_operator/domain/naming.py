"""Names of DowntimeIncident resources: ``<monitor>-<yyyymmdd-hhmmss>``, stable and unique."""

from datetime import UTC, datetime

_MAX_NAME = 253
_SUFFIX_LEN = len("-yyyymmdd-hhmmss")


def incident_resource_name(*, monitor_name: str, started_at: datetime) -> str:
    """Derived from the outage start, so a retried create after a crash hits the same name."""
    stamp = started_at.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{monitor_name[: _MAX_NAME - _SUFFIX_LEN]}-{stamp}"
