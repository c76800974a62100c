"""Settings of every command: groups by concern, each field's sources beside it, one loader.

``load_settings(MonitorSettings, os.environ, flags)`` reads the environment, then the flags; a
bad value raises SettingsError naming the flag or variable it came from.
"""

from downtime_operator.settings.admin_api import ApiSettings, current_api_keys
from downtime_operator.settings.commands import (
    CleanupSettings,
    CommandSettings,
    MaintenanceSettings,
    MonitorSettings,
    OperatorSettings,
    ReportSettings,
    RotateKeysSettings,
    StoreSettings,
)
from downtime_operator.settings.groups import (
    CaptureSettings,
    DatabaseSettings,
    KubernetesSettings,
    LoggingSettings,
    LokiSettings,
    MetricsSettings,
    MonitorCaptureSettings,
    ProbeSettings,
    PrometheusSettings,
    RetentionSettings,
)
from downtime_operator.settings.log_encryption import LogEncryptionSettings
from downtime_operator.settings.sources import (
    Setting,
    SettingsError,
    load_settings,
    settings_of,
)

__all__ = [
    "ApiSettings",
    "CaptureSettings",
    "CleanupSettings",
    "CommandSettings",
    "DatabaseSettings",
    "KubernetesSettings",
    "LogEncryptionSettings",
    "LoggingSettings",
    "LokiSettings",
    "MaintenanceSettings",
    "MetricsSettings",
    "MonitorCaptureSettings",
    "MonitorSettings",
    "OperatorSettings",
    "ProbeSettings",
    "PrometheusSettings",
    "ReportSettings",
    "RetentionSettings",
    "RotateKeysSettings",
    "Setting",
    "SettingsError",
    "StoreSettings",
    "current_api_keys",
    "load_settings",
    "settings_of",
]
