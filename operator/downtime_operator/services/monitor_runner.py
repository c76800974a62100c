"""One monitor's life: check on schedule, detect outages, decide what they are, keep status current.

The runner owns the monitor's detector and open incident. It decides (opened, escalated,
resolved, ...) and publishes an ``IncidentEvent``; the sinks of the incident pipeline carry the
consequences out (store row, DowntimeIncident, Event, capture plan, metrics), each in its own
ordered retry queue, so a dependency outage delays them but never drops or reorders them, and
never stops the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

from downtime_operator.domain.burn_alerts import (
    BurnAlert,
    BurnFactors,
    BurnRule,
    BurnWatch,
    burn_message,
)
from downtime_operator.domain.check_history import CheckHistory, IncidentChecks
from downtime_operator.domain.detector import Detector, Opened, Resolved, StillDown
from downtime_operator.domain.evidence import resolution_snapshot
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind, ResolvedBy
from downtime_operator.domain.kube_context import context_scope
from downtime_operator.domain.log_capture import (
    CapturePlan,
    plan_capture,
    plan_metrics,
    state_at_resolution,
)
from downtime_operator.domain.models import (
    CheckResult,
    Incident,
    IncidentStatus,
    LogCaptureState,
    MonitorRef,
    MonitorSpec,
    MonitorState,
)
from downtime_operator.domain.naming import incident_resource_name
from downtime_operator.domain.prometheus import MetricsPlan
from downtime_operator.domain.severity import SeverityChange, effective_severity
from downtime_operator.domain.slo import SloFigures, Timeline, slo_figures
from downtime_operator.domain.spec import (
    InvalidSpecError,
    UnresolvedHeadersError,
    parse_monitor_spec,
)
from downtime_operator.domain.start_phase import first_check_delay
from downtime_operator.domain.status import (
    Condition,
    StatusFacts,
    StatusSync,
)
from downtime_operator.services.open_incidents import OpenIncidents
from downtime_operator.services.pipeline import IncidentPublisher
from downtime_operator.services.ports import (
    Clock,
    IncidentResources,
    IncidentStore,
    Prober,
    SecretUnavailableError,
    SecretValues,
    StopSignal,
)
from downtime_operator.services.slo.maintenance import ActiveMaintenance

logger = logging.getLogger(__name__)

CheckObserver = Callable[[MonitorRef, CheckResult, float], None]
"""Called after every check with the scheduling lag in seconds (metrics, benchmarks)."""


class StatusOutbox(Protocol):
    """Where the runner hands its monitor's status (``StatusWriter``): it never waits for it."""

    def offer(
        self,
        monitor: MonitorRef,
        body: Mapping[str, Any],
        *,
        urgent: bool,
        on_failure: Callable[[], None],
    ) -> None: ...


class UptimeSource(Protocol):
    """Uptime windows read for every monitor at once (``UptimeBoard``)."""

    def uptime(
        self, monitor: MonitorRef, *, created_at: datetime | None = None
    ) -> dict[str, float] | None: ...

    def timeline(
        self, monitor: MonitorRef, *, created_at: datetime | None = None
    ) -> Timeline | None: ...


SloObserver = Callable[[MonitorRef, SloFigures], None]


class BurnAnnouncer(Protocol):
    """Tells the monitor's channels of a burn-rate rule that started firing (``BurnNotifier``)."""

    def announce(
        self,
        *,
        monitor: MonitorRef,
        channels: Sequence[str],
        url: str,
        environment: str,
        alert: BurnAlert,
    ) -> None: ...


class MaintenanceSource(Protocol):
    """The window a monitor is in at each check, recorded as it goes (``MaintenanceKeeper``)."""

    def check(
        self, monitor: MonitorRef, *, labels: Mapping[str, str], at: datetime
    ) -> ActiveMaintenance | None: ...


@dataclass(frozen=True, kw_only=True)
class SpecSnapshot:
    spec: Mapping[str, Any]
    generation: int | None = None
    created_at: datetime | None = None
    """When the monitor was created: one older than the process waits for its start phase."""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The monitor's labels, which MaintenanceWindow selectors match."""


@dataclass(kw_only=True)
class RunnerDeps:
    """What every runner shares: one prober (one connection pool), one incident pipeline."""

    prober: Prober
    store: IncidentStore
    """Read at start (the open incident); writes go through ``events``."""
    resources: IncidentResources
    """Read at start (the open DowntimeIncident); Events about the monitor's spec."""
    clock: Clock
    events: IncidentPublisher
    status: StatusOutbox
    uptime: UptimeSource
    status_sync_period: timedelta = timedelta(seconds=60)
    reload_timeout: float = 10.0
    invalid_spec_retry: float = 30.0
    observer: CheckObserver | None = None
    started_at: datetime | None = None
    """When the engine started; None: no start phases (every first check at once)."""
    loki_configured: bool = False
    secrets: SecretValues | None = None
    """Where ``headersFrom`` values are read; None outside Kubernetes (no Secrets there)."""
    shard: int | None = None
    """This replica's shard, shown in each monitor's status; None when unsharded."""
    open_incidents: OpenIncidents | None = None
    """The open incidents of the monitors starting together, read once for all; None: each
    runner asks the store and the CRs for itself."""
    maintenance: MaintenanceSource | None = None
    """The MaintenanceWindows; None: no monitor is ever in maintenance."""
    burn_rules: tuple[BurnRule, ...] = BurnFactors().rules()
    """The burn-rate alert rules of monitors with ``spec.slo``."""
    burn_notices: BurnAnnouncer | None = None
    """Where ``budgetBurn`` notifications go; None: only the Warning Event."""
    slo_observer: SloObserver | None = None
    """Told each monitor's SLO figures at each periodic refresh (the metrics)."""


def _shown_state(detector: Detector, *, paused: bool, maintenance: bool) -> MonitorState:
    if paused:
        return MonitorState.PAUSED
    return MonitorState.MAINTENANCE if maintenance else detector.state


class MonitorRunner:
    def __init__(self, *, ref: MonitorRef, deps: RunnerDeps) -> None:
        self.ref = ref
        self._deps = deps
        self.detector: Detector | None = None
        self.incident: Incident | None = None
        self._status = StatusSync(sync_period=deps.status_sync_period)
        self._reported_invalid: str | None = None
        self._channels: tuple[str, ...] = ()
        """The spec's notification channels, handed to the sinks with each event."""
        self._spec: MonitorSpec | None = None
        """The last checked spec, for what is done between checks (the events' Kubernetes
        context, the SLO view)."""
        self._spec_cache: tuple[dict[str, Any], MonitorSpec] | None = None
        self._failed_checks_written_at: datetime | None = None
        self._posting: set[asyncio.Task[None]] = set()
        self._next_check: datetime | None = None
        self._history = CheckHistory()
        """The recent checks, for the metrics snapshot of the next incident."""
        self._during: IncidentChecks | None = None
        """The checks of the open incident, for its snapshot at resolution."""
        self._created_at: datetime | None = None
        """When the monitor was created: its uptime does not count the time before."""
        self._burn = BurnWatch()
        """The burn-rate rules firing, so that each crossing is announced once."""

    async def run(
        self,
        *,
        read_spec: Callable[[], SpecSnapshot],
        stop: StopSignal,
        continuing: bool = False,
    ) -> None:
        """Check until stopped. A spec change is picked up at the next check.

        ``continuing``: the loop takes over from one this process ran a moment ago (stopped
        between two checks, see ``EarlyRuns``), so it keeps that loop's schedule and what it
        loaded instead of reloading and checking at once.
        """
        clock = self._deps.clock
        if continuing and self._next_check is not None:
            scheduled = self._next_check
        else:
            first = read_spec()
            await self._reload(first)
            scheduled = clock.now() + self._start_delay(first)
        await self._wait_until(scheduled, stop)
        while not stop.is_set():
            snapshot = read_spec()
            self._created_at = snapshot.created_at
            try:
                spec = await self._with_secret_headers(self._parsed(snapshot.spec))
            except InvalidSpecError as exc:
                self._report_invalid(exc, snapshot.generation)
                scheduled = clock.now() + timedelta(seconds=self._deps.invalid_spec_retry)
                await self._wait_until(scheduled, stop)
                continue
            if spec.paused:
                self._sync_status(spec, snapshot.generation, paused=True)
                scheduled = clock.now() + spec.interval
                await self._wait_until(scheduled, stop)
                continue
            lag = (clock.now() - scheduled).total_seconds()
            # Only the check whose failure opens an incident describes the server.
            evidence = self._detector_for(spec).opens_on_failure
            result = await self._deps.prober.check(spec, evidence=evidence)
            if self._deps.observer is not None:
                self._deps.observer(self.ref, result, lag)
            maintenance = self._maintenance_at(snapshot, result.at)
            self.observe(spec, result, in_maintenance=maintenance is not None)
            self._sync_status(
                spec, snapshot.generation, last_check=result, maintenance=maintenance is not None
            )
            detector = self._detector_for(spec)
            delay = detector.next_delay(interval=spec.interval, retry_interval=spec.retry_interval)
            scheduled = max(scheduled + delay, clock.now())
            await self._wait_until(scheduled, stop)

    async def _wait_until(self, when: datetime, stop: StopSignal) -> None:
        # Remembered so that a loop taking over (``continuing``) keeps this schedule.
        self._next_check = when
        await stop.sleep((when - self._deps.clock.now()).total_seconds())

    def _start_delay(self, snapshot: SpecSnapshot) -> timedelta:
        try:
            interval = self._parsed(snapshot.spec).interval
        except InvalidSpecError:
            return timedelta(0)  # reported by the first turn of the loop
        return first_check_delay(
            self.ref,
            interval=interval,
            created_at=snapshot.created_at,
            started_at=self._deps.started_at,
            now=self._deps.clock.now(),
        )

    def _parsed(self, raw: Mapping[str, Any]) -> MonitorSpec:
        """Validation costs more than a loopback check: parse again only when the spec changed."""
        if self._spec_cache is None or self._spec_cache[0] != raw:
            self._spec_cache = (dict(raw), parse_monitor_spec(raw))
        return self._spec_cache[1]

    async def _with_secret_headers(self, spec: MonitorSpec) -> MonitorSpec:
        """The spec with its ``headersFrom`` values read (the adapter caches them briefly)."""
        if not spec.headers_from:
            return spec
        problems: list[tuple[str, str]] = []
        values: list[tuple[str, str]] = []
        for index, header in enumerate(spec.headers_from):
            where = f"headersFrom[{index}].secretKeyRef"
            if self._deps.secrets is None:
                problems.append((where, "Secrets cannot be read outside Kubernetes"))
                continue
            try:
                value = await self._deps.secrets.secret_value(
                    namespace=self.ref.namespace, name=header.secret, key=header.key
                )
            except SecretUnavailableError as exc:
                problems.append((where, str(exc)))
                continue
            values.append((header.name, value))
        if problems:
            raise UnresolvedHeadersError(problems)
        return dataclasses.replace(spec, headers=spec.headers + tuple(values))

    def _maintenance_at(self, snapshot: SpecSnapshot, at: datetime) -> ActiveMaintenance | None:
        if self._deps.maintenance is None:
            return None
        return self._deps.maintenance.check(self.ref, labels=snapshot.labels, at=at)

    def observe(
        self, spec: MonitorSpec, result: CheckResult, *, in_maintenance: bool = False
    ) -> None:
        """Feed one check result; queue whatever it implies.

        In maintenance a failure opens nothing and starts no streak: the detector starts
        afresh, so an outage that goes on after the window opens its incident from then on.
        An incident already open goes on as usual (it began before the window).
        """
        self._channels = spec.notifications
        self._spec = spec
        self._history.record(result)
        if self._during is not None:
            self._during.add_result(result)
        if in_maintenance and self.incident is None and not result.ok:
            self.detector = None
            return
        transition = self._detector_for(spec).observe(result)
        if isinstance(transition, Opened):
            self._open(spec, transition)
        elif isinstance(transition, StillDown):
            self._still_down(spec, transition)
        elif isinstance(transition, Resolved):
            self._resolve(ended_at=transition.ended_at, notes=None, resolved_by=ResolvedBy.RECOVERY)

    def resolve_for_deletion(self) -> None:
        """A deleted monitor resolves its open incident, saying so, rather than leaving it open."""
        if self.incident is not None and self.incident.is_open:
            self._resolve(
                ended_at=self._deps.clock.now(),
                notes="resolved because the HealthMonitor was deleted",
                resolved_by=ResolvedBy.MONITOR_DELETED,
            )

    def resolved_elsewhere(self, incident_id: UUID) -> None:
        """Someone resolved our open incident (the admin API): forget it, write nothing.

        The failing streak is forgotten too, so a failure after a manual resolve starts a new
        streak and, past the threshold, a new incident, as the README's "How it behaves" says.
        """
        if self.incident is None or self.incident.incident_id != incident_id:
            return
        self._emit(IncidentEventKind.RELEASED, self.incident)
        self.incident = None
        self._during = None
        if self.detector is not None:
            self.detector = Detector(
                failure_threshold=self.detector.failure_threshold,
                success_threshold=self.detector.success_threshold,
            )

    def acknowledged_elsewhere(self, incident_id: UUID) -> None:
        """Someone is on it (status investigating): later writes must keep that status."""
        incident = self.incident
        # The same status is seen again with every later change of the CR: said once.
        if (
            incident is not None
            and incident.incident_id == incident_id
            and incident.status is not IncidentStatus.INVESTIGATING
        ):
            incident.status = IncidentStatus.INVESTIGATING
            self._emit(IncidentEventKind.ACKNOWLEDGED, incident)

    def _detector_for(self, spec: MonitorSpec) -> Detector:
        if self.detector is None:
            self.detector = Detector(
                failure_threshold=spec.failure_threshold,
                success_threshold=spec.success_threshold,
            )
        self.detector.failure_threshold = spec.failure_threshold
        self.detector.success_threshold = spec.success_threshold
        return self.detector

    async def _reload(self, snapshot: SpecSnapshot) -> None:
        """Continue an outage that was open before a restart instead of opening a second one.

        The store is the truth when it answers, but the CRs are asked too: an open CR is the
        only copy of an incident whose row was still queued when the process died (killed while
        the store was down), and a CR can lag a row that was resolved. A runner that restarts
        in the same process (a replica paused by peering while the other one worked) drops what
        it remembered unless its incident is still open in the CRs.
        """
        incident: Incident | None = None
        try:
            async with asyncio.timeout(self._deps.reload_timeout):
                incident = await self._open_in_store()
            store_answered = True
        except Exception as exc:
            store_answered = False
            logger.warning(
                "%s: store unavailable at start (%s); reloading from the CRs", self.ref, exc
            )
        if incident is None:
            incident = await self._open_in_resources(snapshot, store_answered=store_answered)
        if incident is None:
            self.incident = None
            self._during = None
            self.detector = None
            return
        try:
            spec = parse_monitor_spec(snapshot.spec)
            thresholds = (spec.failure_threshold, spec.success_threshold)
        except InvalidSpecError:
            thresholds = (1, 1)
        self.incident = incident
        self._during = IncidentChecks.resuming(
            incident.metrics_snapshot, failed_checks=incident.failed_checks
        )
        self.detector = Detector.resuming(
            failure_threshold=thresholds[0],
            success_threshold=thresholds[1],
            started_at=incident.started_at,
            failed_checks=incident.failed_checks,
        )
        logger.info("%s: continuing open incident %s", self.ref, incident.incident_id)
        self._emit(IncidentEventKind.RESUMED, incident)

    async def _open_in_store(self) -> Incident | None:
        if self._deps.open_incidents is not None:
            return await self._deps.open_incidents.in_store(self.ref)
        return await self._deps.store.get_open_incident(self.ref)

    async def _open_in_resources(
        self, snapshot: SpecSnapshot, *, store_answered: bool
    ) -> Incident | None:
        """The open incident of the CRs, reconciled with a store that has none open."""
        try:
            if self._deps.open_incidents is not None:
                found = await self._deps.open_incidents.in_resources(self.ref)
            else:
                found = await self._deps.resources.find_open_incident(self.ref)
        except Exception as exc:
            logger.warning("%s: no open incident reloaded from the CRs: %s", self.ref, exc)
            return None
        if found is None or not store_answered:
            return found
        try:
            async with asyncio.timeout(self._deps.reload_timeout):
                stored = await self._deps.store.get_incident(found.incident_id)
        except Exception as exc:  # the store went away meanwhile: the CR is what we have
            logger.warning("%s: store unavailable at start (%s)", self.ref, exc)
            return found
        if stored is None:
            logger.warning(
                "%s: open incident %s is only in its DowntimeIncident (its row was lost);"
                " writing the row again",
                self.ref,
                found.incident_id,
            )
            plan = metrics = None
            with contextlib.suppress(InvalidSpecError):
                spec = parse_monitor_spec(snapshot.spec)
                plan, metrics = self._capture_plan(spec, found), plan_metrics(spec)
            self._emit(IncidentEventKind.RESTORED, found, capture_plan=plan, metrics_plan=metrics)
            return found
        if stored.status is IncidentStatus.RESOLVED:
            logger.info(
                "%s: incident %s was resolved in the store; updating its DowntimeIncident",
                self.ref,
                stored.incident_id,
            )
            self._emit(IncidentEventKind.CORRECTED, stored)
            return None
        return stored

    def _emit(
        self,
        kind: IncidentEventKind,
        incident: Incident,
        *,
        capture_plan: CapturePlan | None = None,
        metrics_plan: MetricsPlan | None = None,
        escalation: SeverityChange | None = None,
        notes: str | None = None,
        resolved_by: ResolvedBy = ResolvedBy.RECOVERY,
    ) -> None:
        """Publish a copy of the incident as it is now: the runner goes on changing its own."""
        self._deps.events.publish(
            IncidentEvent(
                kind=kind,
                incident=dataclasses.replace(incident),
                capture_plan=capture_plan,
                metrics_plan=metrics_plan,
                escalation=escalation,
                notes=notes,
                resolved_by=resolved_by,
                channels=self._channels,
                context=None
                if self._spec is None
                else context_scope(self._spec, namespace=self.ref.namespace),
            )
        )

    def _open(self, spec: MonitorSpec, opened: Opened) -> None:
        failure = opened.last_failure
        snapshot, self._during = self._history.at_detection(
            started_at=opened.started_at, failed_checks=opened.failed_checks
        )
        incident = Incident(
            incident_id=uuid4(),
            monitor=self.ref,
            k8s_name=incident_resource_name(
                monitor_name=self.ref.name, started_at=opened.started_at
            ),
            health_endpoint=spec.url,
            environment=spec.environment,
            started_at=opened.started_at,
            detected_at=opened.detected_at,
            severity=effective_severity(
                base=spec.severity,
                escalation=spec.escalation,
                elapsed=opened.detected_at - opened.started_at,
            ),
            error_message=failure.error,
            http_status_code=failure.status_code,
            response_body=failure.body_excerpt,
            failed_checks=opened.failed_checks,
            metrics_snapshot=snapshot,
            server_info=failure.server,
            playbook=spec.playbook,
        )
        self.incident = incident
        self._failed_checks_written_at = opened.detected_at
        plan = self._capture_plan(spec, incident)
        self._emit(
            IncidentEventKind.OPENED, incident, capture_plan=plan, metrics_plan=plan_metrics(spec)
        )

    def _capture_plan(self, spec: MonitorSpec, incident: Incident) -> CapturePlan:
        """The logs around this outage; the incident shows the plan's state."""
        plan = plan_capture(spec.log_capture, loki_configured=self._deps.loki_configured)
        incident.logs_state = LogCaptureState.PENDING if plan.enabled else LogCaptureState.DISABLED
        return plan

    def _still_down(self, spec: MonitorSpec, down: StillDown) -> None:
        incident = self.incident
        if incident is None:
            return
        incident.failed_checks = down.failed_checks
        severity = effective_severity(
            base=spec.severity,
            escalation=spec.escalation,
            elapsed=down.last_failure.at - incident.started_at,
        )
        now = down.last_failure.at
        if severity == incident.severity:
            # The count goes on rising with each check; written at most once per status sync
            # period (like lastCheck), so a long outage shows it without a write per check.
            written = self._failed_checks_written_at
            if written is None or now - written >= self._deps.status_sync_period:
                self._failed_checks_written_at = now
                self._emit(IncidentEventKind.CHECKS_REFRESHED, incident)
            return
        change = SeverityChange(at=now, previous=incident.severity, severity=severity)
        incident.severity = severity
        self._failed_checks_written_at = now
        self._emit(IncidentEventKind.ESCALATED, incident, escalation=change)

    def _resolve(self, *, ended_at: datetime, notes: str | None, resolved_by: ResolvedBy) -> None:
        incident = self.incident
        if incident is None:
            return
        incident.status = IncidentStatus.RESOLVED
        incident.ended_at = ended_at
        incident.duration_seconds = max(0.0, (ended_at - incident.started_at).total_seconds())
        if notes:
            incident.notes = f"{incident.notes}\n{notes}" if incident.notes else notes
        if self._during is not None:
            incident.metrics_snapshot = resolution_snapshot(
                incident.metrics_snapshot,
                during=self._during.summary(),
                started_at=incident.started_at,
            )
            self._during = None
        # The store makes the final capture due when it resolves; show it as pending meanwhile.
        incident.logs_state = state_at_resolution(incident.logs_state)
        self._emit(IncidentEventKind.RESOLVED, incident, notes=notes, resolved_by=resolved_by)
        self.incident = None

    def _report_invalid(self, exc: InvalidSpecError, generation: int | None) -> None:
        text = str(exc)
        if self._reported_invalid != text:
            self._reported_invalid = text
            logger.error("%s: invalid spec: %s", self.ref, text)
            self._post_event(reason=exc.reason, message=text, warning=True)
        facts = StatusFacts(
            state=MonitorState.UNKNOWN,
            consecutive_failures=0,
            current_incident=self.incident.k8s_name if self.incident else None,
            observed_generation=generation,
            shard=self._deps.shard,
            conditions=(
                Condition(type="SpecValid", status="False", reason=exc.reason, message=text),
            ),
        )
        self._write_status(facts, last_check=None)

    def _sync_status(
        self,
        spec: MonitorSpec,
        generation: int | None,
        *,
        last_check: CheckResult | None = None,
        paused: bool = False,
        maintenance: bool = False,
    ) -> None:
        detector = self._detector_for(spec)
        self._reported_invalid = None
        failing = last_check is not None and not last_check.ok
        conditions = [
            Condition(type="SpecValid", status="True", reason="Valid", message="spec accepted")
        ]
        facts = StatusFacts(
            state=_shown_state(detector, paused=paused, maintenance=maintenance),
            consecutive_failures=detector.consecutive_failures if failing else 0,
            current_incident=self.incident.k8s_name if self.incident else None,
            observed_generation=generation,
            conditions=tuple(conditions),
            shard=self._deps.shard,
        )
        self._write_status(facts, last_check=last_check)

    def _write_status(self, facts: StatusFacts, *, last_check: CheckResult | None) -> None:
        """Hand the status over if anything is worth writing; the check goes on meanwhile."""
        now = self._deps.clock.now()
        uptime = None
        # Uptime rides with the periodic refresh: one not read yet (the store down, or not
        # migrated yet at start) comes with the next one, never as a write of its own.
        slo = None
        if last_check is not None and self._status.periodic_due(now):
            uptime = self._deps.uptime.uptime(self.ref, created_at=self._created_at)
            slo = self._slo_view()
        patch = self._status.patch_for(
            facts, last_check=last_check, now=now, uptime=uptime, slo=slo
        )
        if patch is not None:
            # A failed write is skipped (a status is a view, not a record) and sent whole next
            # time.
            self._deps.status.offer(
                self.ref, patch.body, urgent=patch.urgent, on_failure=self._status.forget
            )

    def _slo_view(self) -> dict[str, object] | None:
        """``status.slo`` as of the board's last read; the burn-rate rules that started firing
        since the last refresh are announced (a Warning Event and a ``budgetBurn`` message to
        the monitor's channels each)."""
        spec = self._spec
        if spec is None or spec.slo is None:
            return None
        objective = spec.slo
        timeline = self._deps.uptime.timeline(self.ref, created_at=self._created_at)
        if timeline is None:
            return None
        for alert in self._burn.update(
            rules=self._deps.burn_rules,
            rate=lambda window: timeline.burn_rate(window, target=objective.target),
        ):
            self._post_event(reason="BudgetBurn", message=burn_message(alert), warning=True)
            if self._deps.burn_notices is not None:
                self._deps.burn_notices.announce(
                    monitor=self.ref,
                    channels=spec.notifications,
                    url=spec.url,
                    environment=spec.environment,
                    alert=alert,
                )
        figures = slo_figures(objective, timeline=timeline)
        if self._deps.slo_observer is not None:
            self._deps.slo_observer(self.ref, figures)
        return figures.status_view()

    def _post_event(self, *, reason: str, message: str, warning: bool) -> None:
        """Post an Event about the monitor's spec without holding up the check."""
        task = asyncio.create_task(
            self._post_event_now(reason=reason, message=message, warning=warning),
            name=f"event {reason} on {self.ref}",
        )
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    async def _post_event_now(self, *, reason: str, message: str, warning: bool) -> None:
        try:
            await self._deps.resources.post_event(
                self.ref, reason=reason, message=message, warning=warning
            )
        except Exception as exc:
            logger.warning("%s: event %s not posted: %s", self.ref, reason, exc)
