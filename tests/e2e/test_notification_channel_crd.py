"""The NotificationChannel CRD against a real kube-apiserver: invalid channels are refused at
``kubectl apply`` time with a message naming the field; defaults, printer columns, the short
name and the ``downtime`` category work (notifications issue, acceptance 6)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from downtime_operator.domain.notifications.channel import parse_channel_spec

from .controlplane import ControlPlane

API_VERSION = "monitoring.gatewayz.ai/v1"
GROUP_PATH = "/apis/monitoring.gatewayz.ai/v1"
REF = {"name": "notify", "key": "value"}
VALID: dict[str, dict[str, Any]] = {
    "slack": {"type": "slack", "slack": {"webhookUrlFrom": REF}},
    "pagerduty": {"type": "pagerduty", "pagerduty": {"routingKeyFrom": REF}},
    "resend": {
        "type": "email",
        "email": {
            "from": "Ops <ops@example.com>",
            "to": ["sre@example.com"],
            "resend": {"apiKeyFrom": REF},
        },
    },
    "smtp": {
        "type": "email",
        "email": {
            "from": "ops@example.com",
            "to": ["sre@example.com", "oncall@example.org"],
            "smtp": {"host": "mail.example.com", "usernameFrom": REF, "passwordFrom": REF},
        },
    },
    "webhook": {
        "type": "webhook",
        "webhook": {"url": "https://hooks.example.com/downtime", "secretFrom": REF},
    },
}


def channel(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NotificationChannel",
        "metadata": {"name": name},
        "spec": spec,
    }


def with_(base: str, **changes: Any) -> dict[str, Any]:
    """A valid spec of kind ``base`` with top-level fields changed (None removes one)."""
    spec = {**VALID[base], **changes}
    return {k: v for k, v in spec.items() if v is not None}


def email(**changes: Any) -> dict[str, Any]:
    settings = {**VALID["smtp"]["email"], **changes}
    return {"type": "email", "email": {k: v for k, v in settings.items() if v is not None}}


def smtp(**changes: Any) -> dict[str, Any]:
    settings = {**VALID["smtp"]["email"]["smtp"], **changes}
    return email(smtp={k: v for k, v in settings.items() if v is not None})


# (test id, spec, text every error output must contain)
INVALID_CHANNELS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("missing-type", with_("slack", type=None), ["spec.type", "Required value"]),
    ("unknown-type", with_("slack", type="teams"), ["spec.type", "Unsupported value"]),
    (
        "type-without-settings",
        {"type": "slack"},
        ["spec.slack", "must be set when spec.type is slack"],
    ),
    (
        "settings-of-another-type",
        with_("slack", webhook=VALID["webhook"]["webhook"]),
        ["spec.webhook", "must be set when spec.type is webhook, and only then"],
    ),
    (
        "slack-without-url-ref",
        {"type": "slack", "slack": {}},
        ["spec.slack.webhookUrlFrom", "Required value"],
    ),
    (
        "secret-ref-without-key",
        {"type": "slack", "slack": {"webhookUrlFrom": {"name": "notify"}}},
        ["spec.slack.webhookUrlFrom.key", "Required value"],
    ),
    (
        "secret-name-uppercase",
        {"type": "pagerduty", "pagerduty": {"routingKeyFrom": {"name": "Notify", "key": "k"}}},
        ["spec.pagerduty.routingKeyFrom.name"],
    ),
    (
        "secret-key-with-slash",
        {"type": "pagerduty", "pagerduty": {"routingKeyFrom": {"name": "n", "key": "a/b"}}},
        ["spec.pagerduty.routingKeyFrom.key"],
    ),
    (
        "pagerduty-severity-unknown",
        {
            "type": "pagerduty",
            "pagerduty": {"routingKeyFrom": REF, "severityMap": {"high": "page"}},
        },
        ["spec.pagerduty.severityMap.high", "Unsupported value"],
    ),
    ("email-no-recipients", email(to=[]), ["spec.email.to"]),
    (
        "email-51-recipients",
        email(to=[f"r{i}@example.com" for i in range(51)]),
        ["spec.email.to", "51"],
    ),
    ("email-bad-recipient", email(to=["sre@example.com", "not-an-address"]), ["spec.email.to[1]"]),
    ("email-bad-from", email(**{"from": "ops at example.com"}), ["spec.email.from"]),
    ("email-missing-from", email(**{"from": None}), ["spec.email.from", "Required value"]),
    (
        "email-both-transports",
        email(resend={"apiKeyFrom": REF}),
        ["spec.email", "exactly one of spec.email.resend and spec.email.smtp must be set"],
    ),
    (
        "email-no-transport",
        email(smtp=None),
        ["spec.email", "exactly one of spec.email.resend and spec.email.smtp must be set"],
    ),
    ("smtp-port-0", smtp(port=0), ["spec.email.smtp.port"]),
    ("smtp-port-65536", smtp(port=65536), ["spec.email.smtp.port"]),
    ("smtp-tls-unknown", smtp(tls="ssl"), ["spec.email.smtp.tls", "Unsupported value"]),
    ("smtp-host-with-space", smtp(host="mail example.com"), ["spec.email.smtp.host"]),
    (
        "smtp-username-alone",
        smtp(passwordFrom=None),
        ["spec.email.smtp.usernameFrom", "go together"],
    ),
    (
        "webhook-ftp-url",
        {"type": "webhook", "webhook": {"url": "ftp://hooks.example.com/", "secretFrom": REF}},
        ["spec.webhook.url"],
    ),
    (
        "webhook-without-secret",
        {"type": "webhook", "webhook": {"url": "https://hooks.example.com/"}},
        ["spec.webhook.secretFrom", "Required value"],
    ),
    (
        "event-unknown",
        with_("slack", events=["opened", "deleted"]),
        ["spec.events[1]", "Unsupported value"],
    ),
    ("events-empty", with_("slack", events=[]), ["spec.events"]),
    (
        "events-repeated",
        with_("slack", events=["opened", "opened"]),
        ["spec.events[1]", "Duplicate value"],
    ),
    (
        "min-severity-unknown",
        with_("slack", minSeverity="urgent"),
        ["spec.minSeverity", "Unsupported value"],
    ),
    (
        "reminder-every-1m",
        with_("slack", events=["opened", "reminder"], reminderEvery="1m"),
        ["spec.reminderEvery", "must be at least 5m"],
    ),
    (
        "reminder-every-not-duration",
        with_("slack", events=["reminder"], reminderEvery="1 hour"),
        ["spec.reminderEvery"],
    ),
    (
        "reminder-every-without-event",
        with_("slack", reminderEvery="1h"),
        ["spec.reminderEvery", "must be set exactly when spec.events includes reminder"],
    ),
    (
        "reminder-event-without-every",
        with_("slack", events=["opened", "reminder"]),
        ["spec.reminderEvery", "must be set exactly when spec.events includes reminder"],
    ),
    ("group-window-not-duration", with_("slack", groupWindow="30"), ["spec.groupWindow"]),
    ("group-window-2h", with_("slack", groupWindow="2h"), ["spec.groupWindow", "at most 1h"]),
    ("rate-0", with_("slack", rate=0), ["spec.rate"]),
    ("unknown-field-typo", with_("slack", minSeverty="high"), ["spec.minSeverty"]),
]


@pytest.fixture(scope="module")
def discovered(control_plane: ControlPlane) -> ControlPlane:
    """The kind is served: discovery of a new CRD can lag its Established condition."""
    deadline = time.monotonic() + 30
    while "notificationchannels " not in control_plane.kubectl("api-resources").stdout:
        assert time.monotonic() < deadline, "notificationchannels never became discoverable"
        time.sleep(0.2)
    return control_plane


@pytest.mark.parametrize(
    ("spec", "expected"),
    [pytest.param(spec, expected, id=case_id) for case_id, spec, expected in INVALID_CHANNELS],
)
def test_invalid_channel_is_refused_naming_the_field(
    discovered: ControlPlane, namespace: str, spec: dict[str, Any], expected: list[str]
) -> None:
    proc = discovered.apply(channel("bad", spec), namespace=namespace, check=False)

    assert proc.returncode != 0, proc.stdout
    for text in expected:
        assert text in proc.stderr, proc.stderr
    stored = discovered.api("GET", f"{GROUP_PATH}/namespaces/{namespace}/notificationchannels")
    assert stored["items"] == []


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_channel_gets_defaults_the_operator_reads(
    discovered: ControlPlane, namespace: str, kind: str
) -> None:
    discovered.apply(channel(kind, VALID[kind]), namespace=namespace)

    spec = discovered.kubectl_json("get", "nch", kind, "-n", namespace)["spec"]
    assert spec["events"] == ["opened", "escalated", "resolved"]
    assert spec["minSeverity"] == "low"
    assert spec["groupWindow"] == "30s"
    if kind == "pagerduty":
        assert spec["pagerduty"]["severityMap"] == {
            "low": "info", "medium": "warning", "high": "error", "critical": "critical",
        }  # fmt: skip
    if kind == "smtp":
        assert spec["email"]["smtp"]["port"] == 587
        assert spec["email"]["smtp"]["tls"] == "starttls"
    # What the API server admits, the operator's own parser accepts.
    assert parse_channel_spec(spec).type.value == spec["type"]


def test_full_channel_is_accepted_as_written(discovered: ControlPlane, namespace: str) -> None:
    spec: dict[str, Any] = {
        "type": "email",
        "email": {
            "from": "Downtime <downtime@example.com>",
            "to": [f"r{i}@example.com" for i in range(50)],
            "smtp": {"host": "[::1]", "port": 465, "tls": "implicit"},
        },
        "events": ["opened", "escalated", "acknowledged", "resolved", "logsCaptured", "reminder"],
        "minSeverity": "high",
        "reminderEvery": "1h30m",
        "groupWindow": "0s",
        "rate": 0.5,
    }
    discovered.apply(channel("full", spec), namespace=namespace)

    stored = discovered.kubectl_json("get", "notificationchannel", "full", "-n", namespace)
    assert stored["spec"] == spec
    assert parse_channel_spec(stored["spec"]).reminder_every is not None


def test_printer_columns_short_name_and_category(discovered: ControlPlane, namespace: str) -> None:
    discovered.apply(channel("oncall", VALID["pagerduty"]), namespace=namespace)
    discovered.api(
        "PATCH",
        f"{GROUP_PATH}/namespaces/{namespace}/notificationchannels/oncall/status",
        {
            "status": {
                "pending": 2,
                "failed": 1,
                "lastDelivery": {
                    "time": "2026-01-01T00:00:00Z",
                    "event": "opened",
                    "incident": "web-20260101-000000",
                    "outcome": "sent",
                },
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "SecretMissing",
                        "message": "Secret notify not found",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
        content_type="application/merge-patch+json",
    )

    out = discovered.kubectl("get", "nch", "-n", namespace).stdout
    assert out.splitlines()[0].split() == [
        "NAME", "TYPE", "READY", "PENDING", "LAST-DELIVERY", "AGE",
    ]  # fmt: skip
    assert out.splitlines()[1].split()[:4] == ["oncall", "pagerduty", "False", "2"]
    listed = discovered.kubectl("get", "downtime", "-n", namespace, "-o", "name").stdout
    assert "notificationchannel.monitoring.gatewayz.ai/oncall" in listed.split()

    refused = discovered.kubectl(
        "patch", "nch", "oncall", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", '{"status": {"lastDelivery": {"outcome": "maybe"}}}',
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "status.lastDelivery.outcome" in refused.stderr
