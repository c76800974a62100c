"""Entries normalised to {timestamp, level, logger, message, labels}, stored and filtered."""

from typing import Any

import pytest

from downtime_operator.domain.log_entries import (
    DATABASE_MAX_LINES,
    LogEntry,
    choose_storage,
    filter_records,
    normalize_entry,
    normalize_level,
)
from downtime_operator.domain.models import LogStorage

TS = 1_772_366_400_000_000_123


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("error", "ERROR"),
        ("ERR", "ERROR"),
        ("warn", "WARNING"),
        ("Warning", "WARNING"),
        ("fatal", "CRITICAL"),
        ("info", "INFO"),
        ("notice", "INFO"),
        ("debug", "DEBUG"),
        ("50", "ERROR"),
        ("unknown", None),
        ("", None),
        ("verbose", "VERBOSE"),
    ],
)
def test_levels_have_one_spelling(raw: str, level: str | None) -> None:
    assert normalize_level(raw) == level


def test_level_and_logger_from_stream_labels_first() -> None:
    entry = normalize_entry(
        timestamp_ns=TS,
        line='{"level": "info", "logger": "line.logger", "message": "hello"}',
        stream_labels={"app": "api", "level": "error", "logger": "label.logger"},
    )
    assert (entry.level, entry.logger, entry.message) == ("ERROR", "label.logger", "hello")
    assert entry.labels == {"app": "api", "level": "error", "logger": "label.logger"}


def test_structured_metadata_before_the_line_and_detected_level_last() -> None:
    entry = normalize_entry(
        timestamp_ns=TS,
        line="plain text line",
        stream_labels={"app": "api"},
        metadata={"detected_level": "warn", "trace_id": "abc"},
    )
    assert (entry.level, entry.message) == ("WARNING", "plain text line")
    assert entry.labels == {"app": "api", "detected_level": "warn", "trace_id": "abc"}
    explicit = normalize_entry(
        timestamp_ns=TS,
        line="level=debug msg=x",
        stream_labels={"app": "api", "detected_level": "info"},
        metadata={"level": "error"},
    )
    assert explicit.level == "ERROR"  # metadata `level` beats the line and the guess
    from_line = normalize_entry(
        timestamp_ns=TS, line="level=debug msg=x", stream_labels={"detected_level": "info"}
    )
    assert from_line.level == "DEBUG"  # the line's own field beats Loki's guess


def test_json_line_fields_with_the_exception_appended() -> None:
    entry = normalize_entry(
        timestamp_ns=TS,
        line=(
            '{"levelname": "ERROR", "logger_name": "app.db", "message": "query failed",'
            ' "exc_info": "Traceback (most recent call last):\\nConnectionError: refused"}'
        ),
        stream_labels={"app": "api"},
    )
    assert (entry.level, entry.logger) == ("ERROR", "app.db")
    assert entry.message == (
        "query failed\nTraceback (most recent call last):\nConnectionError: refused"
    )
    numeric = normalize_entry(
        timestamp_ns=TS, line='{"level": 40, "msg": "slow"}', stream_labels={}
    )
    assert (numeric.level, numeric.message) == ("WARNING", "slow")


def test_logfmt_line_fields() -> None:
    entry = normalize_entry(
        timestamp_ns=TS,
        line=(
            "ts=2026-03-01T12:00:00Z level=error logger=app.http"
            ' msg="upstream failed" err="dial tcp: i/o timeout"'
        ),
        stream_labels={},
    )
    assert (entry.level, entry.logger) == ("ERROR", "app.http")
    assert entry.message == "upstream failed: dial tcp: i/o timeout"


def test_plain_and_broken_lines_are_kept_whole() -> None:
    for line in ("GET /health 503", '{"not": "closed"', "[1, 2]"):
        entry = normalize_entry(timestamp_ns=TS, line=line, stream_labels={})
        assert entry.message == line
        assert entry.level is None


def test_record_shape() -> None:
    entry = LogEntry(
        timestamp_ns=TS, message="m", level="INFO", logger="app", labels={"app": "api"}
    )
    assert entry.to_record() == {
        "timestamp": "2026-03-01T12:00:00.000000123Z",
        "level": "INFO",
        "logger": "app",
        "message": "m",
        "labels": {"app": "api"},
    }


def test_storage_auto_switches_to_a_file_above_the_database_limit() -> None:
    assert choose_storage(LogStorage.AUTO, DATABASE_MAX_LINES) is LogStorage.DATABASE
    assert choose_storage(LogStorage.AUTO, DATABASE_MAX_LINES + 1) is LogStorage.FILE
    assert choose_storage(LogStorage.FILE, 1) is LogStorage.FILE
    assert choose_storage(LogStorage.DATABASE, 10_000) is LogStorage.DATABASE


RECORDS: list[dict[str, Any]] = [
    {"level": "ERROR", "logger": "app.db", "message": "Connection REFUSED by db"},
    {"level": "WARNING", "logger": "app", "message": "slow query"},
    {"level": "INFO", "logger": "apple", "message": "refused nothing"},
    {"level": None, "logger": None, "message": "plain line"},
]


def test_filters_level_logger_and_search() -> None:
    assert filter_records(RECORDS, level="error") == [RECORDS[0]]
    assert filter_records(RECORDS, level="WARN") == [RECORDS[1]]
    assert filter_records(RECORDS, logger_name="app") == RECORDS[:2]  # app and app.db, not apple
    assert filter_records(RECORDS, logger_name="app.db") == [RECORDS[0]]
    assert filter_records(RECORDS, search="refused") == [RECORDS[0], RECORDS[2]]
    assert filter_records(RECORDS, search="REFUSED", level="ERROR") == [RECORDS[0]]
    assert filter_records(RECORDS) == RECORDS
    assert filter_records(RECORDS, search="'; DROP TABLE downtime_incidents; --") == []
