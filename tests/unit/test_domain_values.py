from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from downtime_operator.domain.durations import format_duration, parse_duration
from downtime_operator.domain.models import Escalation, SecretHeader, Severity
from downtime_operator.domain.naming import incident_resource_name
from downtime_operator.domain.severity import effective_severity
from downtime_operator.domain.spec import PLAYBOOK_MAX_CHARS, InvalidSpecError, parse_monitor_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "10 seconds", "-1s", "1d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(seconds=10)) == "10s"
    assert format_duration(timedelta(milliseconds=500)) == "500ms"
    assert format_duration(timedelta(seconds=1.5)) == "1.5s"


def test_escalation_only_raises() -> None:
    rules = [
        Escalation(after=timedelta(minutes=5), severity=Severity.CRITICAL),
        Escalation(after=timedelta(minutes=1), severity=Severity.LOW),
    ]
    assert (
        effective_severity(base=Severity.HIGH, escalation=rules, elapsed=timedelta(minutes=2))
        is Severity.HIGH
    )
    assert (
        effective_severity(base=Severity.HIGH, escalation=rules, elapsed=timedelta(minutes=5))
        is Severity.CRITICAL
    )


def test_incident_name_is_stable_per_outage_start() -> None:
    started = datetime(2026, 3, 4, 5, 6, 7, 891, tzinfo=UTC)
    assert incident_resource_name(monitor_name="api", started_at=started) == "api-20260304-050607"


def test_spec_defaults() -> None:
    spec = parse_monitor_spec({"url": "https://example.test/health"})
    assert spec.interval == timedelta(seconds=60)
    assert spec.timeout == timedelta(seconds=10)
    assert spec.failure_threshold == 3
    assert spec.severity is Severity.HIGH
    assert spec.expect.status == ("2xx",)
    assert spec.log_capture.max_lines == 10000


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "spec.url"),
        ({"url": "ftp://x"}, "spec.url"),
        ({"url": "http://x", "interval": "0s", "timeout": "0s"}, "interval"),
        ({"url": "http://x", "interval": "5s", "timeout": "5s"}, "timeout"),
        ({"url": "http://x", "failureThreshold": 0}, "spec.failureThreshold"),
        ({"url": "http://x", "severity": "urgent"}, "spec.severity"),
        ({"url": "http://x", "logCapture": {"maxLines": -1}}, "spec.logCapture.maxLines"),
        ({"url": "http://x", "expect": {"status": ["abc"]}}, "spec.expect.status[0]"),
        (
            {"url": "http://x", "escalation": [{"after": "5m", "severity": "x"}]},
            "spec.escalation[0].severity",
        ),
    ],
)
def test_spec_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_monitor_spec(raw)
    assert field in str(caught.value)


def test_the_playbook_is_a_link_or_short_text_as_the_crd_says() -> None:
    crd = yaml.safe_load((REPO / "crds" / "healthmonitors.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    playbook = schema["properties"]["spec"]["properties"]["playbook"]
    assert playbook["maxLength"] == PLAYBOOK_MAX_CHARS
    assert parse_monitor_spec({"url": "http://x"}).playbook is None
    text = "Restart the api:\nkubectl rollout restart deploy/api"
    assert parse_monitor_spec({"url": "http://x", "playbook": text}).playbook == text
    for bad in ("", "x" * (PLAYBOOK_MAX_CHARS + 1)):
        with pytest.raises(InvalidSpecError) as caught:
            parse_monitor_spec({"url": "http://x", "playbook": bad})
        assert "spec.playbook" in str(caught.value)


def test_headers_from_become_secret_headers_and_bad_ones_name_their_path() -> None:
    spec = parse_monitor_spec(
        {
            "url": "http://api/health",
            "headersFrom": [{"name": "Authorization", "secretKeyRef": {"name": "tok", "key": "t"}}],
        }
    )
    assert spec.headers_from == (SecretHeader(name="Authorization", secret="tok", key="t"),)
    with pytest.raises(InvalidSpecError) as caught:
        parse_monitor_spec(
            {
                "url": "http://api/health",
                "headersFrom": [{"name": "Bad Header", "secretKeyRef": {"name": "tok"}}],
            }
        )
    message = str(caught.value)
    assert "spec.headersFrom[0].name" in message
    assert "spec.headersFrom[0].secretKeyRef.key" in message


def test_notification_channels_are_names_in_the_monitors_namespace() -> None:
    spec = parse_monitor_spec(
        {
            "url": "http://127.0.0.1/health",
            "notifications": [{"channel": "oncall"}, {"channel": "mail"}, {"channel": "oncall"}],
        }
    )
    assert spec.notifications == ("oncall", "mail")  # a repeat would notify twice
    with pytest.raises(InvalidSpecError) as caught:
        parse_monitor_spec(
            {"url": "http://127.0.0.1/health", "notifications": [{"channel": "On Call"}]}
        )
    assert "spec.notifications[0].channel" in str(caught.value)


def test_the_earlier_crds_notification_entries_never_invalidate_a_monitor() -> None:
    """Stored before channels existed: ``{name, type}`` entries, which sent nothing."""
    spec = parse_monitor_spec(
        {
            "url": "http://127.0.0.1/health",
            "notifications": [{"name": "oncall", "type": "slack"}, {"type": "pagerduty"}],
        }
    )
    assert spec.notifications == ("oncall",)
