"""The routes: thin shells that parse, call a port or service, and shape the seed's envelopes.

``OPERATIONS`` is the single list of routes; the application registers it and ``openapi.py``
describes it, so every route is documented with the parameters it parses and the responses it
can give.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TypeVar
from uuid import UUID, uuid4

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from downtime_operator.api.deps import DEPS, KEY_NAME, OPENAPI
from downtime_operator.api.errors import ApiError, invalid, json_response, not_found
from downtime_operator.api.negotiation import prefers
from downtime_operator.api.schemas import (
    UUID_PATTERN,
    AnalysisOut,
    AnalysisResponse,
    CaptureResponse,
    CaptureStateOut,
    ErrorResponse,
    FieldError,
    HealthResponse,
    IncidentDetailOut,
    IncidentResponse,
    IncidentUpdate,
    ListQuery,
    ListResponse,
    LogEntryOut,
    LogFiltersOut,
    LogsQuery,
    LogsResponse,
    MaintenanceResponse,
    MaintenanceStart,
    NoAnalysisResponse,
    NoQuery,
    NotesQuery,
    NotificationOut,
    NotificationsResponse,
    OngoingResponse,
    ReportOut,
    ReportResponse,
    SloMonitorOut,
    SloReportQuery,
    SloReportResponse,
    StatisticsQuery,
    StatisticsResponse,
    TestNotificationQuery,
    TestNotificationResponse,
    TransitionResponse,
    ValidationErrorResponse,
    encode_cursor,
)
from downtime_operator.domain.durations import parse_duration
from downtime_operator.domain.maintenance import ad_hoc_window
from downtime_operator.domain.models import IncidentStatus, MonitorRef
from downtime_operator.domain.notifications.notice import sample_notice
from downtime_operator.domain.report_markdown import render_markdown
from downtime_operator.domain.sla_report import sla_csv
from downtime_operator.domain.statistics import PeriodStatistics
from downtime_operator.domain.status import uptime_percent
from downtime_operator.services.admin_ports import IncidentAlreadyResolvedError
from downtime_operator.services.incident_admin import IncidentNotFoundError
from downtime_operator.services.outbox import NewNotification, NotificationOutbox
from downtime_operator.services.ports import IncidentLogs
from downtime_operator.services.slo.report import MonthNotBegunError, UnknownObjectiveError

PREFIX = "/admin/downtime"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
MARKDOWN = "text/markdown"
_MAX_PARAMETER_NAME = 100

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Q = TypeVar("Q", bound=BaseModel)


# -- Parsing -----------------------------------------------------------------------------------


def parse_query(request: web.Request, model: type[Q]) -> Q:
    """The query string as ``model``; 422 naming each bad, unknown or repeated parameter."""
    raw: dict[str, str] = {}
    errors: list[FieldError] = []
    for name in dict.fromkeys(request.query.keys()):
        values = request.query.getall(name)
        shown = name[:_MAX_PARAMETER_NAME]
        if name not in model.model_fields:
            errors.append(FieldError(field=shown, message="unknown parameter"))
        elif len(values) > 1:
            errors.append(FieldError(field=shown, message="given more than once"))
        else:
            raw[name] = values[0]
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        errors.extend(_field_errors(exc, whole="query"))
    if errors:
        raise invalid(errors)
    return parsed


async def parse_body(request: web.Request, model: type[Q]) -> Q:
    """The JSON object body as ``model``; 422 naming each bad or unknown field, or ``body``."""
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else None
    except ValueError:  # not JSON, or not UTF-8
        raise invalid([FieldError(field="body", message="not valid JSON")]) from None
    if not isinstance(data, dict):
        raise invalid([FieldError(field="body", message="a JSON object is required")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(_field_errors(exc, whole="body")) from None


def _field_errors(exc: ValidationError, *, whole: str) -> list[FieldError]:
    """One error per problem, naming its field (``whole`` for the input as a whole)."""
    return [
        FieldError(
            field=str(e["loc"][0])[:_MAX_PARAMETER_NAME] if e["loc"] else whole, message=e["msg"]
        )
        for e in exc.errors(include_url=False)
    ]


def incident_id_of(request: web.Request) -> UUID:
    text = request.match_info["incident_id"]
    if not re.fullmatch(UUID_PATTERN, text):
        raise invalid([FieldError(field="incident_id", message="Input should be a UUID")])
    return UUID(text)


def _logs_of(request: web.Request) -> IncidentLogs:
    logs = request.app[DEPS].logs
    if logs is None:
        raise ApiError(503, "log capture is not configured in this process")
    return logs


# -- Incidents ---------------------------------------------------------------------------------


async def list_incidents(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, ListQuery)
    page = await request.app[DEPS].queries.list_incidents(
        filters=query.filters(), limit=query.limit, after=query.page_cursor()
    )
    statuses = [row["status"] for row in page.incidents]
    # One validation of the whole page (in pydantic's core) rather than a model call per row.
    return json_response(
        ListResponse.model_validate(
            {
                "total_incidents": len(statuses),
                "ongoing": statuses.count(IncidentStatus.ONGOING.value),
                "resolved": statuses.count(IncidentStatus.RESOLVED.value),
                "incidents": page.incidents,
                "next_cursor": None
                if page.next_cursor is None
                else encode_cursor(page.next_cursor),
            }
        )
    )


async def ongoing_incidents(request: web.Request) -> web.StreamResponse:
    parse_query(request, NoQuery)
    found = await request.app[DEPS].queries.ongoing_incidents()
    return json_response(OngoingResponse.model_validate({"count": len(found), "incidents": found}))


async def get_incident(request: web.Request) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    parse_query(request, NoQuery)
    details = await request.app[DEPS].queries.incident_details(incident_id)
    if details is None:
        raise not_found(incident_id)
    return json_response(IncidentResponse(incident=IncidentDetailOut.model_validate(details)))


async def incident_logs(request: web.Request) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    query = parse_query(request, LogsQuery)
    logs = _logs_of(request)
    entries = await logs.get_filtered_logs(
        incident_id,
        level=None if query.level is None else query.level.value,
        logger_name=query.logger_name,
        search=query.search,
    )
    if entries is None:
        raise not_found(incident_id)
    captured = len(entries)
    if query.any_filter:
        everything = await logs.get_filtered_logs(incident_id)
        captured = len(everything or ())
    return json_response(
        LogsResponse(
            incident_id=incident_id,
            message=(
                f"{len(entries)} of {captured} captured log entries"
                if captured
                else "No logs captured for this incident"
            ),
            total_logs=len(entries),
            total_captured=captured,
            filters=LogFiltersOut(level=query.level, logger=query.logger_name, search=query.search),
            logs=[LogEntryOut.model_validate(entry) for entry in entries],
        )
    )


async def incident_analysis(request: web.Request) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    parse_query(request, NoQuery)
    analysis = await _logs_of(request).get_analysis(incident_id)
    if analysis is None:
        raise not_found(incident_id)
    found = AnalysisOut.model_validate(analysis)
    if not found.total_logs:
        return json_response(
            NoAnalysisResponse(
                incident_id=incident_id,
                message="No logs were captured for this incident",
                analysis=found,
            )
        )
    return json_response(AnalysisResponse(incident_id=incident_id, analysis=found))


async def capture_logs(request: web.Request) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    parse_query(request, NoQuery)
    state = await _logs_of(request).capture_now(incident_id)
    if state is None:
        raise not_found(incident_id)
    return json_response(
        CaptureResponse(
            message="Log capture triggered",
            incident_id=incident_id,
            result=CaptureStateOut.model_validate(state),
        ),
        status=202,
    )


async def _transition(request: web.Request, *, resolve: bool) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    query = parse_query(request, NotesQuery)
    deps = request.app[DEPS]
    notes = query.notes or None
    actor = request[KEY_NAME]
    try:
        if resolve:
            await deps.admin.resolve(incident_id, notes=notes, actor=actor)
        else:
            await deps.admin.acknowledge(incident_id, notes=notes, actor=actor)
    except IncidentNotFoundError as exc:
        raise not_found(incident_id) from exc
    except IncidentAlreadyResolvedError as exc:
        raise ApiError(409, f"Incident {incident_id} is already resolved") from exc
    message = "Incident resolved" if resolve else "Incident acknowledged"
    return await _changed(request, incident_id, message=message)


async def _changed(request: web.Request, incident_id: UUID, *, message: str) -> web.Response:
    """The incident as it is now, after a person changed it."""
    details = await request.app[DEPS].queries.incident_details(incident_id)
    if details is None:  # deleted by retention between the two statements
        raise not_found(incident_id)
    return json_response(
        TransitionResponse(message=message, incident=IncidentDetailOut.model_validate(details))
    )


async def resolve_incident(request: web.Request) -> web.StreamResponse:
    return await _transition(request, resolve=True)


async def acknowledge_incident(request: web.Request) -> web.StreamResponse:
    return await _transition(request, resolve=False)


async def update_incident(request: web.Request) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    parse_query(request, NoQuery)
    update = await parse_body(request, IncidentUpdate)
    try:
        await request.app[DEPS].admin.annotate(
            incident_id, root_cause=update.root_cause, note=update.notes, actor=request[KEY_NAME]
        )
    except IncidentNotFoundError as exc:
        raise not_found(incident_id) from exc
    return await _changed(request, incident_id, message="Incident updated")


async def incident_report(request: web.Request) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    parse_query(request, NoQuery)
    report = await request.app[DEPS].reports.report(incident_id)
    if report is None:
        raise not_found(incident_id)
    if prefers(request.headers.get("Accept"), offered="application/json", default=MARKDOWN):
        found = ReportOut.model_validate(report.to_dict())
        return json_response(ReportResponse(incident_id=incident_id, report=found))
    return web.Response(text=render_markdown(report), content_type=MARKDOWN, charset="utf-8")


async def statistics(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, StatisticsQuery)
    deps = request.app[DEPS]
    period = timedelta(days=query.days)

    async def compute() -> PeriodStatistics:
        until = deps.clock.now()
        return await deps.queries.statistics(since=until - period, until=until)

    stats = await deps.statistics.run(query.days, compute)
    # One validation of plain data rather than a model per monitor: hundreds of monitors.
    return json_response(
        StatisticsResponse.model_validate(
            {
                "period_days": query.days,
                "period_start": stats.since,
                "period_end": stats.until,
                "statistics": {
                    "total_incidents": stats.total_incidents,
                    "total_downtime_seconds": stats.total_downtime_seconds,
                    "average_duration_seconds": (
                        stats.total_downtime_seconds / stats.total_incidents
                        if stats.total_incidents
                        else 0.0
                    ),
                    "by_severity": stats.by_severity,
                    "by_status": stats.by_status,
                    "mttr_seconds": stats.mttr_seconds,
                    "longest_incident_seconds": stats.longest_incident_seconds,
                    "monitors": [
                        {
                            "namespace": m.namespace,
                            "name": m.name,
                            "incidents": m.incidents,
                            "downtime_seconds": m.downtime_seconds,
                            "uptime_percent": uptime_percent(
                                downtime_seconds=m.downtime_seconds, window=period
                            ),
                        }
                        for m in stats.monitors
                    ],
                },
            }
        )
    )


CSV = "text/csv"


async def slo_report(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, SloReportQuery)
    reports = request.app[DEPS].slo_reports
    if reports is None:
        raise ApiError(503, "no service level objectives in this process")
    monitor = None
    if query.monitor is not None:
        namespace, name = query.monitor.split("/", 1)
        monitor = MonitorRef(namespace=namespace, name=name)
    try:
        report = await reports.month(query.month, monitor=monitor)
    except (MonthNotBegunError, UnknownObjectiveError) as exc:
        # Neither report exists (yet): the month has no judged time, the monitor no objective.
        raise ApiError(404, str(exc)) from exc
    if prefers(request.headers.get("Accept"), offered=CSV, default="application/json"):
        return web.Response(text=sla_csv(report.rows), content_type=CSV, charset="utf-8")
    return json_response(
        SloReportResponse(
            month=report.month,
            period_start=report.since,
            period_end=report.until,
            monitors=[SloMonitorOut.model_validate(asdict(row)) for row in report.rows],
        )
    )


async def start_maintenance(request: web.Request) -> web.StreamResponse:
    """An ad-hoc one-off window from now: a MaintenanceWindow the operator acts on like any."""
    parse_query(request, NoQuery)
    body = await parse_body(request, MaintenanceStart)
    deps = request.app[DEPS]
    if deps.maintenance is None:
        raise ApiError(503, "maintenance windows cannot be created in this process")
    start = deps.clock.now()
    name, spec = ad_hoc_window(
        monitors=body.monitors,
        match_labels=body.selector,
        start=start,
        duration=parse_duration(body.duration),
        reason=f"{body.reason} ({request[KEY_NAME]})",
    )
    await deps.maintenance.start_maintenance(namespace=body.namespace, name=name, spec=spec)
    return json_response(
        MaintenanceResponse(
            message="Maintenance window created",
            namespace=body.namespace,
            name=name,
            start=spec["start"],
            end=spec["end"],
        ),
        status=201,
    )


# -- Probes and documents ----------------------------------------------------------------------


def _outbox_of(request: web.Request) -> NotificationOutbox:
    outbox = request.app[DEPS].notifications
    if outbox is None:
        raise ApiError(503, "notifications are not available here")
    return outbox


async def incident_notifications(request: web.Request) -> web.StreamResponse:
    incident_id = incident_id_of(request)
    parse_query(request, NoQuery)
    rows = await _outbox_of(request).for_incident(incident_id)
    if not rows and await request.app[DEPS].queries.incident_details(incident_id) is None:
        raise not_found(incident_id)
    return json_response(
        NotificationsResponse(
            incident_id=incident_id,
            notifications=[
                NotificationOut.model_validate(row, from_attributes=True) for row in rows
            ],
        )
    )


async def test_notification(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, TestNotificationQuery)
    deps = request.app[DEPS]
    now = deps.clock.now()
    test_id = uuid4()
    notice = sample_notice(channel=query.channel, test_id=test_id, at=now)
    await _outbox_of(request).enqueue(
        [
            NewNotification(
                incident_id=test_id,
                channel=query.channel,
                event=notice.event_key,
                payload=notice.to_payload(),
                created_at=now,
            )
        ]
    )
    return json_response(
        TestNotificationResponse(
            message="Test notification queued; its delivery shows on the channel's status",
            channel=query.channel,
            test_id=test_id,
        ),
        status=202,
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    parse_query(request, NoQuery)
    return json_response(HealthResponse())


async def readyz(request: web.Request) -> web.StreamResponse:
    parse_query(request, NoQuery)
    await request.app[DEPS].queries.ping()  # StoreUnavailableError becomes 503
    return json_response(HealthResponse())


async def metrics(request: web.Request) -> web.StreamResponse:
    # No query parsing: a scrape config may add parameters; there is nothing to filter here.
    return web.Response(
        body=request.app[DEPS].metrics_text(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi_document(request: web.Request) -> web.StreamResponse:
    parse_query(request, NoQuery)
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


# -- The route table ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    query: type[BaseModel] = NoQuery
    body: type[BaseModel] | None = None
    """The model of a required JSON body."""
    responses: Mapping[int, tuple[type[BaseModel], ...]] = field(default_factory=dict)
    admin: bool = True
    """Under the guard: allowlist, rate limits, API key; POSTs and PATCHes audited."""
    document: str | None = None
    """Media type of a 200 answer that is a document (besides the envelope model, if any)."""

    @property
    def has_incident_id(self) -> bool:
        return "{incident_id}" in self.path

    @property
    def route_path(self) -> str:
        """The path for aiohttp's router: any segment matches, so a malformed id gets a 422.

        aiohttp's default ``{name}`` refuses braces; ``{...}`` around a UUID would then be a 404.
        Except ``ongoing``, a route of its own: a method it does not have (PATCH) is a 405 there,
        not a malformed incident id.
        """
        return self.path.replace("{incident_id}", f"{{incident_id:(?!{_ONGOING}$)[^/]+}}")


_INCIDENT = f"{PREFIX}/incidents/{{incident_id}}"
_ONGOING = "ongoing"
_INVALID = (ValidationErrorResponse,)
_ERROR = (ErrorResponse,)
_UNREADABLE = (ErrorResponse, ValidationErrorResponse)
"""503: log capture or the store is unavailable, or captured data cannot be decrypted (its
encryption key is missing, or it failed authentication): ``errors`` names it (field ``logs``)."""

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path=f"{PREFIX}/incidents",
        handler=list_incidents,
        operation_id="listIncidents",
        summary="Incidents, newest first, filtered and paged by cursor",
        query=ListQuery,
        responses={200: (ListResponse,), 422: _INVALID},
    ),
    # Before /incidents/{incident_id}: routes match in the order they are added.
    Operation(
        method="GET",
        path=f"{PREFIX}/incidents/{_ONGOING}",
        handler=ongoing_incidents,
        operation_id="listOngoingIncidents",
        summary="Incidents still open (ongoing or investigating)",
        responses={200: (OngoingResponse,), 422: _INVALID},
    ),
    Operation(
        method="GET",
        path=_INCIDENT,
        handler=get_incident,
        operation_id="getIncident",
        summary="One incident with every stored detail",
        responses={200: (IncidentResponse,), 404: _ERROR, 422: _INVALID, 503: _UNREADABLE},
    ),
    Operation(
        method="PATCH",
        path=_INCIDENT,
        handler=update_incident,
        operation_id="updateIncident",
        summary="Set the root cause and/or add a signed note (open or resolved incidents)",
        body=IncidentUpdate,
        responses={200: (TransitionResponse,), 404: _ERROR, 422: _INVALID},
    ),
    Operation(
        method="GET",
        path=f"{_INCIDENT}/report",
        handler=incident_report,
        operation_id="getIncidentReport",
        summary="The post-mortem report: Markdown, or JSON with Accept: application/json",
        responses={200: (ReportResponse,), 404: _ERROR, 422: _INVALID, 503: _UNREADABLE},
        document=MARKDOWN,
    ),
    Operation(
        method="GET",
        path=f"{_INCIDENT}/logs",
        handler=incident_logs,
        operation_id="getIncidentLogs",
        summary="The incident's captured logs, filtered",
        query=LogsQuery,
        responses={200: (LogsResponse,), 404: _ERROR, 422: _INVALID, 503: _UNREADABLE},
    ),
    Operation(
        method="GET",
        path=f"{_INCIDENT}/analysis",
        handler=incident_analysis,
        operation_id="getIncidentAnalysis",
        summary="Error counts, error types and top errors of the captured logs",
        responses={
            200: (AnalysisResponse, NoAnalysisResponse),
            404: _ERROR,
            422: _INVALID,
            503: _UNREADABLE,
        },
    ),
    Operation(
        method="POST",
        path=f"{_INCIDENT}/capture-logs",
        handler=capture_logs,
        operation_id="captureIncidentLogs",
        summary="Run a log capture now; the result lands on the incident",
        responses={202: (CaptureResponse,), 404: _ERROR, 422: _INVALID, 503: _UNREADABLE},
    ),
    Operation(
        method="POST",
        path=f"{_INCIDENT}/resolve",
        handler=resolve_incident,
        operation_id="resolveIncident",
        summary="Resolve the incident now, with optional notes",
        query=NotesQuery,
        responses={200: (TransitionResponse,), 404: _ERROR, 409: _ERROR, 422: _INVALID},
    ),
    Operation(
        method="POST",
        path=f"{_INCIDENT}/acknowledge",
        handler=acknowledge_incident,
        operation_id="acknowledgeIncident",
        summary="Mark an open incident as being investigated, with optional notes",
        query=NotesQuery,
        responses={200: (TransitionResponse,), 404: _ERROR, 409: _ERROR, 422: _INVALID},
    ),
    Operation(
        method="GET",
        path=f"{_INCIDENT}/notifications",
        handler=incident_notifications,
        operation_id="getIncidentNotifications",
        summary="The incident's notifications: each channel's events, state, attempts, errors",
        responses={200: (NotificationsResponse,), 404: _ERROR, 422: _INVALID, 503: _ERROR},
    ),
    Operation(
        method="POST",
        path=f"{PREFIX}/notifications/test",
        handler=test_notification,
        operation_id="testNotificationChannel",
        summary="Queue one test message to a NotificationChannel (namespace/name)",
        query=TestNotificationQuery,
        responses={202: (TestNotificationResponse,), 422: _INVALID, 503: _ERROR},
    ),
    Operation(
        method="GET",
        path=f"{PREFIX}/statistics",
        handler=statistics,
        operation_id="getStatistics",
        summary="Incident statistics and per-monitor uptime over the last days",
        query=StatisticsQuery,
        responses={200: (StatisticsResponse,), 422: _INVALID},
    ),
    Operation(
        method="GET",
        path=f"{PREFIX}/slo",
        handler=slo_report,
        operation_id="getSloReport",
        summary="The SLA report of a month: per monitor with spec.slo, availability with"
        " maintenance excluded, budget left, met or breached; CSV with Accept: text/csv",
        query=SloReportQuery,
        responses={200: (SloReportResponse,), 404: _ERROR, 422: _INVALID, 503: _ERROR},
        document=CSV,
    ),
    Operation(
        method="POST",
        path=f"{PREFIX}/maintenance",
        handler=start_maintenance,
        operation_id="startMaintenance",
        summary="Put monitors (by name or labels) in maintenance from now, for a duration",
        body=MaintenanceStart,
        responses={201: (MaintenanceResponse,), 422: _INVALID, 503: _ERROR},
    ),
    Operation(
        method="GET",
        path="/healthz",
        handler=healthz,
        operation_id="healthz",
        summary="The process is up",
        responses={200: (HealthResponse,), 422: _INVALID},
        admin=False,
    ),
    Operation(
        method="GET",
        path="/readyz",
        handler=readyz,
        operation_id="readyz",
        summary="PostgreSQL answers",
        responses={200: (HealthResponse,), 422: _INVALID, 503: _ERROR},
        admin=False,
    ),
    Operation(
        method="GET",
        path="/metrics",
        handler=metrics,
        operation_id="metrics",
        summary="Prometheus metrics",
        admin=False,
        document=CONTENT_TYPE_LATEST,
    ),
    Operation(
        method="GET",
        path=OPENAPI_PATH,
        handler=openapi_document,
        operation_id="openapi",
        summary="This document",
        responses={422: _INVALID},
        admin=False,
        document="application/json",
    ),
)
"""Every route of the application, in the order it registers them."""
