"""The pure notification domain: channel specs, notices, wire content, digests, retry policy
and pacing (notifications issue). No network and no clock: every time is a value."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import yaml

from downtime_operator.domain.analysis import LogAnalysis
from downtime_operator.domain.incident_events import IncidentEvent, IncidentEventKind
from downtime_operator.domain.log_capture import CaptureResult
from downtime_operator.domain.models import (
    Incident,
    IncidentStatus,
    LogCaptureState,
    MonitorRef,
    Severity,
)
from downtime_operator.domain.notifications import channel as channel_module
from downtime_operator.domain.notifications.channel import (
    SUBSCRIBABLE_EVENTS,
    ChannelSpec,
    ChannelType,
    NotificationEvent,
    SeverityMap,
    SmtpTls,
    parse_channel_spec,
)
from downtime_operator.domain.notifications.delivery import (
    DisableChannel,
    Failed,
    Pacer,
    RetryAt,
    Sent,
    backoff,
    next_step,
    pacing_rate,
)
from downtime_operator.domain.notifications.grouping import DIGEST_MAX, group
from downtime_operator.domain.notifications.notice import (
    Notice,
    notice_for,
    reminder_notice,
    sample_notice,
    wanted,
)
from downtime_operator.domain.notifications.render import (
    PAGERDUTY_SUMMARY_MAX,
    SLACK_BLOCKS_MAX,
    SLACK_SECTION_MAX,
    SLACK_TEXT_MAX,
    delivery_id,
    email_content,
    pagerduty_event,
    resend_body,
    slack_message,
    webhook_body,
)
from downtime_operator.domain.severity import SeverityChange
from downtime_operator.domain.spec import InvalidSpecError

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
REF = {"name": "notify", "key": "value"}
SLACK = {"type": "slack", "slack": {"webhookUrlFrom": REF}}
API = "https://ops.example.com"
CRD = Path(__file__).resolve().parents[2] / "crds" / "notificationchannels.yaml"
PLAYBOOK = "https://runbooks.example.com/api-down"


def incident(**changes: Any) -> Incident:
    base = Incident(
        incident_id=UUID("00000000-0000-4000-8000-000000000001"),
        monitor=MonitorRef(namespace="prod", name="api"),
        k8s_name="api-20260304-050607",
        health_endpoint="https://api.example.com/healthz",
        environment="production",
        started_at=T0,
        detected_at=T0 + timedelta(seconds=30),
        severity=Severity.HIGH,
        error_message="unexpected status 503",
        http_status_code=503,
        failed_checks=3,
    )
    return replace(base, **changes)


def notice(**changes: Any) -> Notice:
    """An opened notice, with fields changed (``event`` too: its facts are the same)."""
    found = notice_for(IncidentEvent(kind=IncidentEventKind.OPENED, incident=incident()), at=T0)
    assert found is not None
    return replace(found, outbox_id=str(uuid4()), **changes)


def invalid(raw: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSpecError) as caught:
        parse_channel_spec(raw)
    return caught.value.errors


# ------------------------------------------------------------------------------ channel spec


def test_channel_defaults() -> None:
    spec = parse_channel_spec(SLACK)
    assert spec.type is ChannelType.SLACK
    assert spec.slack is not None and spec.slack.webhook_url_from.name == "notify"
    assert spec.events == {
        NotificationEvent.OPENED, NotificationEvent.ESCALATED, NotificationEvent.RESOLVED,
    }  # fmt: skip
    assert spec.min_severity is Severity.LOW
    assert spec.reminder_every is None
    assert spec.group_window == timedelta(seconds=30)
    assert spec.rate is None
    assert pacing_rate(spec) == 1.0


def test_pagerduty_and_smtp_defaults() -> None:
    pagerduty = parse_channel_spec({"type": "pagerduty", "pagerduty": {"routingKeyFrom": REF}})
    assert pagerduty.pagerduty is not None
    severity_map = pagerduty.pagerduty.severity_map
    assert [severity_map.of(s) for s in Severity] == ["info", "warning", "error", "critical"]
    assert pacing_rate(pagerduty) == 1.8
    email = parse_channel_spec(
        {
            "type": "email",
            "email": {"from": "Ops <ops@x.io>", "to": ["a@x.io"], "smtp": {"host": "mail"}},
            "rate": 0.5,
        }
    )
    assert email.email is not None and email.email.smtp is not None
    assert (email.email.smtp.port, email.email.smtp.tls) == (587, SmtpTls.STARTTLS)
    assert email.email.sender == "Ops <ops@x.io>"
    assert pacing_rate(email) == 0.5


@pytest.mark.parametrize(
    ("raw", "path", "says"),
    [
        ({}, "type", "Field required"),
        ({"type": "teams"}, "type", "Input should be"),
        ({"type": "slack"}, "slack", "required when type is slack"),
        ({**SLACK, "webhook": {"url": "https://x.io", "secretFrom": REF}},
         "webhook", "not allowed"),
        ({"type": "slack", "slack": {"webhookUrlFrom": {"name": "N", "key": "k"}}},
         "slack.webhookUrlFrom.name", "is not a Secret name"),
        ({"type": "slack", "slack": {"webhookUrlFrom": {"name": "n"}}},
         "slack.webhookUrlFrom.key", "Field required"),
        ({"type": "pagerduty", "pagerduty": {"routingKeyFrom": REF, "severityMap": {"low": "x"}}},
         "pagerduty.severityMap.low", "Input should be"),
        ({"type": "email", "email": {"from": "a@x.io", "to": [], "resend": {"apiKeyFrom": REF}}},
         "email.to", "at least 1"),
        ({"type": "email", "email": {"from": "a@x.io", "to": ["a@x.io"] * 51,
                                     "resend": {"apiKeyFrom": REF}}}, "email.to", "at most 50"),
        ({"type": "email", "email": {"from": "a@x.io", "to": ["a@x.io", "nope"],
                                     "resend": {"apiKeyFrom": REF}}},
         "email.to[1]", "'nope' is not an email address"),
        ({"type": "email", "email": {"from": "a@x.io\r\nBcc: b@x.io", "to": ["a@x.io"],
                                     "resend": {"apiKeyFrom": REF}}}, "email.from", "is not"),
        ({"type": "email", "email": {"from": "a@x.io", "to": ["a@x.io"]}},
         "email.resend", "exactly one of email.resend and email.smtp"),
        ({"type": "email", "email": {"from": "a@x.io", "to": ["a@x.io"],
                                     "smtp": {"host": "m", "port": 70000}}},
         "email.smtp.port", "less than or equal to 65535"),
        ({"type": "email", "email": {"from": "a@x.io", "to": ["a@x.io"],
                                     "smtp": {"host": "m", "tls": "ssl"}}},
         "email.smtp.tls", "Input should be"),
        ({"type": "email", "email": {"from": "a@x.io", "to": ["a@x.io"],
                                     "smtp": {"host": "m", "passwordFrom": REF}}},
         "email.smtp.usernameFrom", "go together"),
        ({"type": "webhook", "webhook": {"url": "ftp://x.io", "secretFrom": REF}},
         "webhook.url", "is not an http or https URL"),
        ({**SLACK, "events": ["opened", "nope"]}, "events[1]", "Input should be"),
        ({**SLACK, "events": ["test"]}, "events", "not an event to subscribe to"),
        ({**SLACK, "events": []}, "events", "at least 1"),
        ({**SLACK, "minSeverity": "urgent"}, "minSeverity", "Input should be"),
        ({**SLACK, "events": ["reminder"], "reminderEvery": "4m59s"},
         "reminderEvery", "at least 5m"),
        ({**SLACK, "events": ["reminder"], "reminderEvery": "1 hour"},
         "reminderEvery", "invalid duration"),
        ({**SLACK, "reminderEvery": "1h"}, "reminderEvery", "exactly when events include"),
        ({**SLACK, "events": ["reminder"]}, "reminderEvery", "exactly when events include"),
        ({**SLACK, "groupWindow": "2h"}, "groupWindow", "at most 1h"),
        ({**SLACK, "rate": 0}, "rate", "greater than 0"),
        ({**SLACK, "rate": 10_001}, "rate", "less than or equal to 10000"),
    ],
)  # fmt: skip
def test_channel_errors_name_the_field(raw: dict[str, Any], path: str, says: str) -> None:
    errors = invalid(raw)
    assert any(p == path and says in message for p, message in errors), errors


def test_channel_error_message_is_prefixed_with_spec() -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.email\.to\[0\]: 'x' is not an email"):
        parse_channel_spec(
            {"type": "email", "email": {"from": "a@x.io", "to": ["x"], "smtp": {"host": "m"}}}
        )


def _crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]


def test_crd_and_parser_share_patterns_enums_and_defaults() -> None:
    """The API server and the operator must admit the same channels."""
    spec = _crd_spec_schema()
    props = spec["properties"]
    email = props["email"]["properties"]
    assert email["to"]["items"]["pattern"] == channel_module.ADDRESS_PATTERN
    assert email["from"]["pattern"] == channel_module.SENDER_PATTERN
    assert email["to"]["maxItems"] == channel_module.MAX_RECIPIENTS
    smtp = email["smtp"]["properties"]
    assert smtp["host"]["pattern"] == channel_module.HOST_PATTERN
    assert smtp["tls"]["enum"] == [t.value for t in SmtpTls]
    assert props["webhook"]["properties"]["url"]["pattern"] == channel_module.WEBHOOK_URL_PATTERN
    ref = props["slack"]["properties"]["webhookUrlFrom"]["properties"]
    assert ref["name"]["pattern"] == channel_module.SECRET_NAME_PATTERN
    assert ref["key"]["pattern"] == channel_module.SECRET_KEY_PATTERN
    assert props["type"]["enum"] == [t.value for t in ChannelType]
    events = [e.value for e in NotificationEvent if e in SUBSCRIBABLE_EVENTS]
    assert props["events"]["items"]["enum"] == events
    defaults = parse_channel_spec(SLACK)
    assert set(props["events"]["default"]) == {e.value for e in defaults.events}
    assert props["minSeverity"]["default"] == defaults.min_severity.value
    assert props["rate"]["maximum"] == channel_module.MAX_RATE
    severity_map = props["pagerduty"]["properties"]["severityMap"]["properties"]
    assert {k: v["default"] for k, v in severity_map.items()} == SeverityMap().model_dump()


# ------------------------------------------------------------------------------------ notice


def test_notice_round_trips_through_its_payload() -> None:
    captured = IncidentEvent(
        kind=IncidentEventKind.ESCALATED,
        incident=incident(severity=Severity.CRITICAL, playbook=PLAYBOOK),
        escalation=SeverityChange(
            at=T0 + timedelta(minutes=9), previous=Severity.HIGH, severity=Severity.CRITICAL
        ),
    )
    original = notice_for(captured, at=T0 + timedelta(minutes=10))
    assert original is not None
    original = replace(original, top_errors=(("timeout <n>", 4),), outbox_id="abc")

    payload = json.loads(json.dumps(original.to_payload()))

    assert "outbox_id" not in payload
    assert Notice.from_payload(payload, outbox_id="abc") == original
    assert original.event_key == "escalated:critical"
    assert (original.previous_severity, original.playbook) == (Severity.HIGH, PLAYBOOK)
    # A payload queued before notices carried a playbook reads back without one.
    del payload["playbook"]
    assert Notice.from_payload(payload).playbook is None


def test_notice_for_maps_pipeline_events() -> None:
    opened = notice_for(IncidentEvent(kind=IncidentEventKind.OPENED, incident=incident()), at=T0)
    assert opened is not None
    assert opened.at == incident().detected_at
    assert (opened.monitor, opened.http_status, opened.event_key) == ("prod/api", 503, "opened")
    ended = incident(ended_at=T0 + timedelta(minutes=5), duration_seconds=300.0,
                     status=IncidentStatus.RESOLVED)  # fmt: skip
    resolved = notice_for(IncidentEvent(kind=IncidentEventKind.RESOLVED, incident=ended), at=T0)
    assert resolved is not None and resolved.at == ended.ended_at
    for kind in (IncidentEventKind.RESUMED, IncidentEventKind.CHECKS_REFRESHED,
                 IncidentEventKind.RELEASED, IncidentEventKind.CORRECTED):  # fmt: skip
        assert notice_for(IncidentEvent(kind=kind, incident=incident()), at=T0) is None


def test_logs_captured_notice_carries_the_top_errors() -> None:
    analysis = LogAnalysis(
        total_logs=10, error_count=9, warning_count=1, error_types={},
        top_errors=[(f"error {i}", 10 - i) for i in range(8)],
    )  # fmt: skip
    capture = CaptureResult(state=LogCaptureState.CAPTURED, captured_at=T0, analysis=analysis)
    event = IncidentEvent(kind=IncidentEventKind.LOGS_CAPTURED, incident=incident(),
                          capture=capture)  # fmt: skip
    found = notice_for(event, at=T0)
    assert found is not None
    assert found.top_errors == tuple((f"error {i}", 10 - i) for i in range(5))
    failed = replace(capture, state=LogCaptureState.FAILED, analysis=None)
    assert notice_for(replace(event, capture=failed), at=T0) is None


def test_reminder_is_the_latest_due_one() -> None:
    every = timedelta(minutes=30)
    detected = incident().detected_at
    assert reminder_notice(incident(), every=every, now=detected + timedelta(minutes=29)) is None
    late = reminder_notice(incident(), every=every, now=detected + timedelta(minutes=95))
    assert late is not None
    assert (late.reminder, late.event_key, late.at) == (3, "reminder:3", detected + 3 * every)
    closed = incident(status=IncidentStatus.RESOLVED)
    assert reminder_notice(closed, every=every, now=detected + timedelta(hours=5)) is None


def test_wanted_filters_events_and_severity() -> None:
    spec = parse_channel_spec({**SLACK, "minSeverity": "high"})
    assert wanted(spec, notice())
    assert not wanted(spec, notice(severity=Severity.MEDIUM))
    assert not wanted(spec, notice(event=NotificationEvent.ACKNOWLEDGED))
    test = sample_notice(channel="prod/slack", test_id=uuid4(), at=T0)
    assert wanted(spec, test)
    assert test.event_key == f"test:{test.incident_id}"


def test_pagerduty_gets_no_logs_after_the_end() -> None:
    spec = parse_channel_spec(
        {"type": "pagerduty", "pagerduty": {"routingKeyFrom": REF}, "events": ["logsCaptured"]}
    )
    logs = notice(event=NotificationEvent.LOGS_CAPTURED)
    assert wanted(spec, logs)
    assert not wanted(spec, replace(logs, ended_at=T0 + timedelta(minutes=5)))


# ------------------------------------------------------------------------------------ render


def test_single_slack_message_says_everything() -> None:
    message = slack_message([notice()], api_url=API)
    text = json.dumps(message)
    for fact in (
        "prod/api",
        "https://api.example.com/healthz",
        "high",
        "unexpected status 503",
        "503",
        "2026-03-04T05:06:07Z",
        "00000000-0000-4000-8000-000000000001",
        "kubectl get dti api-20260304-050607 -n prod",
        f"{API}/admin/downtime/incidents/00000000-0000-4000-8000-000000000001",
    ):
        assert fact in text, fact  # fmt: skip
    assert message["blocks"][0]["type"] == "header"
    assert len(message["blocks"]) <= SLACK_BLOCKS_MAX
    assert "admin/downtime" not in json.dumps(slack_message([notice()], api_url=None))


def test_slack_escapes_its_control_characters() -> None:
    message = slack_message([notice(error_message="<!channel> a & b")], api_url=None)
    assert "&lt;!channel&gt; a &amp; b" in json.dumps(message)
    # Only mrkdwn is parsed for mentions; the plain_text header is shown as written.
    mrkdwn = [b for b in message["blocks"] if b["type"] != "header"]
    assert "<!channel>" not in json.dumps(mrkdwn)


def test_slack_logs_captured_lists_top_errors() -> None:
    logs = notice(event=NotificationEvent.LOGS_CAPTURED, top_errors=(("db timeout", 7),))
    assert "db timeout (7 times)" in json.dumps(slack_message([logs], api_url=None))


def test_digest_of_200_names_every_incident_within_slack_limits() -> None:
    notices = [
        notice(incident_id=uuid4(), monitor_name=f"svc-{i:03d}", k8s_name=f"svc-{i:03d}-x",
               error_message="connection refused " * 20)
        for i in range(200)
    ]  # fmt: skip
    message = slack_message(notices, api_url=API)
    text = json.dumps(message)
    assert all(f"prod/svc-{i:03d}" in text for i in range(200))
    assert len(message["text"]) <= SLACK_TEXT_MAX
    assert len(message["blocks"]) <= SLACK_BLOCKS_MAX
    for block in message["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SLACK_SECTION_MAX
    assert "200 incidents opened" in message["text"]


def test_a_digest_too_big_for_blocks_falls_back_to_text_within_the_limit() -> None:
    notices = [notice(monitor_name="m" * 60 + str(i), k8s_name="k" * 200) for i in range(2000)]
    message = slack_message(notices, api_url=None)
    assert "blocks" not in message
    assert len(message["text"]) <= SLACK_TEXT_MAX
    assert message["text"].rstrip().split("\n")[-1].startswith("… and ")


def test_pagerduty_events() -> None:
    severity_map = SeverityMap(high="critical")
    trigger = pagerduty_event(
        notice(error_message="x" * 5000), routing_key="R" * 32, severity_map=severity_map
    )
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "00000000-0000-4000-8000-000000000001"
    payload = trigger["payload"]
    assert len(payload["summary"]) <= PAGERDUTY_SUMMARY_MAX
    assert payload["severity"] == "critical"
    assert payload["source"] == "api.example.com"
    assert payload["timestamp"] == "2026-03-04T05:06:37Z"
    assert payload["custom_details"]["See it"] == "kubectl get dti api-20260304-050607 -n prod"
    for event, action in ((NotificationEvent.RESOLVED, "resolve"),
                          (NotificationEvent.ACKNOWLEDGED, "acknowledge")):  # fmt: skip
        sent = pagerduty_event(notice(event=event), routing_key="R", severity_map=severity_map)
        assert sent == {
            "routing_key": "R",
            "event_action": action,
            "dedup_key": trigger["dedup_key"],
        }
    reminder = pagerduty_event(
        notice(event=NotificationEvent.REMINDER, reminder=2), routing_key="R",
        severity_map=severity_map,
    )  # fmt: skip
    assert reminder["event_action"] == "trigger"


def test_email_has_a_stable_message_id_and_all_facts() -> None:
    one = notice()
    content = email_content([one], sender="Ops <ops@x.io>", to=["a@x.io"], api_url=API)
    assert content.message_id == f"<{one.outbox_id}@downtime-operator>"
    assert content.headers["Message-ID"] == content.message_id
    assert content.subject.startswith("[DOWN] prod/api high")
    assert "\n" not in content.subject
    for fact in ("kubectl get dti api-20260304-050607 -n prod", "Status code: 503", API):
        assert fact in content.text
    assert "&lt;" in email_content([notice(error_message="<b>")], sender="a@x.io", to=["a@x.io"],
                                   api_url=None).html  # fmt: skip
    again = email_content([one], sender="Ops <ops@x.io>", to=["a@x.io"], api_url=API)
    assert again == content
    body = resend_body(content)
    assert body["from"] == "Ops <ops@x.io>" and body["to"] == ["a@x.io"]
    assert {"subject", "text", "html", "headers"} <= body.keys()


def test_email_digest_id_does_not_depend_on_order() -> None:
    notices = [notice(incident_id=uuid4()) for _ in range(5)]
    first = email_content(notices, sender="a@x.io", to=["a@x.io"], api_url=None)
    second = email_content(notices[::-1], sender="a@x.io", to=["a@x.io"], api_url=None)
    assert first.message_id == second.message_id == f"<{delivery_id(notices)}@downtime-operator>"
    assert first.subject == "[DOWN] 5 incidents opened"


def test_every_channel_type_names_the_playbook() -> None:
    linked = notice(playbook=PLAYBOOK)
    slack = slack_message([linked], api_url=None)
    assert f"*Playbook:* <{PLAYBOOK}|{PLAYBOOK}>" in json.dumps(slack["blocks"])
    assert f"Playbook: {PLAYBOOK}" in slack["text"]
    email = email_content([linked], sender="a@x.io", to=["a@x.io"], api_url=None)
    assert f"Playbook: {PLAYBOOK}" in email.text
    assert f'<a href="{PLAYBOOK}">' in email.html
    paged = pagerduty_event(linked, routing_key="R", severity_map=SeverityMap())
    assert paged["payload"]["custom_details"]["Playbook"] == PLAYBOOK
    assert paged["links"] == [{"href": PLAYBOOK, "text": "Playbook"}]
    assert json.loads(webhook_body([linked]))["data"]["playbook"] == PLAYBOOK
    digest = [linked, notice(incident_id=uuid4())]
    line = f"— playbook: {PLAYBOOK}"
    assert line in slack_message(digest, api_url=None)["blocks"][1]["text"]["text"]
    assert line in email_content(digest, sender="a@x.io", to=["a@x.io"], api_url=None).text


def test_a_playbook_in_words_is_text_not_a_link() -> None:
    words = notice(playbook="https://wiki/db first, then <!channel> & restart api")
    slack = json.dumps(slack_message([words], api_url=None)["blocks"])
    assert "*Playbook:* https://wiki/db first, then &lt;!channel&gt; &amp; restart api" in slack
    email = email_content([words], sender="a@x.io", to=["a@x.io"], api_url=None)
    assert "<a href" not in email.html.split("Playbook")[1]
    paged = pagerduty_event(words, routing_key="R", severity_map=SeverityMap())
    assert "links" not in paged
    assert "Playbook" not in json.dumps(slack_message([notice()], api_url=None))


def test_webhook_body() -> None:
    one = json.loads(webhook_body([notice()]))
    assert one["type"] == "incident.opened" and one["event"] == "opened"
    assert one["timestamp"] == "2026-03-04T05:06:37Z"
    assert one["data"]["incident_id"] == "00000000-0000-4000-8000-000000000001"
    assert one["data"]["http_status_code"] == 503
    digest = json.loads(webhook_body([notice(), notice(incident_id=uuid4())]))
    assert digest["type"] == "incident.digest" and digest["data"]["count"] == 2


# ---------------------------------------------------------------------------------- grouping


def _opened(count: int, *, spacing: timedelta) -> list[Notice]:
    return [notice(incident_id=uuid4(), at=T0 + i * spacing) for i in range(count)]


def test_three_openings_go_alone_four_make_a_digest() -> None:
    window = timedelta(seconds=30)
    three = _opened(3, spacing=timedelta(seconds=5))
    assert group(three, channel_type=ChannelType.SLACK, window=window) == [(n,) for n in three]
    four = _opened(4, spacing=timedelta(seconds=5))
    assert group(four, channel_type=ChannelType.EMAIL, window=window) == [tuple(four)]
    assert len(group(four, channel_type=ChannelType.PAGERDUTY, window=window)) == 4
    assert len(group(four, channel_type=ChannelType.SLACK, window=timedelta(0))) == 4


def test_openings_outside_the_window_are_not_grouped() -> None:
    spread = _opened(6, spacing=timedelta(seconds=31))
    assert len(group(spread, channel_type=ChannelType.WEBHOOK, window=timedelta(seconds=30))) == 6


def test_recently_sent_openings_count_towards_a_digest() -> None:
    two = _opened(2, spacing=timedelta(seconds=1))
    grouped = group(two, channel_type=ChannelType.SLACK, window=timedelta(seconds=30),
                    recent_opened=3)  # fmt: skip
    assert grouped == [tuple(two)]


def test_200_openings_make_few_digests_and_keep_each_incident_in_order() -> None:
    opened = _opened(200, spacing=timedelta(milliseconds=50))
    resolved = replace(opened[0], event=NotificationEvent.RESOLVED, at=T0 + timedelta(minutes=1))
    messages = group([resolved, *opened], channel_type=ChannelType.SLACK,
                     window=timedelta(seconds=30))  # fmt: skip
    assert [len(m) for m in messages] == [DIGEST_MAX, DIGEST_MAX, 1]
    assert messages[-1] == (resolved,)
    assert {n.incident_id for m in messages[:2] for n in m} == {n.incident_id for n in opened}


# ---------------------------------------------------------------------------- delivery policy


def _step(status: int | None, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"retry_after": None, "attempts": 1, "first_attempt_at": T0,
                            "now": T0, "jitter": 0.0}  # fmt: skip
    args.update(kwargs)
    return next_step(status=status, **args)


def test_policy_decisions() -> None:
    assert _step(200) == Sent()
    assert _step(202) == Sent()
    assert _step(429, retry_after=2.0) == RetryAt(at=T0 + timedelta(seconds=2),
                                                  reason="HTTP 429: Retry-After 2s")  # fmt: skip
    assert _step(429) == RetryAt(at=T0 + timedelta(seconds=1), reason="answered 429")
    assert _step(503, attempts=3) == RetryAt(at=T0 + timedelta(seconds=4), reason="answered 503")
    assert _step(None).reason == "connection error or timeout"  # type: ignore[union-attr]
    assert isinstance(_step(400), Failed)
    assert isinstance(_step(404), Failed)
    assert isinstance(_step(410), DisableChannel)


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    assert backoff(attempts=1, jitter=0.0) == timedelta(seconds=1)
    assert backoff(attempts=1, jitter=0.99) < timedelta(seconds=2)
    assert backoff(attempts=4, jitter=0.5) == timedelta(seconds=12)
    assert backoff(attempts=50, jitter=0.999999) < timedelta(minutes=5)
    assert backoff(attempts=50, jitter=0.0) == timedelta(minutes=2.5)
    with pytest.raises(ValueError, match="jitter"):
        backoff(attempts=1, jitter=1.0)


def test_retries_stop_at_the_maximum_age() -> None:
    late = T0 + timedelta(hours=23, minutes=59, seconds=59)
    assert isinstance(_step(503, attempts=30, now=late), Failed)
    assert isinstance(_step(429, retry_after=5.0, now=late), Failed)
    assert isinstance(_step(503, attempts=2, now=T0 + timedelta(minutes=1),
                            max_age=timedelta(minutes=1)), Failed)  # fmt: skip
    assert isinstance(_step(503, attempts=2, now=T0 + timedelta(hours=1)), RetryAt)


def test_pacer_spreads_sends_at_its_rate() -> None:
    pacer = Pacer(rate=2.0)
    waits = [pacer.take(100.0) for _ in range(5)]
    assert waits == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert pacer.take(110.0) == 0.0
    assert pacer.take(110.1) == pytest.approx(0.4)
    slow = Pacer(rate=120 / 60)
    sent_at = [t + slow.take(t) for t in [0.0] * 240]
    assert max(sent_at) <= 120.0 and sum(1 for t in sent_at if t < 60.0) <= 120


def test_pacer_ignores_a_clock_stepping_back() -> None:
    pacer = Pacer(rate=1.0)
    assert pacer.take(10.0) == 0.0
    assert pacer.take(5.0) == pytest.approx(1.0)


def test_pacing_defaults_by_transport() -> None:
    resend = ChannelSpec.model_validate(
        {"type": "email", "email": {"from": "a@x.io", "to": ["a@x.io"],
                                    "resend": {"apiKeyFrom": REF}}}
    )  # fmt: skip
    webhook = parse_channel_spec(
        {"type": "webhook", "webhook": {"url": "https://x.io/h", "secretFrom": REF}}
    )
    assert (pacing_rate(resend), pacing_rate(webhook)) == (2.0, 10.0)
