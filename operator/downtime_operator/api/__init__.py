"""The admin HTTP API (aiohttp): incidents, logs, analysis, resolve, statistics, probes."""

from downtime_operator.api.app import create_app
from downtime_operator.api.auth import KeyRing
from downtime_operator.api.ratelimit import RateLimit
from downtime_operator.api.server import serving

__all__ = ["KeyRing", "RateLimit", "create_app", "serving"]
