"""The operator's own HTTP endpoints: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz``.

Separate from the admin API on purpose (the pattern of controller-runtime operators): scraping
and the kubelet's probes need no API keys, and keep working in a process that runs the operator
without the admin API.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


def metrics_app(*, metrics_text: Callable[[], bytes], ready: Callable[[], bool]) -> web.Application:
    """``ready()`` says whether the operator finished starting (its engine exists).

    ``/healthz`` answers as long as the event loop does: a wedged loop is what a restart fixes.
    A standby replica (peering) is ready: it is healthy and waiting to take over.
    """

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics_text(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
