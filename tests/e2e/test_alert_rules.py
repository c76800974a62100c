"""The chart's PrometheusRule, checked and unit-tested by the real promtool.

Each alert has series that fire it and series beside them that must not: promtool compares the
exact set of alerts (labels and annotations) at each evaluation time.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.go_binaries import REPO, go_binary
from tests.support.helm import Helm, helm_binary

RELEASE = "downtime"
JOB = "downtime-downtime-operator"
"""The chart's Service name for this release: the job label the ServiceMonitor gives."""


@pytest.fixture(scope="module")
def promtool() -> Path:
    return go_binary("PROMTOOL", REPO / "scripts" / "build-prometheus.sh")


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    helm = Helm(helm_binary())
    [rule] = [
        doc
        for doc in helm.template(
            release=RELEASE, namespace="monitoring", values={"prometheusRule": {"enabled": True}}
        )
        if doc["kind"] == "PrometheusRule"
    ]
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def alert(severity: str, summary: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": severity, **labels}, "exp_annotations": {"summary": summary}}


SEVERITY = 'gatewayz_downtime_incident_severity{{monitor="{monitor}",severity="{severity}"}}'
BURN = 'gatewayz_downtime_burn_rate{{monitor="{monitor}",window="{window}"}}'
CRITICAL_DESCRIPTION = (
    "kubectl get downtimeincidents -A shows it; the admin API's report has its evidence."
)

TESTS: list[dict[str, Any]] = [
    {
        "interval": "1m",
        "input_series": [
            # api escalated to critical after 3 minutes; web stays high.
            {
                "series": SEVERITY.format(monitor="a/api", severity="high"),
                "values": "1 1 1",
            },
            {
                "series": SEVERITY.format(monitor="a/api", severity="critical"),
                "values": "_ _ _ 1x10",
            },
            {
                "series": SEVERITY.format(monitor="a/web", severity="high"),
                "values": "1x13",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "DowntimeCriticalIncident", "exp_alerts": []},
            {
                "eval_time": "5m",
                "alertname": "DowntimeCriticalIncident",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "critical", "monitor": "a/api"},
                        "exp_annotations": {
                            "summary": "Critical incident ongoing on a/api",
                            "description": CRITICAL_DESCRIPTION,
                        },
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # api down for 20 minutes; web down 10 minutes, then up again.
            {"series": 'gatewayz_downtime_incidents_ongoing{monitor="a/api"}', "values": "1x20"},
            {
                "series": 'gatewayz_downtime_incidents_ongoing{monitor="a/web"}',
                "values": "1x10 0x10",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": "DowntimeMonitorDown", "exp_alerts": []},
            {
                "eval_time": "16m",
                "alertname": "DowntimeMonitorDown",
                "exp_alerts": [
                    alert(
                        "warning",
                        "a/api has been down for more than 15m",
                        monitor="a/api",
                    )
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # team-a's store lane never empties; team-b's empties once a while.
            {
                "series": 'gatewayz_operator_pending_writes{queue="store",lane="team-a"}',
                "values": "3x15",
            },
            {
                "series": 'gatewayz_operator_pending_writes{queue="store",lane="team-b"}',
                "values": "5x5 0 5x9",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "DowntimeOperatorWritesPending", "exp_alerts": []},
            {
                "eval_time": "12m",
                "alertname": "DowntimeOperatorWritesPending",
                "exp_alerts": [
                    alert(
                        "warning",
                        "Writes to store for team-a pending for 10 minutes",
                        queue="store",
                        lane="team-a",
                    )
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # api burns 20x over 1h and db 7x over 6h for 10 minutes; web 20x for 3 minutes only.
            {"series": BURN.format(monitor="a/api", window="h1"), "values": "20x10"},
            {"series": BURN.format(monitor="a/db", window="h6"), "values": "7x10"},
            {"series": BURN.format(monitor="a/web", window="h1"), "values": "20 20 20 0x7"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "6m",
                "alertname": "DowntimeErrorBudgetBurnPage",
                "exp_alerts": [
                    alert("critical", f"{m} is burning its error budget fast", monitor=m)
                    for m in ("a/api", "a/db")
                ],
            },
        ],
    },
    {
        "interval": "5m",
        "input_series": [
            # api: 2x over 3 days and over 6 hours; web: 2x over 3 days but 0.5x lately.
            {"series": BURN.format(monitor="a/api", window="d3"), "values": "2x10"},
            {"series": BURN.format(monitor="a/api", window="h6"), "values": "2x10"},
            {"series": BURN.format(monitor="a/web", window="d3"), "values": "2x10"},
            {"series": BURN.format(monitor="a/web", window="h6"), "values": "0.5x10"},
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "DowntimeErrorBudgetBurnTicket", "exp_alerts": []},
            {
                "eval_time": "35m",
                "alertname": "DowntimeErrorBudgetBurnTicket",
                "exp_alerts": [
                    alert(
                        "warning",
                        "a/api will spend its error budget before the window ends",
                        monitor="a/api",
                    )
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {
                "series": 'gatewayz_downtime_error_budget_remaining_ratio{monitor="a/api"}',
                "values": "-0.1x10",
            },
            {
                "series": 'gatewayz_downtime_error_budget_remaining_ratio{monitor="a/web"}',
                "values": "0.2x10",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "6m",
                "alertname": "DowntimeErrorBudgetExhausted",
                "exp_alerts": [
                    alert(
                        "warning",
                        "a/api has spent its error budget for the SLO window",
                        monitor="a/api",
                    )
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # The operator scraped for 3 minutes, then down; another job's target is up.
            {"series": f'up{{job="{JOB}",instance="10.0.0.1:9090"}}', "values": "1 1 1 0x10"},
            {"series": 'up{job="other",instance="10.0.0.2:9090"}', "values": "1x13"},
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "DowntimeOperatorNotScraped", "exp_alerts": []},
            {"eval_time": "7m", "alertname": "DowntimeOperatorNotScraped", "exp_alerts": []},
            {
                "eval_time": "9m",
                "alertname": "DowntimeOperatorNotScraped",
                "exp_alerts": [
                    alert(
                        "warning",
                        "No downtime-operator replica has been scraped for 5m",
                    )
                ],
            },
        ],
    },
]


def run(promtool: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_rules_are_valid(promtool: Path, rules_file: Path) -> None:
    out = run(promtool, "check", "rules", str(rules_file))
    assert "7 rules found" in out


def test_every_alert_fires_on_its_series_and_only_there(
    promtool: Path, rules_file: Path, tmp_path: Path
) -> None:
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump(
            {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": TESTS}
        )
    )
    run(promtool, "test", "rules", str(tests))
    tested = {case["alertname"] for group in TESTS for case in group["alert_rule_test"]}
    rules = yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
    assert tested == {rule["alert"] for rule in rules}


def test_off_by_default() -> None:
    helm = Helm(helm_binary())
    kinds = {doc["kind"] for doc in helm.template(release=RELEASE, namespace="monitoring")}
    assert "PrometheusRule" not in kinds
