"""The Kubernetes context of an incident: what ran behind the endpoint, and what changed there.

A monitor's ``spec.targetRef`` (``{kind: Service|Deployment|StatefulSet, name}`` in its
namespace), or the Service its URL names (``http://NAME.NS.svc[.cluster.local]``), points at
the workload behind the endpoint. At detection and at resolution the operator reads that
namespace's pods, ReplicaSets, EndpointSlices and Warning Events once (for every incident of
the round) and keeps, for each incident, a ``ContextSnapshot``: the pods behind the target,
its ready endpoints, its rollouts and the Warning Events of those objects within the capture
window (the log capture's window, ``window.capture_window``).

The probable causes are rules over that snapshot, each with the facts that support it. When no
rule applies the snapshot says "no change found": a wrong guess in a post-mortem costs more
than an honest blank.

Pure: the objects come in as the plain dicts the API server returns (camelCase JSON).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

if TYPE_CHECKING:  # models imports TargetKind from here
    from downtime_operator.domain.models import MonitorSpec

NO_CHANGE_FOUND = "no change found"
TARGET_NOT_FOUND = "not found"
"""What the context says when no rule is supported by what was read."""

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
STATEFULSET_REVISION_LABEL = "controller-revision-hash"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
OOM_KILLED = "OOMKilled"
PODS_KEPT = 20
EVENTS_KEPT = 20
ROLLOUTS_KEPT = 10
MESSAGE_CHARS = 256
"""Caps that keep a snapshot small (it is a JSON column and a CR status summary)."""


class TargetKind(enum.StrEnum):
    SERVICE = "Service"
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRef:
    """The workload behind a monitor's endpoint, in the monitor's namespace."""

    kind: TargetKind
    name: str
    namespace: str
    inferred: bool = False
    """Found from an in-cluster Service URL rather than named by ``spec.targetRef``."""

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextScope:
    """What one incident's context is read for: the target, and the capture window's margins."""

    target: TargetRef
    before: timedelta
    after: timedelta


_SERVICE_HOST = re.compile(
    r"^(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"\.svc(\.cluster\.local)?\.?$"
)


def infer_target(url: str) -> TargetRef | None:
    """The Service an in-cluster URL names (``NAME.NS.svc[.cluster.local]``), else None."""
    host = (urlsplit(url).hostname or "").lower()
    found = _SERVICE_HOST.match(host)
    if found is None:
        return None
    return TargetRef(
        kind=TargetKind.SERVICE,
        name=found["name"],
        namespace=found["namespace"],
        inferred=True,
    )


def context_target(
    *, named: tuple[TargetKind, str] | None, url: str, namespace: str
) -> TargetRef | None:
    """``spec.targetRef`` when the monitor names one, else the Service its URL names.

    A URL naming a Service of another namespace is no target: what the monitor's namespace
    may read is all the operator reads for it.
    """
    if named is not None:
        return TargetRef(kind=named[0], name=named[1], namespace=namespace)
    inferred = infer_target(url)
    if inferred is None or inferred.namespace != namespace:
        return None
    return inferred


def context_scope(spec: MonitorSpec, *, namespace: str) -> ContextScope | None:
    """What a monitor's incidents get the context of; None when it names no target."""
    target = context_target(named=spec.target_ref, url=spec.url, namespace=namespace)
    if target is None:
        return None
    return ContextScope(target=target, before=spec.log_capture.before, after=spec.log_capture.after)


@dataclass(frozen=True, kw_only=True)
class NamespaceObjects:
    """One namespace's objects, read once for every incident of a round."""

    pods: Sequence[Mapping[str, Any]] = ()
    replicasets: Sequence[Mapping[str, Any]] = ()
    endpointslices: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()
    unreadable: Mapping[str, str] = field(default_factory=dict)
    """Resource (``pods``, ``events``…) -> why it could not be read (``forbidden``…)."""


@dataclass(frozen=True, kw_only=True)
class TargetObject:
    """The target as read: its body, or why there is none (``not found``, ``forbidden``)."""

    body: Mapping[str, Any] | None = None
    problem: str | None = None


class ContextStage(enum.StrEnum):
    DETECTION = "detection"
    RESOLUTION = "resolution"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodState:
    name: str
    ready: bool
    phase: str | None
    restarts: int
    last_termination_reason: str | None = None
    last_exit_code: int | None = None
    last_terminated_at: datetime | None = None
    replicaset: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """A revision of the target's workload and when it appeared.

    For a Deployment: one of its ReplicaSets, created with the revision. For a StatefulSet (whose
    ControllerRevisions the operator does not read): a ``controller-revision-hash`` its pods
    carry, appearing when the first pod of it was created.
    """

    deployment: str
    """The workload's name (named for the Deployments it was first written for)."""
    replicaset: str
    """The ReplicaSet, or the StatefulSet's revision name."""
    revision: int | None
    created_at: datetime | None
    replicas: int = 0
    """The ReplicaSet's desired replicas, or the StatefulSet's pods at this revision."""
    owner_kind: str = "Deployment"


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningEvent:
    object_kind: str
    object_name: str
    reason: str
    message: str
    count: int
    last_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbableCause:
    rule: str
    summary: str
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextSnapshot:
    stage: ContextStage
    taken_at: datetime
    target: str
    """``Kind name`` as read, e.g. ``Service api``."""
    target_found: bool
    target_problem: str | None = None
    """Why the target could not be read (``not found``, ``forbidden``)."""
    window_start: datetime
    window_end: datetime
    pods_total: int = 0
    pods_ready: int = 0
    pods: tuple[PodState, ...] = ()
    ready_endpoints: int | None = None
    """None when no EndpointSlice belongs to the target (no Service in front of it)."""
    endpoints_total: int | None = None
    rollouts: tuple[Rollout, ...] = ()
    events: tuple[WarningEvent, ...] = ()
    unreadable: tuple[str, ...] = ()
    """What could not be read and why (``pods: forbidden``): recorded, never guessed around."""
    causes: tuple[ProbableCause, ...] = ()

    @property
    def top_cause(self) -> str:
        return self.causes[0].summary if self.causes else NO_CHANGE_FOUND


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _owners(body: Mapping[str, Any], kind: str) -> set[str]:
    return {
        str(owner.get("name"))
        for owner in _meta(body).get("ownerReferences") or ()
        if owner.get("kind") == kind
    }


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """A LabelSelector (``matchLabels`` and ``matchExpressions``) against an object's labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or ()
        present = key in labels
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels.get(key) in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def target_selector(target: TargetRef, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The target's pod selector as a LabelSelector; None when it selects nothing.

    A Service's ``spec.selector`` is a plain label map; a Service without one (endpoints
    managed by hand) selects no pods, and an empty workload selector would select every pod
    of the namespace: neither is taken as "these are its pods".
    """
    spec = body.get("spec") or {}
    raw = spec.get("selector") or {}
    if target.kind is TargetKind.SERVICE:
        return {"matchLabels": dict(raw)} if raw else None
    if not raw.get("matchLabels") and not raw.get("matchExpressions"):
        return None
    return dict(raw)


def _pod_state(body: Mapping[str, Any]) -> PodState:
    status = body.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    restarts = 0
    last: tuple[datetime | None, str | None, int | None] = (None, None, None)
    for container in status.get("containerStatuses") or ():
        restarts += int(container.get("restartCount") or 0)
        terminated = (container.get("lastState") or {}).get("terminated") or (
            container.get("state") or {}
        ).get("terminated")
        if not terminated:
            continue
        at = _timestamp(terminated.get("finishedAt"))
        if last[1] is None or (at is not None and (last[0] is None or at > last[0])):
            last = (at, terminated.get("reason"), terminated.get("exitCode"))
    replicasets = sorted(_owners(body, "ReplicaSet"))
    return PodState(
        name=str(_meta(body).get("name")),
        ready=ready,
        phase=status.get("phase"),
        restarts=restarts,
        last_termination_reason=last[1],
        last_exit_code=last[2],
        last_terminated_at=last[0],
        replicaset=replicasets[0] if replicasets else None,
    )


def _revision(body: Mapping[str, Any]) -> int | None:
    value = (_meta(body).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _rollouts(
    *, deployments: set[str], replicasets: Iterable[Mapping[str, Any]]
) -> tuple[Rollout, ...]:
    """The Deployments' ReplicaSets, newest revision first."""
    found = [
        Rollout(
            deployment=sorted(owners)[0],
            replicaset=str(_meta(rs).get("name")),
            revision=_revision(rs),
            created_at=_timestamp(_meta(rs).get("creationTimestamp")),
            replicas=int((rs.get("spec") or {}).get("replicas") or 0),
        )
        for rs in replicasets
        if (owners := _owners(rs, "Deployment") & deployments)
    ]
    found.sort(
        key=lambda r: (r.revision or 0, r.created_at.timestamp() if r.created_at else 0.0),
        reverse=True,
    )
    return tuple(found[:ROLLOUTS_KEPT])


def _statefulset_rollouts(
    name: str, body: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> tuple[Rollout, ...]:
    """The revisions a StatefulSet's pods are at, its update revision first.

    A StatefulSet rolls out pod by pod, newest ordinal first, and a new revision that does not
    become ready stops there: pods at two revisions (or ``currentRevision`` differing from
    ``updateRevision``) are a rollout in progress, and the first pod of the update revision
    says when it began.
    """
    status = body.get("status") or {}
    update, current = status.get("updateRevision"), status.get("currentRevision")
    first: dict[str, datetime | None] = {}
    count: dict[str, int] = {}
    for pod in pods:
        revision = (_meta(pod).get("labels") or {}).get(STATEFULSET_REVISION_LABEL)
        if not revision:
            continue
        created = _timestamp(_meta(pod).get("creationTimestamp"))
        earlier = first.get(revision)
        first[revision] = created if earlier is None or (created and created < earlier) else earlier
        count[revision] = count.get(revision, 0) + 1
    for known in (update, current):
        if known and known not in first:
            first[known], count[known] = None, 0

    def newest_first(revision: str) -> tuple[bool, float]:
        created = first[revision]
        return revision != update, -(created.timestamp() if created else 0.0)

    ordered = sorted(first, key=newest_first)
    return tuple(
        Rollout(
            deployment=name,
            replicaset=revision,
            revision=None,
            created_at=first[revision],
            replicas=count[revision],
            owner_kind=TargetKind.STATEFULSET.value,
        )
        for revision in ordered[:ROLLOUTS_KEPT]
    )


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        at = _timestamp(event.get(key))
        if at is not None:
            return at
    return _timestamp(_meta(event).get("creationTimestamp"))


def _warning_events(
    events: Iterable[Mapping[str, Any]],
    *,
    objects: set[tuple[str, str]],
    start: datetime,
    end: datetime,
) -> tuple[WarningEvent, ...]:
    kept: list[WarningEvent] = []
    for event in events:
        involved = event.get("involvedObject") or event.get("regarding") or {}
        key = (str(involved.get("kind")), str(involved.get("name")))
        at = _event_time(event)
        if event.get("type") != "Warning" or key not in objects:
            continue
        if at is None or not start <= at < end:
            continue
        kept.append(
            WarningEvent(
                object_kind=key[0],
                object_name=key[1],
                reason=str(event.get("reason") or ""),
                message=str(event.get("message") or event.get("note") or "")[:MESSAGE_CHARS],
                count=int(event.get("count") or 1),
                last_at=at,
            )
        )
    kept.sort(key=lambda e: e.last_at or start, reverse=True)
    return tuple(kept[:EVENTS_KEPT])


def _endpoints(
    *,
    target: TargetRef,
    slices: Iterable[Mapping[str, Any]],
    pod_names: set[str],
) -> tuple[int | None, int | None]:
    """(ready, total) endpoints of the target; (None, None) when no slice is the target's.

    A Service's slices carry its name as a label; a workload's are the slices whose endpoints
    are its pods (through whichever Service fronts them).
    """
    ready = total = 0
    seen = False
    for piece in slices:
        labels = _meta(piece).get("labels") or {}
        endpoints = piece.get("endpoints") or ()
        if target.kind is TargetKind.SERVICE:
            if labels.get(SERVICE_NAME_LABEL) != target.name:
                continue
        else:
            endpoints = [
                e for e in endpoints if (e.get("targetRef") or {}).get("name") in pod_names
            ]
            if not endpoints:
                continue
        seen = True
        for endpoint in endpoints:
            total += 1
            # Kubernetes: a nil ``ready`` is to be read as ready.
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                ready += 1
    return (ready, total) if seen else (None, None)


def _seconds(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def probable_causes(
    snapshot: ContextSnapshot, *, first_failure_at: datetime
) -> tuple[ProbableCause, ...]:
    """The rules, most telling first; each only when what was read supports it."""
    causes: list[ProbableCause] = []
    start = snapshot.window_start
    newest = snapshot.rollouts[0] if snapshot.rollouts else None
    # A workload's only revision is its creation: a rollout replaces an earlier revision.
    replaced = newest is not None and any(
        r.deployment == newest.deployment for r in snapshot.rollouts[1:]
    )
    if (
        newest is not None
        and replaced
        and newest.created_at is not None
        and start <= newest.created_at <= first_failure_at
    ):
        lead = first_failure_at - newest.created_at
        statefulset = newest.owner_kind == TargetKind.STATEFULSET.value
        if statefulset:
            revision = f"revision {newest.replicaset}"
            evidence = (
                f"first pod of revision {newest.replicaset} created"
                f" {newest.created_at.isoformat()}; {newest.replicas} pods at it",
            )
        else:
            revision = (
                f"revision {newest.revision}" if newest.revision is not None else "a new revision"
            )
            evidence = (f"ReplicaSet {newest.replicaset} created {newest.created_at.isoformat()}",)
        causes.append(
            ProbableCause(
                rule="rollout",
                summary=f"{newest.owner_kind} {newest.deployment} rolled out to {revision},"
                f" {_seconds(lead)} before the first failed check",
                evidence=evidence,
            )
        )
    terminated = [
        pod
        for pod in snapshot.pods
        if pod.last_terminated_at is not None
        and start <= pod.last_terminated_at < snapshot.window_end
    ]
    oom = [pod for pod in terminated if pod.last_termination_reason == OOM_KILLED]
    if oom:
        causes.append(
            ProbableCause(
                rule="oomKilled",
                summary=f"{len(oom)} of {snapshot.pods_total} pods OOMKilled",
                evidence=tuple(_termination(pod) for pod in oom),
            )
        )
    crashed = [pod for pod in terminated if pod.last_termination_reason != OOM_KILLED]
    if crashed:
        causes.append(
            ProbableCause(
                rule="containersTerminated",
                summary=f"{len(crashed)} of {snapshot.pods_total} pods had a container terminate",
                evidence=tuple(_termination(pod) for pod in crashed),
            )
        )
    if snapshot.target_problem == TARGET_NOT_FOUND:
        causes.append(
            ProbableCause(rule="targetMissing", summary=f"{snapshot.target} does not exist")
        )
    if snapshot.ready_endpoints == 0:
        causes.append(
            ProbableCause(
                rule="noReadyEndpoints",
                summary="0 ready endpoints",
                evidence=(f"{snapshot.endpoints_total} endpoints, none ready",),
            )
        )
    if snapshot.target_found and snapshot.pods_total and not snapshot.pods_ready:
        causes.append(
            ProbableCause(
                rule="noReadyPods",
                summary=f"0 of {snapshot.pods_total} pods ready",
                evidence=tuple(
                    f"pod {pod.name}: {pod.phase or 'no phase'}" for pod in snapshot.pods
                ),
            )
        )
    if snapshot.events:
        reasons = sorted({event.reason for event in snapshot.events})
        causes.append(
            ProbableCause(
                rule="warningEvents",
                summary=f"{len(snapshot.events)} Warning events ({', '.join(reasons)})",
                evidence=tuple(
                    f"{e.object_kind} {e.object_name}: {e.reason} x{e.count}: {e.message}"
                    for e in snapshot.events
                ),
            )
        )
    return tuple(causes)


def _termination(pod: PodState) -> str:
    at = pod.last_terminated_at.isoformat() if pod.last_terminated_at else "unknown time"
    return (
        f"pod {pod.name}: {pod.last_termination_reason or 'terminated'}"
        f" (exit code {pod.last_exit_code}) at {at}, {pod.restarts} restarts"
    )


def take_snapshot(
    *,
    stage: ContextStage,
    target: TargetRef,
    found: TargetObject,
    objects: NamespaceObjects,
    window_start: datetime,
    window_end: datetime,
    first_failure_at: datetime,
    taken_at: datetime,
) -> ContextSnapshot:
    """The target's context from its namespace's objects, with the causes they support."""
    unreadable = [f"{resource}: {why}" for resource, why in sorted(objects.unreadable.items())]
    if found.problem is not None and found.problem != TARGET_NOT_FOUND:
        unreadable.append(f"target: {found.problem}")
    selector = None if found.body is None else target_selector(target, found.body)
    pods = [
        pod
        for pod in objects.pods
        if selector is not None and _selector_matches(selector, _meta(pod).get("labels") or {})
    ]
    states = sorted((_pod_state(pod) for pod in pods), key=lambda p: p.name)
    pod_names = {state.name for state in states}
    own_replicasets = {state.replicaset for state in states if state.replicaset}
    deployments = {
        owner
        for rs in objects.replicasets
        if _meta(rs).get("name") in own_replicasets
        for owner in _owners(rs, "Deployment")
    }
    if target.kind is TargetKind.DEPLOYMENT and found.body is not None:
        deployments.add(target.name)
    rollouts = _rollouts(deployments=deployments, replicasets=objects.replicasets)
    if target.kind is TargetKind.STATEFULSET and found.body is not None:
        rollouts = _statefulset_rollouts(target.name, found.body, pods) + rollouts
    involved = {("Pod", name) for name in pod_names}
    involved |= {("ReplicaSet", r.replicaset) for r in rollouts if r.owner_kind == "Deployment"}
    involved |= {("Deployment", name) for name in deployments}
    involved.add((target.kind.value, target.name))
    ready, total = _endpoints(target=target, slices=objects.endpointslices, pod_names=pod_names)
    snapshot = ContextSnapshot(
        stage=stage,
        taken_at=taken_at,
        target=str(target),
        target_found=found.body is not None,
        target_problem=found.problem,
        window_start=window_start,
        window_end=window_end,
        pods_total=len(states),
        pods_ready=sum(1 for state in states if state.ready),
        pods=tuple(states[:PODS_KEPT]),
        ready_endpoints=ready,
        endpoints_total=total,
        rollouts=rollouts,
        events=_warning_events(
            objects.events, objects=involved, start=window_start, end=window_end
        ),
        unreadable=tuple(unreadable),
    )
    return _with_causes(snapshot, first_failure_at=first_failure_at)


def _with_causes(snapshot: ContextSnapshot, *, first_failure_at: datetime) -> ContextSnapshot:
    return replace(snapshot, causes=probable_causes(snapshot, first_failure_at=first_failure_at))


_SNAPSHOT: TypeAdapter[ContextSnapshot] = TypeAdapter(ContextSnapshot)


def context_snapshot_json(snapshot: ContextSnapshot) -> dict[str, Any]:
    """The snapshot as stored (one stage of the incident's ``kube_context``)."""
    stored: dict[str, Any] = _SNAPSHOT.dump_python(snapshot, mode="json")
    return stored


def context_record(stored: Mapping[str, Any] | None) -> dict[ContextStage, ContextSnapshot]:
    """The stored ``kube_context`` (``{stage: snapshot}``) read back; unreadable stages are
    left out rather than failing the incident's read."""
    record: dict[ContextStage, ContextSnapshot] = {}
    for stage in ContextStage:
        raw = (stored or {}).get(stage.value)
        if raw is None:
            continue
        try:
            record[stage] = _SNAPSHOT.validate_python(raw)
        except ValidationError:
            continue
    return record


def record_causes(record: Mapping[ContextStage, ContextSnapshot]) -> tuple[ProbableCause, ...]:
    """The causes of the incident: detection's first (what was seen when it started), then
    those only resolution's snapshot supports."""
    causes: list[ProbableCause] = []
    for stage in ContextStage:
        snapshot = record.get(stage)
        if snapshot is None:
            continue
        rules = {cause.rule for cause in causes}
        causes.extend(cause for cause in snapshot.causes if cause.rule not in rules)
    return tuple(causes)


CAUSES_SHOWN = 3


def context_summary(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``status.context`` of the DowntimeIncident: the top causes and the latest counts. The
    full record (pods, rollouts, events, evidence) is the incident's ``kube_context``."""
    record = context_record(stored)
    if not record:
        return None
    latest = record.get(ContextStage.RESOLUTION) or record[ContextStage.DETECTION]
    causes = record_causes(record)
    # Cut to the CRD's limits: a status the API server refuses would show nothing at all.
    shown = [cause.summary[:MESSAGE_CHARS] for cause in causes[:CAUSES_SHOWN]]
    summary: dict[str, Any] = {
        "target": latest.target,
        "stage": latest.stage.value,
        "topCause": shown[0] if shown else NO_CHANGE_FOUND,
        "probableCauses": shown,
        "podsReady": f"{latest.pods_ready}/{latest.pods_total}",
        "readyEndpoints": latest.ready_endpoints,
        "unreadable": list(latest.unreadable),
    }
    # Every key, None included: merged into the status, a null removes what an earlier stage
    # showed (no ready endpoints counted any more) instead of leaving it stale.
    return summary
