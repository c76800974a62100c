"""Named keys given inline (``name=key,...``) or in a file, and read again while serving.

Both key rings read this way (the admin API's keys, the log encryption keys): a mounted Secret
directory (file name = key name, content = key) or a file of ``name=key`` lines. The kubelet
updates a mounted Secret in place, so ``reload_keys`` reads it again every period: a rotation
(add the new key, move over, remove the old one) needs no restart. Errors name a key, never show
it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr, ValidationInfo

from downtime_operator.settings.sources import SettingsError

T = TypeVar("T")

KeyEntry = Callable[[str, str, dict[str, str]], None]
"""Checks one ``name``/``key`` pair and adds it to the dict (ValueError naming the key if not)."""


def keys_from_text(text: str, *, separator: str, entry: KeyEntry, into: dict[str, str]) -> None:
    """``name=key`` entries; the key may itself contain '=' (base64 padding)."""
    for raw_entry in text.split(separator):
        line = raw_entry.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, key = line.partition("=")
        if not equals:
            raise ValueError("entries must be name=key")
        entry(name.strip(), key.strip(), into)


def keys_from_path(path: Path, *, entry: KeyEntry, into: dict[str, str]) -> None:
    """A mounted Secret (a directory: file name = key name, content = key, in name order) or a
    file of lines (in their order).

    Hidden entries are skipped: the kubelet's ``..data`` links in a Secret volume are not keys.
    """
    if path.is_dir():
        for item in sorted(path.iterdir()):
            if not item.name.startswith(".") and item.is_file():
                entry(item.name, item.read_text(encoding="utf-8").strip(), into)
    else:
        keys_from_text(path.read_text(encoding="utf-8"), separator="\n", entry=entry, into=into)


def inline_keys(value: object, *, entry: KeyEntry) -> object:
    """A ``name=key,...`` variable as a dict, for a ``mode="before"`` validator."""
    if not isinstance(value, str):
        return value
    keys: dict[str, str] = {}
    keys_from_text(value, separator=",", entry=entry, into=keys)
    return keys


def keys_at_start(info: ValidationInfo, *, entry: KeyEntry, variable: str) -> dict[str, SecretStr]:
    """The derived ``keys`` of a group with ``inline_keys`` and ``keys_file``: both read at
    start (empty when the inline keys were refused: that error is reported)."""
    inline = info.data.get("inline_keys")
    if inline is None:
        return {}
    keys = keys_with_file(inline, info.data.get("keys_file"), entry=entry, variable=variable)
    return {name: SecretStr(key) for name, key in keys.items()}


def keys_with_file(
    inline: Mapping[str, SecretStr], keys_file: Path | None, *, entry: KeyEntry, variable: str
) -> dict[str, str]:
    """The inline keys, then those of ``keys_file``; SettingsError names ``variable``."""
    keys = {name: key.get_secret_value() for name, key in inline.items()}
    if keys_file is not None:
        try:
            keys_from_path(keys_file, entry=entry, into=keys)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{variable}: {exc}") from exc
    return keys


async def reload_keys(
    *,
    period: float,
    read: Callable[[], T],
    apply: Callable[[T], None],
    loaded: T,
    what: str,
    log: logging.Logger,
    in_use: Callable[[], Sequence[str]],
) -> None:
    """Every ``period`` seconds ``read`` the keys again (in a thread: it reads files) and
    ``apply`` them when they changed. A file that became invalid leaves the keys in use as they
    are, reported once per problem rather than every period. ``in_use`` names the keys in use
    (their names only) in the messages to ``log`` (the caller's logger)."""
    reported: str | None = None
    while True:
        await asyncio.sleep(period)
        try:
            keys = await asyncio.to_thread(read)
        except SettingsError as exc:
            if str(exc) != reported:
                reported = str(exc)
                log.error("%s not reloaded, still using %s: %s", what, in_use(), exc)
            continue
        reported = None
        if keys != loaded:
            apply(keys)
            loaded = keys
            log.info("%s reloaded: %s", what, ", ".join(in_use()) or "none")
