"""``spec.metrics`` and the Prometheus part of the metrics snapshot, without a server: the spec
as the CRD states it, the plan, the step, reading a ``query_range`` answer, the stored JSON, and
the operator's PROMETHEUS_* settings."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from downtime_operator.adapters.postgres.rows import keep_prometheus
from downtime_operator.domain.log_capture import plan_metrics
from downtime_operator.domain.prometheus import (
    MAX_QUERIES,
    MAX_SERIES,
    MetricQuery,
    MetricsPlan,
    parse_matrix,
    plan_from_json,
    plan_json,
    query_step,
)
from downtime_operator.domain.spec import InvalidSpecError, parse_monitor_spec
from downtime_operator.domain.window import NS_PER_SECOND, CaptureWindow
from downtime_operator.settings import OperatorSettings, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
DSN = {"DATABASE_URL": "postgresql://u@127.0.0.1/db"}


def crd_metrics() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "healthmonitors.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    metrics: dict[str, Any] = spec["properties"]["metrics"]
    return metrics


def test_the_spec_takes_named_queries_within_the_crds_limits() -> None:
    schema = crd_metrics()
    assert schema["maxItems"] == MAX_QUERIES
    assert schema["items"]["properties"]["query"]["maxLength"] == 2000
    spec = parse_monitor_spec(
        {
            "url": "http://api/health",
            "logCapture": {"before": "2m", "after": "30s"},
            "metrics": [{"name": "queue_depth", "query": "sum(app_queue_depth)"}],
        }
    )
    assert spec.metrics == (MetricQuery(name="queue_depth", query="sum(app_queue_depth)"),)
    assert plan_metrics(spec) == MetricsPlan(
        queries=spec.metrics, before=timedelta(minutes=2), after=timedelta(seconds=30)
    )
    assert plan_metrics(parse_monitor_spec({"url": "http://api/health"})) is None


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ([{"name": "q", "query": "up"}, {"name": "q", "query": "down"}], "repeated: q"),
        ([{"name": "queue depth", "query": "up"}], "spec.metrics[0].name"),
        ([{"name": "q", "query": ""}], "spec.metrics[0].query"),
        ([{"name": f"q{n}", "query": "up"} for n in range(MAX_QUERIES + 1)], "spec.metrics"),
    ],
)
def test_bad_metrics_name_their_field(metrics: list[dict[str, str]], field: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_monitor_spec({"url": "http://api/health", "metrics": metrics})
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "step"), [(0, 1), (10, 1), (300, 1), (301, 2), (3690, 13), (86400, 288)]
)
def test_the_step_keeps_every_series_within_300_points(seconds: int, step: int) -> None:
    window = CaptureWindow(start_ns=0, end_ns=seconds * NS_PER_SECOND)
    assert query_step(window) == step
    assert seconds // step + 1 <= 301


def matrix(count: int) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"pod": f"api-{n:02d}"},
                    "values": [[1700000000.5, "1"], [1700000001.5, "NaN"]],
                }
                for n in reversed(range(count))
            ],
        },
    }


def test_a_matrix_is_read_in_label_order_and_capped() -> None:
    series, truncated = parse_matrix(matrix(3))
    assert not truncated
    assert [s.labels["pod"] for s in series] == ["api-00", "api-01", "api-02"]
    assert series[0].values == ((1700000000.5, "1"), (1700000001.5, "NaN"))
    series, truncated = parse_matrix(matrix(MAX_SERIES + 1))
    assert truncated and len(series) == MAX_SERIES


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success", "data": {"resultType": "vector", "result": []}},
        {"status": "success"},
        {"status": "success", "data": {"resultType": "matrix", "result": "x"}},
    ],
)
def test_an_answer_that_is_not_a_matrix_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"matrix|result"):
        parse_matrix(body)


def test_the_plan_is_stored_with_its_margins_in_seconds() -> None:
    plan = MetricsPlan(
        queries=(MetricQuery(name="q", query="up"),),
        before=timedelta(minutes=5),
        after=timedelta(seconds=90),
    )
    stored = plan_json(plan)
    assert stored["after_seconds"] == 90.0  # what the stores add to the end
    assert plan_from_json(json.dumps(stored)) == plan
    assert plan_from_json('{"queries": "no"}') is None
    assert plan_from_json(None) is None


def test_a_new_snapshot_of_the_checks_keeps_the_prometheus_part() -> None:
    stored = json.dumps({"stage": "detection", "prometheus": {"queries": []}})
    new = json.dumps({"stage": "resolution"})
    assert json.loads(keep_prometheus(new, stored=stored) or "") == {
        "stage": "resolution",
        "prometheus": {"queries": []},
    }
    assert keep_prometheus(new, stored=None) == new
    assert keep_prometheus(new, stored=json.dumps({"stage": "detection"})) == new
    assert keep_prometheus(None, stored=stored) is None


def test_prometheus_settings_from_the_environment() -> None:
    settings = load_settings(
        OperatorSettings,
        {
            **DSN,
            "PROMETHEUS_URL": "https://prom.example/api/prom",
            "PROMETHEUS_USERNAME": "grafana",
            "PROMETHEUS_PASSWORD": "s3cret",
            "PROMETHEUS_ORG_ID": "team-a",
        },
    )
    prometheus = settings.prometheus
    assert prometheus.url == "https://prom.example/api/prom"
    assert prometheus.password is not None and "s3cret" not in repr(prometheus)
    assert load_settings(OperatorSettings, DSN).prometheus.url is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PROMETHEUS_URL": "prom:9090"}, "PROMETHEUS_URL"),
        (
            {
                "PROMETHEUS_URL": "http://p",
                "PROMETHEUS_USERNAME": "u",
                "PROMETHEUS_BEARER_TOKEN": "t",
            },
            "PROMETHEUS_BEARER_TOKEN",
        ),
    ],
)
def test_bad_prometheus_settings_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(OperatorSettings, {**DSN, **env})
    assert named in str(caught.value) and "t0k" not in str(caught.value)
