"""The one logging set-up of every command: text lines, or one JSON object per line (LOG_JSON).

JSON lines are for log collectors (Loki, Cloud Logging...): a multi-line traceback stays inside
its record instead of becoming lines of its own.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TextIO

from downtime_operator.settings import LoggingSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"[, "exception"]}``; time in UTC, ISO 8601."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> None:
    """Configure the root logger (replacing any handler); ``stream`` defaults to stderr."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if settings.as_json else logging.Formatter(TEXT_FORMAT))
    level = logging.DEBUG if settings.verbose else settings.level
    logging.basicConfig(level=level, handlers=[handler], force=True)
