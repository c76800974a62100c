"""The ``monitor`` and ``cleanup`` settings: the seed's flags and variables, flags first."""

from __future__ import annotations

import pytest

from downtime_operator.cli import build_parser
from downtime_operator.settings import (
    CleanupSettings,
    MonitorSettings,
    SettingsError,
    load_settings,
)
from downtime_operator.standalone import monitor_ref_for


def monitor(*argv: str, env: dict[str, str] | None = None) -> MonitorSettings:
    args = build_parser().parse_args(["monitor", *argv])
    return load_settings(MonitorSettings, env or {}, vars(args))


def test_defaults_are_the_seeds() -> None:
    settings = monitor()
    probe = settings.probe
    assert probe.url == "https://api.gatewayz.ai/health"
    assert (probe.interval, probe.timeout) == (60.0, 10.0)
    assert (probe.failure_threshold, probe.success_threshold) == (3, 1)
    assert settings.database.url is None
    assert str(settings.database.db_path) == "downtime.db"
    assert not settings.capture_enabled  # LOKI_ENABLED defaults to false
    assert not settings.serves_api and not settings.notifications and not settings.logging.verbose


def test_environment_is_read_and_flags_override_it() -> None:
    env = {
        "GATEWAYZ_URL": "http://env.example:8000",
        "HEALTH_CHECK_INTERVAL": "30",
        "HEALTH_CHECK_TIMEOUT": "5",
        "LOKI_ENABLED": "true",
        "LOKI_QUERY_URL": "http://loki:3100",
        "GRAFANA_LOKI_USERNAME": "user",
        "GRAFANA_LOKI_API_KEY": "secret",
        "LOKI_QUERY": '{app="api"}',
    }
    from_env = monitor(env=env)
    assert (from_env.probe.url, from_env.probe.interval, from_env.probe.timeout) == (
        "http://env.example:8000/health",
        30.0,
        5.0,
    )
    assert from_env.capture_enabled
    assert from_env.loki.username == "user"
    overridden = monitor(
        "--url",
        "http://flag.example/ready",
        "--interval",
        "2",
        "--timeout",
        "1",
        env={**env, "HEALTH_CHECK_INTERVAL": "-1"},
    )
    assert (overridden.probe.url, overridden.probe.interval, overridden.probe.timeout) == (
        "http://flag.example/ready",
        2.0,
        1.0,
    )
    assert not monitor("--no-log-capture", env=env).capture_enabled


def test_switches() -> None:
    settings = monitor("-v", "--enable-notifications", env={"SLACK_WEBHOOK_URL": "https://x"})
    assert settings.logging.verbose and settings.notifications


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "no channel is set; set RESEND_API_KEY or SMTP_URL"),
        ({"RESEND_API_KEY": "re_x"}, "NOTIFICATION_EMAIL_FROM, NOTIFICATION_EMAIL_TO required"),
        ({"NOTIFICATION_EMAIL_TO": "a@b.example"}, "RESEND_API_KEY or SMTP_URL required"),
        ({"WEBHOOK_URL": "https://hook.example"}, "WEBHOOK_SECRET required"),
        ({"WEBHOOK_URL": "ftp://hook.example", "WEBHOOK_SECRET": "whsec_x"}, "WEBHOOK_URL"),
    ],
)
def test_notifications_without_a_whole_channel_name_what_is_missing(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        monitor("--enable-notifications", env=env)


@pytest.mark.parametrize(
    ("url", "checked"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/health"),
        ("https://api.example/", "https://api.example/health"),
        ("https://api.example/status?full=1", "https://api.example/status?full=1"),
    ],
)
def test_health_path_is_added_only_when_there_is_none(url: str, checked: str) -> None:
    assert monitor("--url", url).probe.url == checked


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--interval", "0"], {}, "--interval"),
        (["--timeout", "abc"], {}, "--timeout"),
        ([], {"HEALTH_CHECK_INTERVAL": "-1"}, "HEALTH_CHECK_INTERVAL"),
        ([], {"HEALTH_CHECK_TIMEOUT": "nan"}, "HEALTH_CHECK_TIMEOUT"),
        (["--url", "ftp://x"], {}, "--url"),
        ([], {"GATEWAYZ_URL": "localhost:8000"}, "GATEWAYZ_URL"),
        (["--url", "http://x:port"], {}, "--url"),
        (["--failure-threshold", "0"], {}, "--failure-threshold"),
        (["--success-threshold", "1.5"], {}, "--success-threshold"),
        (
            ["--interval", "5", "--timeout", "5"],
            {},
            "--timeout (5s) must be shorter than --interval",
        ),
        ([], {"HEALTH_CHECK_TIMEOUT": "90"}, "HEALTH_CHECK_TIMEOUT (90s) must be shorter"),
        ([], {"LOKI_ENABLED": "maybe"}, "LOKI_ENABLED"),
        ([], {"LOKI_ENABLED": "1"}, "LOKI_QUERY_URL"),
        (["--api-port", "http"], {}, "--api-port"),
        (["--api-port", "70000"], {}, "--api-port"),
        ([], {"API_PORT": "70000"}, "API_PORT"),
        (["--capture-after", "-1"], {}, "--capture-after"),
        ([], {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ([], {"LOG_JSON": "sometimes"}, "LOG_JSON"),
        (["--database-url", "mysql://u:pw@h/db"], {}, "--database-url"),
        ([], {"SUPABASE_DB_URL": "sqlite:///x"}, "SUPABASE_DB_URL"),
    ],
)
def test_bad_values_name_their_flag_or_variable(
    argv: list[str], env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        monitor(*argv, env=env)
    assert str(caught.value).startswith(named)


def test_secrets_are_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        monitor(env={"DATABASE_URL": "mysql://u:hunter2@h/db"})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        monitor("--database-url", "mysql://u:hunter2@h/db", "--interval", "0")
    assert "hunter2" not in str(caught.value) and "--interval" in str(caught.value)


def test_database_url_and_its_alias() -> None:
    dsn = "postgresql://u:p@127.0.0.1:5432/db"
    for env in ({"DATABASE_URL": dsn}, {"SUPABASE_DB_URL": dsn}):
        assert monitor(env=env).database.dsn == dsn
    flag = monitor("--database-url", dsn, env={"DATABASE_URL": "postgresql://other/db"})
    assert flag.database.dsn == dsn


def test_spec_is_what_the_operator_would_run() -> None:
    settings = monitor(
        "--interval",
        "1",
        "--timeout",
        "0.5",
        "--loki-query",
        '{app="api"}',
        env={"LOKI_ENABLED": "true", "LOKI_QUERY_URL": "http://loki:3100"},
    )
    assert settings.spec() == {
        "url": "https://api.gatewayz.ai/health",
        "interval": "1000ms",
        "timeout": "500ms",
        "failureThreshold": 3,
        "successThreshold": 1,
        "logCapture": {
            "enabled": True,
            "before": "300000ms",
            "after": "300000ms",
            "query": '{app="api"}',
        },
    }
    short = monitor("--no-log-capture", "--capture-before", "60", "--capture-after", "2.5")
    assert short.spec()["logCapture"] == {"enabled": False, "before": "60000ms", "after": "2500ms"}


def test_capture_needs_a_query_unless_it_is_off() -> None:
    env = {"LOKI_ENABLED": "true", "LOKI_QUERY_URL": "http://loki:3100"}
    with pytest.raises(SettingsError) as caught:
        monitor(env=env)
    assert str(caught.value).startswith("--loki-query: required when LOKI_ENABLED is true")
    assert not monitor("--no-log-capture", env=env).capture_enabled


KEYS = {"ADMIN_API_KEYS": "ops=" + "k" * 32}


def test_the_api_is_served_when_a_port_is_given_and_needs_a_key() -> None:
    assert not monitor(env=KEYS).serves_api  # keys alone do not open a port
    with pytest.raises(SettingsError) as caught:
        monitor("--api-port", "8081")
    assert str(caught.value).startswith("--api-port: ADMIN_API_KEYS or ADMIN_API_KEYS_FILE")
    with pytest.raises(SettingsError, match=r"^API_ENABLED: ADMIN_API_KEYS or"):
        monitor(env={"API_ENABLED": "true"})
    settings = monitor("--api-port", "8081", env=KEYS)
    assert settings.serves_api
    api = settings.api
    assert (api.host, api.port, list(api.keys)) == ("127.0.0.1", 8081, ["ops"])
    from_env = monitor(env={**KEYS, "API_PORT": "8082", "API_HOST": "0.0.0.0"})
    assert from_env.serves_api and (from_env.api.host, from_env.api.port) == ("0.0.0.0", 8082)
    assert not monitor("--api-port", "8081", env={**KEYS, "API_ENABLED": "false"}).serves_api
    with pytest.raises(SettingsError, match=r"^ADMIN_API_KEYS: "):
        monitor("--api-port", "8081", env={"ADMIN_API_KEYS": "ops=short"})


def test_monitor_name_is_stable_per_endpoint() -> None:
    ref = monitor_ref_for("http://127.0.0.1:8081/health")
    assert (ref.namespace, ref.name) == ("standalone", "127.0.0.1-8081-health")
    assert monitor_ref_for("https://API.example/v1/health").name == "api.example-v1-health"
    assert monitor_ref_for("http://a.example/health") != monitor_ref_for("http://a.example/ready")


def test_cleanup_settings() -> None:
    def cleanup(*argv: str, env: dict[str, str] | None = None) -> tuple[int, bool]:
        args = build_parser().parse_args(["cleanup", *argv])
        settings = load_settings(CleanupSettings, env or {}, vars(args))
        return settings.retention.days, settings.retention.keep_critical

    assert cleanup() == (90, False)
    assert cleanup("--days", "30", "--keep-critical") == (30, True)
    assert cleanup(env={"RETENTION_DAYS": "7"}) == (7, False)
    assert cleanup("--days", "1", env={"RETENTION_DAYS": "7"}) == (1, False)
    with pytest.raises(SettingsError, match=r"^--days"):
        cleanup("--days", "0")
    with pytest.raises(SettingsError, match=r"^RETENTION_DAYS"):
        cleanup(env={"RETENTION_DAYS": "ninety"})
