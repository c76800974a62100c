"""Log entries as the incident keeps them: {timestamp, level, logger, message, labels}.

Applications log in many shapes (plain text, JSON, logfmt; level as a Loki label, as structured
metadata, or inside the line). Normalising once, at capture, lets every later question (filters,
analysis, the admin API) rely on one shape and one spelling of each level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from downtime_operator.domain.models import LogStorage
from downtime_operator.domain.window import format_unix_ns

DATABASE_MAX_LINES = 1000
"""``storage: auto`` keeps up to this many lines in the row (JSONB), more in a file."""

_LEVELS = {
    "critical": "CRITICAL",
    "crit": "CRITICAL",
    "fatal": "CRITICAL",
    "panic": "CRITICAL",
    "emerg": "CRITICAL",
    "emergency": "CRITICAL",
    "alert": "CRITICAL",
    "error": "ERROR",
    "err": "ERROR",
    "eror": "ERROR",
    "warning": "WARNING",
    "warn": "WARNING",
    "info": "INFO",
    "information": "INFO",
    "informational": "INFO",
    "notice": "INFO",
    "debug": "DEBUG",
    "dbug": "DEBUG",
    "trace": "TRACE",
    # pino / bunyan numeric levels
    "10": "TRACE",
    "20": "DEBUG",
    "30": "INFO",
    "40": "WARNING",
    "50": "ERROR",
    "60": "CRITICAL",
}
_UNKNOWN_LEVELS = frozenset({"", "unknown"})  # Loki's detected_level when it could not tell

# Field names, most specific first. ``detected_level`` is Loki's guess, so it comes last.
_LEVEL_KEYS = ("level", "severity", "lvl", "levelname", "log_level", "loglevel", "log.level")
_DETECTED_LEVEL = "detected_level"
_LOGGER_KEYS = ("logger", "logger_name", "loggerName", "log.logger")
_MESSAGE_KEYS = ("message", "msg", "event")
_ERROR_KEYS = ("exc_info", "exception", "stack_trace", "stacktrace", "error", "err")

_LOGFMT_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def normalize_level(value: str | None) -> str | None:
    """One spelling per level (``warn`` -> ``WARNING``); unknown words are kept, upper-cased."""
    if value is None:
        return None
    key = value.strip().lower()
    if key in _UNKNOWN_LEVELS:
        return None
    return _LEVELS.get(key, key.upper())


@dataclass(frozen=True, kw_only=True, slots=True)
class LogEntry:
    timestamp_ns: int
    message: str
    level: str | None = None
    logger: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The stored and served shape (the seed's): timestamp as RFC 3339 with nanoseconds."""
        return {
            "timestamp": format_unix_ns(self.timestamp_ns),
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True, kw_only=True)
class LogBatch:
    """What a log source returned for one window."""

    entries: list[LogEntry]
    """The earliest ``max_lines`` distinct entries, in time order."""
    available: int | None
    """Distinct entries the source had in the window; None when not counted to the end."""
    truncated: bool
    """More entries existed than were kept."""


def _line_fields(line: str) -> Mapping[str, Any]:
    """JSON object or logfmt fields of a line (empty for plain text)."""
    text = line.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    if "=" not in text:
        return {}
    return {
        key: value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        for key, value in _LOGFMT_PAIR.findall(text)
    }


def _first(keys: Iterable[str], *sources: Mapping[str, Any]) -> str | None:
    for key in keys:
        for source in sources:
            value = source.get(key)
            if value is None or value == "":
                continue
            return value if isinstance(value, str) else json.dumps(value)
    return None


def normalize_entry(
    *,
    timestamp_ns: int,
    line: str,
    stream_labels: Mapping[str, str],
    metadata: Mapping[str, str] | None = None,
) -> LogEntry:
    """Build an entry from one Loki value.

    Level and logger come from the stream labels, then structured metadata, then the line's own
    JSON/logfmt fields, then Loki's ``detected_level``. The message is the line's ``message``
    (``msg``, ``event``) field when it has one, with an error/exception field appended, since
    that is where the failure is named; otherwise the whole line.
    """
    meta = metadata or {}
    fields = _line_fields(line)
    level = _first(_LEVEL_KEYS, stream_labels, meta, fields) or _first(
        (_DETECTED_LEVEL,), meta, stream_labels
    )
    message = _first(_MESSAGE_KEYS, fields)
    if message is None:
        message = line
    else:
        error = _first(_ERROR_KEYS, fields)
        if error and error not in message:
            message = f"{message}\n{error}" if "\n" in error else f"{message}: {error}"
    labels = {**stream_labels, **meta} if meta else dict(stream_labels)
    return LogEntry(
        timestamp_ns=timestamp_ns,
        message=message,
        level=normalize_level(level),
        logger=_first(_LOGGER_KEYS, stream_labels, meta, fields),
        labels=labels,
    )


def choose_storage(storage: LogStorage, lines: int) -> LogStorage:
    """Where a capture of ``lines`` lines goes: the row (JSONB) or a file."""
    if storage is LogStorage.AUTO:
        return LogStorage.DATABASE if lines <= DATABASE_MAX_LINES else LogStorage.FILE
    return storage


def filter_records(
    records: Iterable[Mapping[str, Any]],
    *,
    level: str | None = None,
    logger_name: str | None = None,
    search: str | None = None,
) -> list[dict[str, Any]]:
    """Stored entries matching every given filter, in stored (time) order.

    ``level`` is compared after normalising (``warn`` finds WARNING); ``logger_name`` matches that
    logger and its children (``app`` finds ``app`` and ``app.db``, not ``apple``); ``search`` is a
    case-insensitive substring of the message. One definition serves both storages (JSONB and
    file), so the two can never disagree.
    """
    wanted_level = normalize_level(level) if level else None
    child_prefix = f"{logger_name}." if logger_name else None
    needle = search.casefold() if search else None
    found: list[dict[str, Any]] = []
    for record in records:
        if wanted_level is not None and record.get("level") != wanted_level:
            continue
        if logger_name:
            name = record.get("logger") or ""
            if name != logger_name and not (child_prefix and name.startswith(child_prefix)):
                continue
        if needle is not None and needle not in str(record.get("message", "")).casefold():
            continue
        found.append(dict(record))
    return found
