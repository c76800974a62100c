"""The wire content of notifications: Slack messages, PagerDuty events, emails, webhook bodies.

Pure functions of notices, so what a channel receives is tested without a network and a retry
sends the very same bytes. Every message says the same facts (README, "Notifications"):
monitor, URL, severity, error and status code, started/detected/ended, duration, incident id,
how to see it (``kubectl get dti`` and the admin API URL when one is configured), the
incident's playbook when its monitor has one, and for ``logsCaptured`` the top errors.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from downtime_operator.domain.notifications.channel import NotificationEvent, SeverityMap
from downtime_operator.domain.notifications.notice import Notice

MESSAGE_ID_DOMAIN = "downtime-operator"
SLACK_TEXT_MAX = 40_000
SLACK_BLOCKS_MAX = 50
SLACK_SECTION_MAX = 3_000
SLACK_FIELD_MAX = 2_000
SLACK_FIELDS_MAX = 10
SLACK_HEADER_MAX = 150
PAGERDUTY_SUMMARY_MAX = 1_024
SUBJECT_MAX = 200
DIGEST_ERROR_MAX = 120
"""A digest names many incidents: each line keeps its error short."""
DISPLAY_URL_MAX = 100
_WEBHOOK_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""Compact JSON of webhook bodies; one encoder, rather than one made by ``json.dumps`` for
every message."""

_TAGS = {
    NotificationEvent.OPENED: "DOWN",
    NotificationEvent.ESCALATED: "ESCALATED",
    NotificationEvent.ACKNOWLEDGED: "ACKNOWLEDGED",
    NotificationEvent.RESOLVED: "RESOLVED",
    NotificationEvent.LOGS_CAPTURED: "LOGS",
    NotificationEvent.REMINDER: "STILL DOWN",
    NotificationEvent.TEST: "TEST",
    NotificationEvent.BUDGET_BURN: "BUDGET BURN",
}
_PAGERDUTY_ACTIONS = {
    NotificationEvent.ACKNOWLEDGED: "acknowledge",
    NotificationEvent.RESOLVED: "resolve",
}
"""Every other event is a ``trigger``: PagerDuty de-duplicates it into the open alert."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _iso(moment: Any) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def format_seconds(seconds: float) -> str:
    """``3h 5m 12s``: the largest units that matter, for people (payloads keep the number)."""
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if rest or not parts:
        parts.append(f"{rest}s")
    return " ".join(parts)


def _duration(notice: Notice) -> str:
    if notice.ended_at is not None:
        seconds = notice.duration_seconds
        if seconds is None:
            seconds = (notice.ended_at - notice.started_at).total_seconds()
        return format_seconds(seconds)
    return f"ongoing for {format_seconds((notice.at - notice.started_at).total_seconds())}"


def _error(notice: Notice) -> str:
    error = _one_line(notice.error_message or "unknown error")
    return f"{error} (HTTP {notice.http_status})" if notice.http_status is not None else error


def title(notice: Notice) -> str:
    """One line naming the event and the monitor: a subject, a header, a summary's start."""
    tag = f"[{_TAGS[notice.event]}]"
    if notice.event is NotificationEvent.TEST:
        return f"{tag} downtime-operator notification test"
    if notice.event is NotificationEvent.BUDGET_BURN:
        return _one_line(f"{tag} {notice.monitor} {notice.notes}")
    what = {
        NotificationEvent.OPENED: f"{notice.severity}: {_error(notice)}",
        NotificationEvent.ESCALATED: f"{notice.previous_severity or '?'} → {notice.severity}",
        NotificationEvent.ACKNOWLEDGED: f"by {notice.actor}" if notice.actor else "investigating",
        NotificationEvent.RESOLVED: f"after {_duration(notice)}",
        NotificationEvent.LOGS_CAPTURED: f"{len(notice.top_errors)} top errors",
        NotificationEvent.REMINDER: f"{notice.severity}, {_duration(notice)}",
    }[notice.event]
    return _one_line(f"{tag} {notice.monitor} {what}")


def _about_an_incident(notice: Notice) -> bool:
    """A test or a budget burn names no DowntimeIncident to look at or thread under."""
    return notice.event not in (NotificationEvent.TEST, NotificationEvent.BUDGET_BURN)


def kubectl_hint(notice: Notice) -> str:
    return f"kubectl get dti {notice.k8s_name} -n {notice.monitor_namespace}"


def admin_url(notice: Notice, api_url: str | None) -> str | None:
    if not api_url:
        return None
    return f"{api_url.rstrip('/')}/admin/downtime/incidents/{notice.incident_id}"


def facts(notice: Notice, *, api_url: str | None) -> list[tuple[str, str]]:
    """The labelled facts every message shows, in reading order."""
    if notice.event is NotificationEvent.TEST:
        return [("Message", notice.notes or "")]
    if notice.event is NotificationEvent.BUDGET_BURN:
        return [
            ("Monitor", notice.monitor),
            ("URL", notice.url),
            ("Message", notice.notes or ""),
            ("See it", f"kubectl get hm {notice.monitor_name} -n {notice.monitor_namespace}"),
        ]
    shown = [
        ("Monitor", notice.monitor),
        ("URL", notice.url),
        ("Severity", str(notice.severity)),
        ("Error", _one_line(notice.error_message or "unknown error")),
        ("Status code", str(notice.http_status) if notice.http_status is not None else "none"),
        ("Started", _iso(notice.started_at) or ""),
        ("Detected", _iso(notice.detected_at) or ""),
        ("Ended", _iso(notice.ended_at) or "ongoing"),
        ("Duration", _duration(notice)),
        ("Incident", f"{notice.incident_id} ({notice.k8s_name})"),
        ("See it", kubectl_hint(notice)),
    ]
    link = admin_url(notice, api_url)
    if link:
        shown.append(("Admin API", link))
    if notice.playbook:
        shown.append(("Playbook", notice.playbook))
    if notice.notes:
        shown.append(("Notes", notice.notes))
    return shown


def is_link(text: str) -> bool:
    """One URL and nothing else is shown as a link: a playbook may also be text that merely
    starts with one."""
    return text.startswith(("http://", "https://")) and len(text.split()) == 1


def _top_error_lines(notice: Notice) -> list[str]:
    return [f"{_one_line(message)} ({count} times)" for message, count in notice.top_errors]


def _digest_title(notices: Sequence[Notice]) -> str:
    events = {n.event for n in notices}
    if len(events) == 1:
        event = events.pop()
        return f"[{_TAGS[event]}] {len(notices)} incidents {event.value}"
    return f"{len(notices)} incident notifications"


def _digest_line(notice: Notice) -> str:
    line = (
        f"{notice.monitor} ({notice.severity}): {_cut(_error(notice), DIGEST_ERROR_MAX)}"
        f" — {notice.k8s_name}"
    )
    if notice.playbook:
        line += f" — playbook: {_cut(_one_line(notice.playbook), DIGEST_ERROR_MAX)}"
    return line


# ------------------------------------------------------------------------------------- Slack


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its documentation asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str) -> str:
    label = _mrkdwn(_cut(url, DISPLAY_URL_MAX))
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{label}>" if url else ""


def slack_message(notices: Sequence[Notice], *, api_url: str | None) -> dict[str, Any]:
    """An incoming-webhook payload: one notice, one message; several, one compact digest.

    Within Slack's limits (text ≤ 40,000 chars, ≤ 50 blocks, sections ≤ 3,000, fields ≤ 2,000,
    header ≤ 150): a digest whose lines do not fit in blocks falls back to text lines.
    """
    if not notices:
        raise ValueError("a message needs at least one notice")
    if len(notices) == 1:
        return _slack_single(notices[0], api_url=api_url)
    return _slack_digest(notices, api_url=api_url)


def _slack_single(notice: Notice, *, api_url: str | None) -> dict[str, Any]:
    head = title(notice)
    shown = dict(facts(notice, api_url=api_url))
    see = [f"`{kubectl_hint(notice)}`"]
    link = shown.pop("Admin API", None)
    if link:
        see.append(_slack_link(link))
    shown.pop("See it", None)
    prose_labels = ("Message", "Error", "Playbook", "Notes")
    details = [
        f"*{label}*\n{_slack_link(value) if label == 'URL' else _mrkdwn(value)}"
        for label, value in shown.items()
        if label not in prose_labels
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(head, SLACK_HEADER_MAX)}}
    ]
    prose = [
        f"*{label}:* {_slack_prose(label, shown[label])}"
        for label in prose_labels
        if label in shown
    ]
    blocks.append(_section("\n".join(prose)))
    if details:
        fields = [
            {"type": "mrkdwn", "text": _cut(text, SLACK_FIELD_MAX)}
            for text in details[:SLACK_FIELDS_MAX]
        ]
        blocks.append({"type": "section", "fields": fields})
    if notice.top_errors:
        lines = "\n".join(f"• {_mrkdwn(line)}" for line in _top_error_lines(notice))
        blocks.append(_section(f"*Top errors*\n{lines}"))
    if _about_an_incident(notice):
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(see)}]}
        )
    plain = [head] + [f"{label}: {value}" for label, value in facts(notice, api_url=api_url)]
    return {"text": _cut("\n".join(plain), SLACK_TEXT_MAX), "blocks": blocks}


def _slack_prose(label: str, value: str) -> str:
    return _slack_link(value) if label == "Playbook" and is_link(value) else _mrkdwn(value)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SLACK_SECTION_MAX)}}


def _slack_digest(notices: Sequence[Notice], *, api_url: str | None) -> dict[str, Any]:
    head = _digest_title(notices)
    lines = [_digest_line(n) for n in notices]
    footer = "See one with `kubectl get dti NAME -n NAMESPACE`"
    if api_url:
        footer += f" · {_slack_link(api_url.rstrip('/') + '/admin/downtime/incidents/ongoing')}"
    sections: list[str] = []
    for line in (f"• {_mrkdwn(_cut(line, SLACK_SECTION_MAX - 2))}" for line in lines):
        if sections and len(sections[-1]) + 1 + len(line) <= SLACK_SECTION_MAX:
            sections[-1] += "\n" + line
        else:
            sections.append(line)
    if len(sections) + 2 <= SLACK_BLOCKS_MAX:
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _cut(head, SLACK_HEADER_MAX)},
            },
            *(_section(text) for text in sections),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]},
        ]
        return {"text": head, "blocks": blocks}
    return {"text": _fit_lines(head, lines, SLACK_TEXT_MAX)}


def _fit_lines(head: str, lines: Sequence[str], limit: int) -> str:
    """``head`` and as many whole lines as fit in ``limit``, then how many were left out."""
    text = head
    for shown, line in enumerate(lines):
        rest = len(lines) - shown
        tail = f"\n… and {rest - 1} more" if rest > 1 else ""
        if len(text) + 1 + len(line) + len(tail) > limit:
            return text + f"\n… and {rest} more"
        text += "\n" + line
    return text


# --------------------------------------------------------------------------------- PagerDuty


def pagerduty_event(
    notice: Notice, *, routing_key: str, severity_map: SeverityMap, api_url: str | None = None
) -> dict[str, Any]:
    """An Events API v2 event (``POST /v2/enqueue``) whose ``dedup_key`` is the incident id.

    One alert per incident: its trigger, reminders and escalations de-duplicate into it,
    acknowledge and resolve act on it. Only a trigger carries a payload.
    """
    action = _PAGERDUTY_ACTIONS.get(notice.event, "trigger")
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": str(notice.incident_id),
    }
    if action != "trigger":
        return event
    details = {label: value for label, value in facts(notice, api_url=api_url)}
    if notice.top_errors:
        details["Top errors"] = "\n".join(_top_error_lines(notice))
    event["payload"] = {
        "summary": _cut(title(notice), PAGERDUTY_SUMMARY_MAX),
        "source": urlsplit(notice.url).hostname or notice.monitor,
        "severity": severity_map.of(notice.severity),
        "timestamp": _iso(notice.at),
        "component": notice.monitor_name,
        "group": notice.monitor_namespace,
        "class": notice.event.value,
        "custom_details": details,
    }
    event["client"] = "downtime-operator"
    link = admin_url(notice, api_url)
    if link:
        event["client_url"] = link
    if notice.playbook and is_link(notice.playbook):
        event["links"] = [{"href": notice.playbook, "text": "Playbook"}]
    return event


# ------------------------------------------------------------------------------------- email


@dataclass(frozen=True, kw_only=True)
class EmailContent:
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str
    message_id: str
    """``<id@downtime-operator>``, stable per delivery: a resent message is recognisably one."""
    headers: Mapping[str, str]
    """Headers beyond From/To/Subject, ``Message-ID`` included."""


def delivery_id(notices: Sequence[Notice]) -> str:
    """The id of one delivery: the outbox id of a single notice; for a digest, a hash of its
    notices' ids. Idempotency-Key (Resend), webhook-id and Message-ID are built from it, so a
    retried delivery carries the same id and the provider drops the duplicate."""
    ids = [n.outbox_id or f"{n.incident_id}.{n.event_key.replace(':', '.')}" for n in notices]
    if len(ids) == 1:
        return ids[0]
    return "digest-" + hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:40]


def email_content(
    notices: Sequence[Notice], *, sender: str, to: Sequence[str], api_url: str | None
) -> EmailContent:
    if not notices:
        raise ValueError("a message needs at least one notice")
    message_id = f"<{delivery_id(notices)}@{MESSAGE_ID_DOMAIN}>"
    headers = {"Message-ID": message_id}
    if len(notices) == 1:
        notice = notices[0]
        subject = title(notice)
        shown = facts(notice, api_url=api_url)
        text = "\n".join([subject, "", *(f"{label}: {value}" for label, value in shown)])
        body = _html_table(shown)
        if notice.top_errors:
            text += "\n\nTop errors:\n" + "\n".join(f"  {x}" for x in _top_error_lines(notice))
            items = "".join(f"<li>{html.escape(x)}</li>" for x in _top_error_lines(notice))
            body += f"<h3>Top errors</h3><ul>{items}</ul>"
        if _about_an_incident(notice):
            # Every message of one incident threads under the same reference.
            headers["References"] = f"<incident-{notice.incident_id}@{MESSAGE_ID_DOMAIN}>"
            headers["X-Downtime-Incident"] = str(notice.incident_id)
    else:
        subject = _digest_title(notices)
        lines = [_digest_line(n) for n in notices]
        hint = "See one with: kubectl get dti NAME -n NAMESPACE"
        text = "\n".join([subject, "", *lines, "", hint])
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        body = f"<ul>{items}</ul><p>{html.escape(hint)}</p>"
    heading = f"<h2>{html.escape(subject)}</h2>"
    return EmailContent(
        sender=sender,
        to=tuple(to),
        subject=_cut(_one_line(subject), SUBJECT_MAX),
        text=text + "\n",
        html=f"<!doctype html><html><body>{heading}{body}</body></html>",
        message_id=message_id,
        headers=headers,
    )


def _html_table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(
        f'<tr><th align="left">{html.escape(label)}</th><td>{_html_value(value)}</td></tr>'
        for label, value in rows
    )
    return f"<table>{cells}</table>"


def _html_value(value: str) -> str:
    escaped = html.escape(value)
    if is_link(value):
        return f'<a href="{escaped}">{escaped}</a>'
    return escaped


def resend_body(content: EmailContent) -> dict[str, Any]:
    """The JSON of Resend's ``POST /emails`` (the Idempotency-Key header is the adapter's)."""
    return {
        "from": content.sender,
        "to": list(content.to),
        "subject": content.subject,
        "text": content.text,
        "html": content.html,
        "headers": dict(content.headers),
    }


# ----------------------------------------------------------------------------------- webhook


def incident_data(notice: Notice, *, api_url: str | None = None) -> dict[str, Any]:
    """The incident as a webhook (and a PagerDuty reader) sees it: the admin API's field names."""
    return {
        "incident_id": str(notice.incident_id),
        "k8s_name": notice.k8s_name,
        "monitor": {"namespace": notice.monitor_namespace, "name": notice.monitor_name},
        "health_endpoint": notice.url,
        "environment": notice.environment,
        "status": "resolved" if notice.ended_at is not None else "ongoing",
        "severity": notice.severity.value,
        "previous_severity": notice.previous_severity,
        "error_message": notice.error_message,
        "http_status_code": notice.http_status,
        "started_at": _iso(notice.started_at),
        "detected_at": _iso(notice.detected_at),
        "ended_at": _iso(notice.ended_at),
        "duration_seconds": notice.duration_seconds,
        "failed_checks": notice.failed_checks,
        "notes": notice.notes,
        "actor": notice.actor,
        "playbook": notice.playbook,
        "reminder": notice.reminder,
        "top_errors": [{"message": m, "count": c} for m, c in notice.top_errors],
        "kubectl": kubectl_hint(notice),
        "admin_url": admin_url(notice, api_url),
    }


def webhook_body(notices: Sequence[Notice], *, api_url: str | None = None) -> bytes:
    """The signed body: ``{"type", "event", "timestamp", "data"}`` (Standard Webhooks' shape).

    One notice: ``type`` ``incident.<event>`` and ``data`` the incident; a digest: ``type``
    ``incident.digest`` and ``data.incidents`` every incident.
    """
    if not notices:
        raise ValueError("a message needs at least one notice")
    last = max(notices, key=lambda n: n.at)
    events = {n.event.value for n in notices}
    event = events.pop() if len(events) == 1 else "mixed"
    body: dict[str, Any]
    if len(notices) == 1:
        body = {
            "type": f"incident.{event}",
            "event": event,
            "timestamp": _iso(last.at),
            "data": incident_data(last, api_url=api_url),
        }
    else:
        body = {
            "type": "incident.digest",
            "event": event,
            "timestamp": _iso(last.at),
            "data": {
                "count": len(notices),
                "incidents": [incident_data(n, api_url=api_url) for n in notices],
            },
        }
    return _WEBHOOK_JSON.encode(body).encode()
