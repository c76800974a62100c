"""The MaintenanceWindow CRD and ``HealthMonitor.spec.slo`` against a real kube-apiserver:
invalid windows and objectives are refused at ``kubectl apply`` time with a message naming the
field; what is admitted, the operator's parsers accept (issue 15, acceptance 6)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from downtime_operator.adapters.kube.maintenance_windows import KubeMaintenanceWindows
from downtime_operator.adapters.kube.resources import load_api_client
from downtime_operator.domain.maintenance import (
    OneOff,
    Recurring,
    ad_hoc_window,
    parse_window_spec,
)
from downtime_operator.domain.slo import SloSpec

from .controlplane import ControlPlane

API_VERSION = "monitoring.gatewayz.ai/v1"
GROUP_PATH = "/apis/monitoring.gatewayz.ai/v1"
NIGHTLY: dict[str, Any] = {
    "monitors": ["api"],
    "cron": "30 2 * * *",
    "duration": "1h",
    "timeZone": "Europe/Berlin",
}
ONE_OFF: dict[str, Any] = {
    "selector": {"matchLabels": {"team": "payments"}},
    "start": "2026-11-29T22:00:00Z",
    "end": "2026-11-30T02:00:00+01:00",
    "reason": "database upgrade",
}


def window(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MaintenanceWindow",
        "metadata": {"name": name},
        "spec": spec,
    }


def nightly(**changes: Any) -> dict[str, Any]:
    spec = {**NIGHTLY, **changes}
    return {k: v for k, v in spec.items() if v is not None}


def one_off(**changes: Any) -> dict[str, Any]:
    spec = {**ONE_OFF, **changes}
    return {k: v for k, v in spec.items() if v is not None}


def monitor(name: str, slo: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "HealthMonitor",
        "metadata": {"name": name},
        "spec": {"url": "http://127.0.0.1:9/healthz", "slo": slo},
    }


# (test id, spec, text every error output must contain)
INVALID_WINDOWS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("cron-6-fields", nightly(cron="0 30 2 * * *"), ["spec.cron", "must be 5 cron fields"]),
    ("cron-4-fields", nightly(cron="30 2 * *"), ["spec.cron", "must be 5 cron fields"]),
    ("cron-minute-60", nightly(cron="60 2 * * *"), ["spec.cron", "minute 0-59"]),
    ("cron-hour-24", nightly(cron="30 24 * * *"), ["spec.cron"]),
    ("cron-day-of-week-8", nightly(cron="30 2 * * 8"), ["spec.cron"]),
    ("cron-step-0", nightly(cron="*/0 2 * * *"), ["spec.cron"]),
    ("cron-without-duration", nightly(duration=None), ["spec.duration", "go together"]),
    ("duration-not-duration", nightly(duration="1 hour"), ["spec.duration"]),
    ("duration-0s", nightly(duration="0s"), ["spec.duration", "at least 1s"]),
    ("unknown-time-zone", nightly(timeZone="Mars/Olympus"), ["spec.timeZone", "IANA time zone"]),
    (
        "end-before-start",
        one_off(end="2026-11-29T21:00:00Z"),
        ["spec.end", "spec.end must be after spec.start"],
    ),
    ("start-without-end", one_off(end=None), ["spec.end", "go together"]),
    ("start-not-a-time", one_off(start="tonight"), ["spec.start"]),
    (
        "time-zone-on-one-off",
        one_off(timeZone="Europe/Berlin"),
        ["spec.timeZone", "applies to spec.cron only"],
    ),
    (
        "both-one-off-and-cron",
        one_off(cron="30 2 * * *", duration="1h"),
        ["exactly one of spec.start (one-off) and spec.cron (recurring) must be set"],
    ),
    (
        "neither-selector-nor-monitors",
        nightly(monitors=None),
        ["exactly one of spec.selector and spec.monitors must be set"],
    ),
    (
        "selector-and-monitors",
        nightly(selector={"matchLabels": {"team": "payments"}}),
        ["exactly one of spec.selector and spec.monitors must be set"],
    ),
    ("monitors-empty", nightly(monitors=[]), ["spec.monitors"]),
    ("monitor-name-uppercase", nightly(monitors=["API"]), ["spec.monitors[0]"]),
    (
        "selector-in-without-values",
        one_off(selector={"matchExpressions": [{"key": "team", "operator": "In"}]}),
        ["spec.selector.matchExpressions[0].values", "must be non-empty for In"],
    ),
    (
        "selector-unknown-operator",
        one_off(selector={"matchExpressions": [{"key": "team", "operator": "Is"}]}),
        ["spec.selector.matchExpressions[0].operator", "Unsupported value"],
    ),
    ("unknown-field", nightly(timezone="UTC"), ["spec.timezone"]),
]

INVALID_OBJECTIVES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("objective-100", {"objective": "100"}, ["spec.slo.objective"]),
    ("objective-abc", {"objective": "abc"}, ["spec.slo.objective"]),
    ("objective-49.9", {"objective": "49.9"}, ["spec.slo.objective"]),
    ("objective-number", {"objective": 99.9}, ["spec.slo.objective", "string"]),
    ("objective-missing", {"window": "30d"}, ["spec.slo.objective", "Required value"]),
    ("window-0d", {"objective": "99.9", "window": "0d"}, ["spec.slo.window"]),
    ("window-91d", {"objective": "99.9", "window": "91d"}, ["spec.slo.window"]),
    ("window-hours", {"objective": "99.9", "window": "24h"}, ["spec.slo.window"]),
]


@pytest.fixture(scope="module")
def discovered(control_plane: ControlPlane) -> ControlPlane:
    """The kind is served: discovery of a new CRD can lag its Established condition."""
    deadline = time.monotonic() + 30
    while "maintenancewindows " not in control_plane.kubectl("api-resources").stdout:
        assert time.monotonic() < deadline, "maintenancewindows never became discoverable"
        time.sleep(0.2)
    return control_plane


REFUSED = [
    pytest.param(window("bad", spec), "maintenancewindows", expected, id=case_id)
    for case_id, spec, expected in INVALID_WINDOWS
] + [
    pytest.param(monitor("bad", slo), "healthmonitors", expected, id=case_id)
    for case_id, slo, expected in INVALID_OBJECTIVES
]


@pytest.mark.parametrize(("body", "plural", "expected"), REFUSED)
def test_invalid_window_or_objective_is_refused_naming_the_field(
    discovered: ControlPlane,
    namespace: str,
    body: dict[str, Any],
    plural: str,
    expected: list[str],
) -> None:
    proc = discovered.apply(body, namespace=namespace, check=False)

    assert proc.returncode != 0, proc.stdout
    for text in expected:
        assert text in proc.stderr, proc.stderr
    stored = discovered.api("GET", f"{GROUP_PATH}/namespaces/{namespace}/{plural}")
    assert stored["items"] == []


def test_objective_bounds_are_admitted_and_parsed(discovered: ControlPlane, namespace: str) -> None:
    for name, objective in (("low", "50"), ("high", "99.999999")):
        discovered.apply(monitor(name, {"objective": objective}), namespace=namespace)
        slo = discovered.kubectl_json("get", "hm", name, "-n", namespace)["spec"]["slo"]
        assert slo == {"objective": objective, "window": "30d"}  # the default window
        assert SloSpec.parse(objective=slo["objective"], window=slo["window"]).window.days == 30


def test_valid_windows_are_admitted_and_parsed(discovered: ControlPlane, namespace: str) -> None:
    discovered.apply(window("nightly", NIGHTLY), namespace=namespace)
    discovered.apply(window("upgrade", ONE_OFF), namespace=namespace)

    stored = discovered.kubectl_json("get", "mw", "nightly", "-n", namespace)["spec"]
    assert stored == NIGHTLY
    parsed = parse_window_spec(stored)
    assert isinstance(parsed.schedule, Recurring)
    assert parsed.applies_to(name="api", labels={}) and not parsed.applies_to(name="web", labels={})

    stored = discovered.kubectl_json("get", "maintenancewindow", "upgrade", "-n", namespace)
    parsed = parse_window_spec(stored["spec"])
    assert parsed.schedule == OneOff(
        start=datetime(2026, 11, 29, 22, tzinfo=UTC), end=datetime(2026, 11, 30, 1, tzinfo=UTC)
    )
    assert parsed.applies_to(name="any", labels={"team": "payments"})


def test_printer_columns_short_name_and_category(discovered: ControlPlane, namespace: str) -> None:
    discovered.apply(window("nightly", NIGHTLY), namespace=namespace)
    discovered.api(
        "PATCH",
        f"{GROUP_PATH}/namespaces/{namespace}/maintenancewindows/nightly/status",
        {"status": {"active": True, "nextStart": "2026-11-30T01:30:00Z", "monitors": 1}},
        content_type="application/merge-patch+json",
    )
    plain = discovered.kubectl("get", "mw", "-n", namespace).stdout
    assert plain.splitlines()[0].split() == ["NAME", "ACTIVE", "NEXT", "MONITORS", "AGE"]
    row = plain.splitlines()[1].split()
    assert row[0] == "nightly" and row[1] == "true" and row[3] == "1"
    listed = discovered.kubectl("get", "downtime", "-n", namespace, "-o", "name").stdout
    assert "maintenancewindow.monitoring.gatewayz.ai/nightly" in listed.split()


async def test_an_ad_hoc_window_is_a_valid_maintenance_window(
    discovered: ControlPlane, namespace: str
) -> None:
    """What ``POST /admin/downtime/maintenance`` creates, the API server admits and the
    operator's parser reads back as the same one-off window."""
    start = datetime(2026, 11, 29, 10, 0, 7, 123456, tzinfo=UTC)
    api_client = await load_api_client(str(discovered.kubeconfig))
    try:
        for monitors, labels in ((["api", "web"], None), (None, {"team": "payments"})):
            name, spec = ad_hoc_window(
                monitors=monitors,
                match_labels=labels,
                start=start,
                duration=timedelta(minutes=30),
                reason="hotfix (ops)",
            )
            await KubeMaintenanceWindows(api_client).start_maintenance(
                namespace=namespace, name=name, spec=spec
            )
            stored = discovered.kubectl_json("get", "mw", name, "-n", namespace)
            assert stored["spec"] == spec
            parsed = parse_window_spec(stored["spec"])
            assert parsed.schedule == OneOff(
                start=start.replace(microsecond=0),
                end=start.replace(microsecond=0) + timedelta(minutes=30),
            )
        assert len(discovered.kubectl_json("get", "mw", "-n", namespace)["items"]) == 2
    finally:
        await api_client.close()
