"""Log encryption keys: what was captured from outside is sealed at rest under them (issue 14).

A key ring, as the admin API's keys are: ``LOG_ENCRYPTION_KEYS`` (``id=key,id2=key2``) and/or
``LOG_ENCRYPTION_KEYS_FILE`` (a mounted Secret directory, one file per key id, or a file of
``id=key`` lines), read again while serving. Each key is the base64 of 32 random bytes
(``head -c 32 /dev/urandom | base64``). The first key seals (inline keys first, then the file's
in order; a directory's in name order), unless ``LOG_ENCRYPTION_ACTIVE_KEY`` names another;
every key opens. Errors name key ids, never keys.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from downtime_operator.settings.groups import Group
from downtime_operator.settings.key_files import inline_keys, keys_at_start, keys_with_file
from downtime_operator.settings.sources import SettingsError, Source

KEY_BYTES = 32
_KEYS_FILE = "LOG_ENCRYPTION_KEYS_FILE"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class LogEncryptionSettings(Group):
    """Encryption at rest (AES-256-GCM) of captured logs, log files and response bodies."""

    inline_keys: Annotated[dict[str, SecretStr], Source(env=("LOG_ENCRYPTION_KEYS",))] = Field(
        default_factory=dict,
        description="`id=key,id2=key2`: keys that seal captured logs and response bodies at"
        " rest (each the base64 of 32 random bytes); the first seals, all open; unset: stored"
        " plain",
    )
    keys_file: Annotated[Path | None, Source(env=("LOG_ENCRYPTION_KEYS_FILE",))] = Field(
        default=None,
        description="a mounted Secret directory (one file per key id) or a file of `id=key`"
        " lines, read again while serving",
    )
    active_key: Annotated[str | None, Source(env=("LOG_ENCRYPTION_ACTIVE_KEY",))] = Field(
        default=None,
        description="the id of the key that seals (default: the first key; a directory's keys"
        " are in name order)",
    )
    keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        validate_default=True,
        description="derived: the keys of LOG_ENCRYPTION_KEYS and LOG_ENCRYPTION_KEYS_FILE at"
        " start",
    )
    reload_seconds: Annotated[float, Source(env=("LOG_ENCRYPTION_KEYS_RELOAD_SECONDS",))] = Field(
        default=30.0, gt=0, description="how often LOG_ENCRYPTION_KEYS_FILE is read again"
    )

    @field_validator("inline_keys", mode="before")
    @classmethod
    def _inline(cls, value: object) -> object:
        return inline_keys(value, entry=_key_entry)

    @field_validator("keys", mode="after")
    @classmethod
    def _with_file(cls, _given: dict[str, SecretStr], info: ValidationInfo) -> dict[str, SecretStr]:
        keys = keys_at_start(info, entry=_key_entry, variable=_KEYS_FILE)
        _check_active(info.data.get("active_key"), keys)
        return keys


def current_log_keys(settings: LogEncryptionSettings) -> dict[str, bytes]:
    """The keys as they are now (LOG_ENCRYPTION_KEYS_FILE read again), in ring order.

    Raises SettingsError (naming the variable and a key id, never a key) when invalid now.
    """
    keys = keys_with_file(
        settings.inline_keys, settings.keys_file, entry=_key_entry, variable=_KEYS_FILE
    )
    try:
        _check_active(settings.active_key, keys)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    return decoded(keys)


def log_keys(settings: LogEncryptionSettings) -> dict[str, bytes]:
    """The keys read at start, in ring order."""
    return decoded({key_id: key.get_secret_value() for key_id, key in settings.keys.items()})


def decoded(keys: dict[str, str]) -> dict[str, bytes]:
    return {key_id: base64.b64decode(key) for key_id, key in keys.items()}


def _check_active(active: str | None, keys: Mapping[str, object]) -> None:
    if active is not None and active not in keys:
        raise ValueError(f"LOG_ENCRYPTION_ACTIVE_KEY: the key {active!r} is not among the keys")


def _key_entry(key_id: str, key: str, into: dict[str, str]) -> None:
    if not _KEY_ID.match(key_id):
        raise ValueError(f"key id {key_id!r} must be letters, digits, '.', '_' or '-'")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        # The message names the key, never shows it.
        raise ValueError(
            f"key {key_id!r} must be the base64 of {KEY_BYTES} random bytes"
            " (head -c 32 /dev/urandom | base64)"
        )
    if key_id in into:
        raise ValueError(f"key id {key_id!r} is given twice")
    into[key_id] = key
