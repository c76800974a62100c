"""``downtime-operator run``'s settings that the chart sets: peering, metrics, namespaces."""

from __future__ import annotations

from datetime import timedelta

import pytest

from downtime_operator.settings import OperatorSettings, SettingsError, load_settings

DSN = {"DATABASE_URL": "postgresql://u@127.0.0.1/db"}


def load(env: dict[str, str]) -> OperatorSettings:
    return load_settings(OperatorSettings, env)


def test_defaults_serve_no_metrics_and_pick_no_fixed_priority() -> None:
    settings = load(DSN)
    assert settings.metrics.port is None
    assert settings.kubernetes.peering_name is None
    assert settings.kubernetes.peering_priority is None
    assert settings.kubernetes.peering_lifetime == 60
    assert settings.retention.keep_critical  # the operator's daily run keeps critical ones
    assert settings.database.dsn == DSN["DATABASE_URL"]


def test_peering_and_metrics_from_the_environment() -> None:
    settings = load(
        {
            **DSN,
            "PEERING_NAME": "ops",
            "PEERING_PRIORITY": "7",
            "PEERING_LIFETIME_SECONDS": "15",
            "METRICS_PORT": "9090",
            "METRICS_HOST": "127.0.0.1",
            "STATUS_SYNC_PERIOD_SECONDS": "30",
        }
    )
    kubernetes = settings.kubernetes
    assert (kubernetes.peering_name, kubernetes.peering_priority, kubernetes.peering_lifetime) == (
        "ops",
        7,
        15,
    )
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9090)
    assert kubernetes.status_sync_period == timedelta(seconds=30)


def test_the_alias_and_empty_variables() -> None:
    dsn = "postgresql://u@alias/db"
    assert load({"SUPABASE_DB_URL": dsn}).database.dsn == dsn
    # Set but empty counts as unset: DATABASE_URL="" does not hide the alias.
    assert load({"DATABASE_URL": "", "SUPABASE_DB_URL": dsn}).database.dsn == dsn
    assert load({**DSN, "LOG_LEVEL": "", "METRICS_PORT": ""}).metrics.port is None


def test_log_json_and_level() -> None:
    settings = load({**DSN, "LOG_JSON": "true", "LOG_LEVEL": "warning"})
    assert settings.logging.as_json and settings.logging.level == "WARNING"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WATCH_NAMESPACES", "team-a,team-*"),
        ("WATCH_NAMESPACES", "Team-A"),
        ("PEERING_LIFETIME_SECONDS", "0"),
        ("METRICS_PORT", "70000"),
        ("STATUS_SYNC_PERIOD_SECONDS", "soon"),
        ("LOG_JSON", "sometimes"),
        ("LOG_LEVEL", "LOUD"),
        ("LOKI_ENABLED", "true"),  # without LOKI_QUERY_URL
        ("LOKI_QUERY_URL", "loki:3100"),
    ],
)
def test_invalid_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load({**DSN, variable: value})


@pytest.mark.parametrize("env", [{}, {"DATABASE_URL": "mysql://u:hunter2@h/db"}])
def test_the_operator_needs_a_postgresql_dsn_and_never_echoes_it(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        load(env)
    assert str(caught.value).startswith("DATABASE_URL: ")
    assert "hunter2" not in str(caught.value)
