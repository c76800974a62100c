"""``downtime-operator report INCIDENT_ID``: an incident's post-mortem report on stdout.

The same report as ``GET /admin/downtime/incidents/{id}/report``, from the same store choice as
``monitor`` and ``cleanup`` (``DATABASE_URL``, else the SQLite file), without an API to run.
"""

from __future__ import annotations

import sys

from downtime_operator.domain.report_markdown import render_markdown
from downtime_operator.services.admin_ports import StoreUnavailableError
from downtime_operator.services.incident_report import IncidentReports
from downtime_operator.services.ports import SealedDataError
from downtime_operator.settings import ReportSettings, SettingsError
from downtime_operator.standalone import open_store


async def run_report(settings: ReportSettings) -> int:
    """Print the report; 1 when the incident is not there or the store cannot answer."""
    database = settings.database
    if database.url is None and not database.db_path.is_file():
        # Opening would create an empty file: a typo in the path is better told than hidden.
        raise SettingsError(f"--db-path: no such file {str(database.db_path)!r}")
    backend = await open_store(settings)
    try:
        reports = IncidentReports(
            queries=backend.queries, audit=backend.audit, notifications=backend.notifications
        )
        report = await reports.report(settings.incident_id)
    except (StoreUnavailableError, SealedDataError) as exc:
        print(f"downtime-operator report: {exc}", file=sys.stderr)
        return 1
    finally:
        await backend.close()
    if report is None:
        print(
            f"downtime-operator report: no incident {settings.incident_id}"
            f" in {backend.description}",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(render_markdown(report))
    return 0
