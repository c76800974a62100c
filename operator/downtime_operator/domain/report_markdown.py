"""An incident report as Markdown, for people: the admin API's default answer and the CLI's.

What people wrote (root cause, notes) and what the endpoint or the logs said (errors, top error
messages) is shown as text, never as Markdown structure: table cells have their pipes escaped
and lines joined, recorded JSON and notes go in fenced blocks long enough for any backticks
inside, so no stored text can break the report's layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from downtime_operator.domain.kube_context import NO_CHANGE_FOUND, ContextSnapshot
from downtime_operator.domain.notifications.render import format_seconds, is_link
from downtime_operator.domain.prometheus import summarize
from downtime_operator.domain.report import IncidentReport, LogFindings, format_time

NOT_RECORDED = "not recorded"


def render_markdown(report: IncidentReport) -> str:
    facts = report.facts
    title = facts.k8s_name or str(facts.incident_id)
    sections = [
        f"# Incident report: {_inline(title)}",
        "## Summary",
        _items(
            [
                ("Monitor", facts.monitor or "none (recorded before the operator)"),
                ("Endpoint", facts.health_endpoint),
                ("Environment", facts.environment),
                ("Severity", facts.severity),
                ("Status", facts.status),
                ("Incident ID", str(facts.incident_id)),
            ]
        ),
        "## Impact",
        _impact(report),
        "## Timeline",
        _table(("Time", "Event"), [(format_time(e.at), e.event) for e in report.timeline]),
        "## Evidence",
        "### Metrics snapshot",
        _recorded(_without_prometheus(facts.metrics_snapshot)),
        "### Prometheus series",
        _prometheus(facts.metrics_snapshot),
        "### Server info",
        _recorded(facts.server_info),
        "### Kubernetes context and probable causes",
        _context(report),
        "### Logs",
        f"Log capture: {_inline(report.log_capture)}.",
        _findings(report.findings),
        "## Playbook",
        _playbook(facts.playbook),
        "## Root cause",
        _fenced(facts.root_cause, "text") if facts.root_cause else NOT_RECORDED,
        "## Notes",
        _fenced(facts.notes, "text") if facts.notes else "none",
    ]
    return "\n\n".join(sections) + "\n"


def _impact(report: IncidentReport) -> str:
    facts = report.facts
    seconds = facts.duration
    if facts.ended_at is None or seconds is None:
        duration = f"ongoing since {format_time(facts.started_at)}"
    else:
        duration = (
            f"{format_seconds(seconds)} ({seconds:g} s, {format_time(facts.started_at)}"
            f" to {format_time(facts.ended_at)})"
        )
    error = facts.error_message or "unknown"
    if facts.http_status_code is not None:
        error += f" (HTTP status {facts.http_status_code})"
    changes = "; ".join(
        f"from {change.previous} to {change.severity} at {format_time(change.at)}"
        for change in report.severity_changes
    )
    return _items(
        [
            ("Duration", duration),
            ("Failed checks", str(facts.failed_checks)),
            ("Error", error),
            ("Severity changes", changes or "none"),
        ]
    )


def _playbook(playbook: str | None) -> str:
    """A link as a link (``<url>``); text, like what people wrote, in a fenced block."""
    if not playbook:
        return "none"
    if is_link(playbook) and not {"<", ">"} & set(playbook):
        return f"<{playbook}>"
    return _fenced(playbook, "text")


def _context(report: IncidentReport) -> str:
    if not report.context:
        return f"{NOT_RECORDED} (the monitor names no Kubernetes target)."
    read = _items(
        [
            (f"At {stage.value}", _snapshot_line(snapshot))
            for stage, snapshot in report.context.items()
        ]
    )
    causes = report.probable_causes
    if not causes:
        return f"{read}\n\nProbable causes: {NO_CHANGE_FOUND} (nothing read supports one)."
    listed = "\n".join(
        f"{number}. {_inline(cause.summary)}"
        + "".join(f"\n   - {_inline(line)}" for line in cause.evidence)
        for number, cause in enumerate(causes, start=1)
    )
    return f"{read}\n\nProbable causes, most telling first:\n\n{listed}"


def _snapshot_line(snapshot: ContextSnapshot) -> str:
    if not snapshot.target_found:
        return f"{snapshot.target}: {snapshot.target_problem or 'not read'}"
    endpoints = (
        "no endpoints found"
        if snapshot.ready_endpoints is None
        else f"{snapshot.ready_endpoints} of {snapshot.endpoints_total} endpoints ready"
    )
    facts = [
        f"{snapshot.pods_ready} of {snapshot.pods_total} pods ready",
        endpoints,
        f"{sum(p.restarts for p in snapshot.pods)} restarts",
        f"{len(snapshot.events)} Warning events",
    ]
    if snapshot.rollouts:
        newest = snapshot.rollouts[0]
        if newest.revision is None:
            facts.append(f"newest revision {newest.replicaset}")
        else:
            facts.append(f"newest revision {newest.revision} ({newest.replicaset})")
    facts.extend(f"unreadable {what}" for what in snapshot.unreadable)
    return f"{snapshot.target} at {format_time(snapshot.taken_at)}: {', '.join(facts)}"


def _findings(findings: LogFindings | None) -> str:
    if findings is None:
        return f"Log analysis: {NOT_RECORDED}."
    counts = (
        f"Log analysis: {findings.total_logs} lines, {findings.error_count} errors,"
        f" {findings.warning_count} warnings."
    )
    parts = [counts]
    if findings.error_types:
        ranked = sorted(findings.error_types.items(), key=lambda kv: (-kv[1], kv[0]))
        parts.append(
            "Error types: " + ", ".join(f"{_inline(name)} ({n})" for name, n in ranked) + "."
        )
    if findings.top_errors:
        parts.append(
            _table(("Count", "Top error"), [(str(e.count), e.message) for e in findings.top_errors])
        )
    return "\n\n".join(parts)


def _without_prometheus(snapshot: Any) -> Any:
    """The checks' part; the series are summarised in their own section (the JSON report and
    the incident detail carry every point)."""
    if isinstance(snapshot, dict) and "prometheus" in snapshot:
        return {key: value for key, value in snapshot.items() if key != "prometheus"} or None
    return snapshot


def _prometheus(snapshot: Any) -> str:
    stored = snapshot.get("prometheus") if isinstance(snapshot, dict) else None
    if not isinstance(stored, dict):
        return f"{NOT_RECORDED} (the monitor lists no spec.metrics)."
    if stored.get("error"):
        return f"Not fetched: {_inline(str(stored['error']))}."
    window = (
        f"From {_inline(str(stored.get('window_start')))} to"
        f" {_inline(str(stored.get('window_end')))}, a point every"
        f" {stored.get('step_seconds')} s"
        + ("." if stored.get("final") else " (so far: the final fetch is still due).")
    )
    rows = [
        (
            f"{summary.name}: {summary.query}",
            str(summary.series),
            _value(summary.lowest),
            _value(summary.highest),
            _value(summary.last),
            summary.note,
        )
        for summary in summarize(stored)
    ]
    table = _table(("Query", "Series", "Lowest", "Highest", "Last", "Note"), rows)
    return f"{window}\n\n{table}"


def _value(number: float | None) -> str:
    return "none" if number is None else f"{number:g}"


def _recorded(value: Any) -> str:
    if value is None:
        return NOT_RECORDED
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return _fenced(text, "json")


def _fenced(text: str, language: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _items(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"- {label}: {_inline(value)}" for label, value in pairs)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(_cell(cell) for cell in cells) + " |"

    return "\n".join(
        [line(header), "| " + " | ".join("---" for _ in header) + " |", *map(line, rows)]
    )


def _cell(text: str) -> str:
    return _inline(text).replace("|", "\\|")


def _inline(text: str) -> str:
    """One line: stored text may hold newlines, which would end a table row or a list item."""
    return " ".join(text.split())
