"""``downtime-operator run``'s settings that the chart sets: peering, metrics, namespaces."""

from __future__ import annotations

from datetime import timedelta

import pytest

from downtime_operator.settings import SettingsError, load_operator_settings

DSN = {"DATABASE_URL": "postgresql://u@127.0.0.1/db"}


def test_defaults_serve_no_metrics_and_pick_no_fixed_priority() -> None:
    settings = load_operator_settings(DSN)
    assert settings.metrics_port is None
    assert settings.peering is None and settings.peering_priority is None
    assert settings.peering_lifetime == 60


def test_peering_and_metrics_from_the_environment() -> None:
    settings = load_operator_settings(
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
    assert (settings.peering, settings.peering_priority, settings.peering_lifetime) == (
        "ops",
        7,
        15,
    )
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9090)
    assert settings.status_sync_period == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WATCH_NAMESPACES", "team-a,team-*"),
        ("WATCH_NAMESPACES", "Team-A"),
        ("PEERING_LIFETIME_SECONDS", "0"),
        ("METRICS_PORT", "70000"),
        ("STATUS_SYNC_PERIOD_SECONDS", "soon"),
    ],
)
def test_invalid_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_operator_settings({**DSN, variable: value})
