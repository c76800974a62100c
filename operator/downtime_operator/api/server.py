"""Serving the application on a TCP port, as a context: up on entry, drained on exit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
"""How long in-flight requests may take to finish when the process is stopping."""


class ListenError(OSError):
    """The address cannot be bound (in use, not permitted); the message says which, so the
    command can end with one line instead of a traceback."""


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, *, host: str, port: int, name: str = "admin API"
) -> AsyncIterator[int]:
    """Listen on ``host:port`` (0 picks a free port); yields the port actually bound."""
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from exc
        bound = runner.addresses[0][1]
        logger.info("%s listening on %s:%d", name, host, bound)
        yield bound
    finally:
        await runner.cleanup()
