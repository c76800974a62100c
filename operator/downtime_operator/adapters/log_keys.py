"""The process's log encryption key ring, from its settings, kept up to date while it runs.

One ring per process, shared by every store and log-file adapter of it, so a key added to the
mounted Secret is used everywhere at once (no restart), and the warning about plain storage is
given once, at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from downtime_operator.adapters.encryption import LogKeyRing
from downtime_operator.settings.key_files import reload_keys
from downtime_operator.settings.log_encryption import (
    LogEncryptionSettings,
    current_log_keys,
    log_keys,
)

logger = logging.getLogger(__name__)


def log_key_ring(settings: LogEncryptionSettings, *, announce: bool = True) -> LogKeyRing:
    """The ring of the keys read at start; ``announce``: say once whether data is sealed."""
    ring = LogKeyRing(log_keys(settings), active=settings.active_key)
    if announce and not ring:
        logger.warning(
            "log encryption: no LOG_ENCRYPTION_KEYS or LOG_ENCRYPTION_KEYS_FILE; captured logs,"
            " log files and response bodies are stored plain"
        )
    elif announce:
        logger.info(
            "log encryption: captured data sealed with key %s (keys: %s)",
            ring.active_id,
            ", ".join(ring.ids),
        )
    return ring


@contextlib.asynccontextmanager
async def reloading_log_keys(
    ring: LogKeyRing, settings: LogEncryptionSettings
) -> AsyncIterator[LogKeyRing]:
    """Read LOG_ENCRYPTION_KEYS_FILE again every ``reload_seconds`` until the block ends."""
    if settings.keys_file is None:
        yield ring
        return
    reloading = asyncio.create_task(
        reload_keys(
            period=settings.reload_seconds,
            read=functools.partial(current_log_keys, settings),
            apply=functools.partial(_replace, ring, settings.active_key),
            loaded=log_keys(settings),
            what="log encryption keys",
            log=logger,
            in_use=lambda: ring.ids,
        ),
        name="log-encryption-keys",
    )
    try:
        yield ring
    finally:
        reloading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloading


def _replace(ring: LogKeyRing, active: str | None, keys: dict[str, bytes]) -> None:
    ring.replace(keys, active=active)
