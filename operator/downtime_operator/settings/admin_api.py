"""The admin API's settings: named keys (several at once, for rotation), address, limits."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from downtime_operator.settings.groups import CommaSeparated, Group
from downtime_operator.settings.key_files import inline_keys, keys_at_start, keys_with_file
from downtime_operator.settings.sources import Source

_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MIN_API_KEY_LENGTH = 16
_KEYS_FILE = "ADMIN_API_KEYS_FILE"

Networks = tuple[IPv4Network | IPv6Network, ...]


class ApiSettings(Group):
    """The admin API: its keys, where it listens, who may call it and how often."""

    inline_keys: Annotated[dict[str, SecretStr], Source(env=("ADMIN_API_KEYS",))] = Field(
        default_factory=dict,
        description="`name=key,name2=key2` (keys >= 16 chars; several at once for rotation;"
        " the name is what the audit log records)",
    )
    keys_file: Annotated[Path | None, Source(env=("ADMIN_API_KEYS_FILE",))] = Field(
        default=None,
        description="a mounted Secret directory (one file per key name) or a file of"
        " `name=key` lines, read again while serving",
    )
    keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        validate_default=True,
        description="derived: the keys of ADMIN_API_KEYS and of ADMIN_API_KEYS_FILE at start",
    )
    keys_reload_seconds: Annotated[float, Source(env=("ADMIN_API_KEYS_RELOAD_SECONDS",))] = Field(
        default=30.0, gt=0, description="how often ADMIN_API_KEYS_FILE is read again"
    )
    enabled: Annotated[bool | None, Source(env=("API_ENABLED",))] = Field(
        default=None,
        description="serve the admin API; unset: `run` serves it when keys are set, `monitor`"
        " when a port is given",
    )
    host: Annotated[str, Source(env=("API_HOST",), flag="--api-host", metavar="HOST")] = Field(
        default="0.0.0.0", description="address the admin API listens on"
    )
    port: Annotated[int, Source(env=("API_PORT",), flag="--api-port", metavar="PORT")] = Field(
        default=8080,
        ge=0,
        le=65535,
        description="port of the admin API (0 picks a free one); `monitor` serves the API when"
        " it is given",
    )
    allowed_cidrs: Annotated[Networks, CommaSeparated, Source(env=("API_ALLOWED_CIDRS",))] = Field(
        default=(), description="comma-separated client networks allowed to call the API"
    )
    trusted_proxies: Annotated[Networks, CommaSeparated, Source(env=("API_TRUSTED_PROXIES",))] = (
        Field(
            default=(),
            description="comma-separated networks of the proxies in front of the API, whose"
            " `X-Forwarded-For` is believed",
        )
    )
    key_rate: Annotated[float, Source(env=("API_RATE_LIMIT_PER_KEY",))] = Field(
        default=10.0, gt=0, description="requests per second per key"
    )
    key_burst: Annotated[int, Source(env=("API_RATE_BURST_PER_KEY",))] = Field(
        default=20, ge=1, description="burst per key"
    )
    address_rate: Annotated[float, Source(env=("API_RATE_LIMIT_PER_ADDRESS",))] = Field(
        default=20.0, gt=0, description="requests per second per client address"
    )
    address_burst: Annotated[int, Source(env=("API_RATE_BURST_PER_ADDRESS",))] = Field(
        default=40, ge=1, description="burst per client address"
    )

    @field_validator("inline_keys", mode="before")
    @classmethod
    def _inline(cls, value: object) -> object:
        return inline_keys(value, entry=_key_entry)

    @field_validator("keys", mode="after")
    @classmethod
    def _with_file(cls, _given: dict[str, SecretStr], info: ValidationInfo) -> dict[str, SecretStr]:
        return keys_at_start(info, entry=_key_entry, variable=_KEYS_FILE)

    @property
    def serve(self) -> bool:
        """Whether ``run`` serves the API beside the operator."""
        return bool(self.keys) if self.enabled is None else self.enabled


def current_api_keys(api: ApiSettings) -> dict[str, str]:
    """The keys as they are now: ADMIN_API_KEYS plus ADMIN_API_KEYS_FILE read again.

    Raises SettingsError (naming the variable, never a key) when the file is now invalid.
    """
    return keys_with_file(api.inline_keys, api.keys_file, entry=_key_entry, variable=_KEYS_FILE)


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
