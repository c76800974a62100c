"""The admin HTTP API (aiohttp): incidents, logs, analysis, resolve, statistics, probes."""

from downtime_operator.api.app import create_app
from downtime_operator.api.ratelimit import RateLimit
from downtime_operator.api.server import serving

__all__ = ["RateLimit", "create_app", "serving"]
