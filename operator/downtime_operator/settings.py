"""Operator settings from environment variables, validated with errors that name the variable."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable."""


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    database_url: str = Field(min_length=1)
    kubeconfig: str | None = None
    watch_namespaces: tuple[str, ...] = ()
    status_sync_period: timedelta = timedelta(seconds=60)
    peering: str | None = None
    peering_priority: int | None = None
    """None: a random one per process, since kopf freezes every replica of equal priority."""
    peering_lifetime: int = Field(default=60, ge=1)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """None: no metrics/probe server (tests, local runs); the chart sets it."""
    metrics_host: str = "0.0.0.0"
    log_level: str = "INFO"
    log_json: bool = False
    retention_days: int = Field(default=90, ge=1)
    loki_enabled: bool = False
    loki_query_url: str | None = Field(default=None, validate_default=True)
    loki_username: str | None = None
    loki_api_key: SecretStr | None = None
    loki_tenant_id: str | None = None
    log_files_dir: Path = Path("logs/downtime")

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, value: str) -> str:
        if not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// DSN")
        return value

    @field_validator("status_sync_period", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # The variable is a number of seconds; pydantic would read "60" as an ISO duration.
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            return timedelta(seconds=float(value))
        return value

    @field_validator("watch_namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Exact names only: kopf's namespace scanning (which would resolve patterns) is off, so
        # the operator needs no permission to list namespaces.
        for name in value:
            if not _NAMESPACE.match(name):
                raise ValueError(f"{name!r} is not a namespace name (patterns are not supported)")
        return value

    @field_validator("loki_query_url")
    @classmethod
    def _loki_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("loki_enabled"):
                raise ValueError("required when LOKI_ENABLED is true")
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


_ENV = {
    "database_url": ("DATABASE_URL", "SUPABASE_DB_URL"),
    "kubeconfig": ("KUBECONFIG",),
    "watch_namespaces": ("WATCH_NAMESPACES",),
    "status_sync_period": ("STATUS_SYNC_PERIOD_SECONDS",),
    "peering": ("PEERING_NAME",),
    "peering_priority": ("PEERING_PRIORITY",),
    "peering_lifetime": ("PEERING_LIFETIME_SECONDS",),
    "metrics_port": ("METRICS_PORT",),
    "metrics_host": ("METRICS_HOST",),
    "log_level": ("LOG_LEVEL",),
    "log_json": ("LOG_JSON",),
    "retention_days": ("RETENTION_DAYS",),
    "loki_enabled": ("LOKI_ENABLED",),
    "loki_query_url": ("LOKI_QUERY_URL",),
    "loki_username": ("GRAFANA_LOKI_USERNAME",),
    "loki_api_key": ("GRAFANA_LOKI_API_KEY",),
    "loki_tenant_id": ("LOKI_TENANT_ID",),
    "log_files_dir": ("LOG_FILES_DIR",),
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


# -- The admin API -----------------------------------------------------------------------------

_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MIN_API_KEY_LENGTH = 16


class ApiSettings(BaseModel):
    """The admin API: named keys (several at once, for rotation), where it listens, its limits."""

    model_config = ConfigDict(frozen=True)

    keys: dict[str, SecretStr] = Field(default_factory=dict)
    inline_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """The keys of ADMIN_API_KEYS alone; ``keys`` adds those of ``keys_file``."""
    keys_file: Path | None = None
    """ADMIN_API_KEYS_FILE, read again while serving so a rotated Secret takes effect."""
    keys_reload_seconds: float = Field(default=30.0, gt=0)
    enabled: bool | None = None
    """None: served (inside ``run``) exactly when keys are configured."""
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    allowed_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    key_rate: float = Field(default=10.0, gt=0)
    key_burst: int = Field(default=20, ge=1)
    address_rate: float = Field(default=20.0, gt=0)
    address_burst: int = Field(default=40, ge=1)

    @property
    def serve(self) -> bool:
        return bool(self.keys) if self.enabled is None else self.enabled


_API_ENV = {
    "enabled": "API_ENABLED",
    "host": "API_HOST",
    "port": "API_PORT",
    "allowed_cidrs": "API_ALLOWED_CIDRS",
    "trusted_proxies": "API_TRUSTED_PROXIES",
    "key_rate": "API_RATE_LIMIT_PER_KEY",
    "key_burst": "API_RATE_BURST_PER_KEY",
    "address_rate": "API_RATE_LIMIT_PER_ADDRESS",
    "address_burst": "API_RATE_BURST_PER_ADDRESS",
    "keys_reload_seconds": "ADMIN_API_KEYS_RELOAD_SECONDS",
}


def _key_entry(name: str, key: str, into: dict[str, str]) -> None:
    if not _KEY_NAME.match(name):
        raise ValueError(f"key name {name!r} must be letters, digits, '.', '_' or '-'")
    if len(key) < MIN_API_KEY_LENGTH or any(c.isspace() or c == "," for c in key):
        # The message names the key, never shows it.
        raise ValueError(
            f"key {name!r} must be at least {MIN_API_KEY_LENGTH} characters, without spaces"
            " or commas"
        )
    if name in into:
        raise ValueError(f"key name {name!r} is given twice")
    if key in into.values():
        raise ValueError(f"key {name!r} is the same as another key")
    into[name] = key


def _keys_from_text(text: str, *, separator: str, into: dict[str, str]) -> None:
    """``name=key`` entries; the key may itself contain '=' (base64 padding)."""
    for raw_entry in text.split(separator):
        entry = raw_entry.strip()
        if not entry or entry.startswith("#"):
            continue
        name, equals, key = entry.partition("=")
        if not equals:
            raise ValueError("entries must be name=key")
        _key_entry(name.strip(), key.strip(), into)


def _keys_from_path(path: Path, *, into: dict[str, str]) -> None:
    """A mounted Secret (a directory: file name = key name, content = key) or a file of lines.

    Hidden entries are skipped: the kubelet's ``..data`` links in a Secret volume are not keys.
    """
    if path.is_dir():
        for item in sorted(path.iterdir()):
            if not item.name.startswith(".") and item.is_file():
                _key_entry(item.name, item.read_text(encoding="utf-8").strip(), into)
    else:
        _keys_from_text(path.read_text(encoding="utf-8"), separator="\n", into=into)


def _keys_with_file(inline: Mapping[str, str], keys_file: Path | None) -> dict[str, str]:
    keys = dict(inline)
    if keys_file is not None:
        try:
            _keys_from_path(keys_file, into=keys)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"ADMIN_API_KEYS_FILE: {exc}") from exc
    return keys


def current_api_keys(api: ApiSettings) -> dict[str, str]:
    """The keys as they are now: ADMIN_API_KEYS plus ADMIN_API_KEYS_FILE read again.

    Raises SettingsError (naming the variable, never a key) when the file is now invalid.
    """
    inline = {name: key.get_secret_value() for name, key in api.inline_keys.items()}
    return _keys_with_file(inline, api.keys_file)


def load_api_settings(env: Mapping[str, str]) -> ApiSettings:
    """``ADMIN_API_KEYS`` (``name=key,name=key``) and/or ``ADMIN_API_KEYS_FILE``, plus API_*."""
    inline: dict[str, str] = {}
    try:
        _keys_from_text(env.get("ADMIN_API_KEYS", ""), separator=",", into=inline)
    except ValueError as exc:
        raise SettingsError(f"ADMIN_API_KEYS: {exc}") from exc
    keys_file = Path(env["ADMIN_API_KEYS_FILE"]) if env.get("ADMIN_API_KEYS_FILE") else None
    keys = _keys_with_file(inline, keys_file)
    raw: dict[str, object] = {f: env[v] for f, v in _API_ENV.items() if env.get(v)}
    for cidrs in ("allowed_cidrs", "trusted_proxies"):
        if cidrs in raw:
            raw[cidrs] = tuple(c.strip() for c in str(raw[cidrs]).split(",") if c.strip())
    raw["keys"] = keys
    raw["inline_keys"] = inline
    raw["keys_file"] = keys_file
    try:
        return ApiSettings.model_validate(raw)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            messages.append(f"{_API_ENV.get(field, field.upper())}: {error['msg']}")
        raise SettingsError("; ".join(messages)) from exc
