"""The deployment examples stay in step with the command they run."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from downtime_operator.cli import EXIT_USAGE, build_parser
from downtime_operator.settings import MonitorSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "downtime-monitor.service"
ENV_EXAMPLE = ROOT / "deploy" / "downtime-monitor.env.example"
SEED_VARIABLES = {
    "GATEWAYZ_URL",
    "HEALTH_CHECK_INTERVAL",
    "HEALTH_CHECK_TIMEOUT",
    "LOKI_ENABLED",
    "LOKI_QUERY_URL",
    "GRAFANA_LOKI_USERNAME",
    "GRAFANA_LOKI_API_KEY",
}
OURS = {
    "DATABASE_URL",
    "SUPABASE_DB_URL",
    "LOG_LEVEL",
    "RETENTION_DAYS",
    "LOKI_QUERY",
    "LOKI_TENANT_ID",
    "LOG_FILES_DIR",
    "ADMIN_API_KEYS",
    "API_HOST",
}


def test_unit_runs_the_monitor_and_does_not_restart_on_bad_settings() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)  # keys in lower case
    unit.read(UNIT)
    service = unit["Service"]
    assert service["execstart"].split()[1:] == ["monitor"]
    assert service["environmentfile"] == "/etc/downtime-monitor.env"
    assert service["restartpreventexitstatus"] == str(EXIT_USAGE)
    assert service["killsignal"] == "SIGTERM"
    assert service["workingdirectory"].endswith(service["statedirectory"])


def test_env_example_shows_the_seeds_variables_and_no_unknown_one() -> None:
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert SEED_VARIABLES <= named <= SEED_VARIABLES | OURS


def test_every_example_value_is_accepted_when_uncommented() -> None:
    """The example is documentation users copy: each value in it must be a valid setting."""
    env = dict(re.findall(r"^#?([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    env["LOKI_ENABLED"] = "true"
    args = build_parser().parse_args(["monitor", "--api-port", "8081"])
    settings = load_settings(MonitorSettings, env, vars(args))
    assert settings.capture_enabled and settings.capture.query == '{app="gatewayz-api"}'
    assert settings.serves_api and list(settings.api.keys) == ["ops"]
