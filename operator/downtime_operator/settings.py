"""Operator settings from environment variables, validated with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable."""


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    database_url: str = Field(min_length=1)
    kubeconfig: str | None = None
    watch_namespaces: tuple[str, ...] = ()
    status_sync_period: timedelta = timedelta(seconds=60)
    peering: str | None = None
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, value: str) -> str:
        if not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// DSN")
        return value


_ENV = {
    "database_url": ("DATABASE_URL", "SUPABASE_DB_URL"),
    "kubeconfig": ("KUBECONFIG",),
    "watch_namespaces": ("WATCH_NAMESPACES",),
    "status_sync_period": ("STATUS_SYNC_PERIOD_SECONDS",),
    "peering": ("PEERING_NAME",),
    "log_level": ("LOG_LEVEL",),
    "log_json": ("LOG_JSON",),
}


def load_operator_settings(env: Mapping[str, str]) -> OperatorSettings:
    raw: dict[str, object] = {}
    for field, names in _ENV.items():
        for name in names:
            if env.get(name):
                raw[field] = env[name]
                break
    if isinstance(raw.get("watch_namespaces"), str):
        raw["watch_namespaces"] = tuple(
            ns.strip() for ns in str(raw["watch_namespaces"]).split(",") if ns.strip()
        )
    try:
        return OperatorSettings.model_validate(raw)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            variable = _ENV.get(field, (field.upper(),))[0]
            messages.append(f"{variable}: {error['msg']}")
        raise SettingsError("; ".join(messages)) from exc
