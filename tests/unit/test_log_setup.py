"""Every command's logging: text by default, one JSON object per line with LOG_JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from downtime_operator.log_setup import setup_logging
from downtime_operator.settings import LoggingSettings, load_settings


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, given back as it was (pytest's own handlers included)."""
    logger = logging.getLogger()
    handlers, level = logger.handlers[:], logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def configured(env: dict[str, str], *, verbose: bool = False) -> io.StringIO:
    """Set up as a command would, from its environment (and ``--verbose``)."""
    settings = load_settings(LoggingSettings, env, {"verbose": True} if verbose else None)
    stream = io.StringIO()
    setup_logging(settings, stream=stream)
    return stream


def test_json_lines_carry_time_level_logger_message_and_exception(root: logging.Logger) -> None:
    stream = configured({"LOG_JSON": "true"})
    log = logging.getLogger("downtime_operator.test")
    log.info("monitoring %s", "http://api/health")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("check crashed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first.keys() == {"time", "level", "logger", "message"}
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "downtime_operator.test",
        "monitoring http://api/health",
    )
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and second["message"] == "check crashed"
    assert (
        second["exception"].startswith("Traceback") and "boom\nsecond line" in second["exception"]
    )


def test_text_is_the_default_and_the_level_applies(root: logging.Logger) -> None:
    stream = configured({"LOG_LEVEL": "warning"})
    log = logging.getLogger("downtime_operator.test")
    log.info("not shown")
    log.warning("shown")
    [line] = stream.getvalue().splitlines()
    assert line.endswith(" WARNING downtime_operator.test: shown")
    assert root.level == logging.WARNING


def test_verbose_is_debug(root: logging.Logger) -> None:
    configured({"LOG_LEVEL": "ERROR"}, verbose=True)
    assert root.level == logging.DEBUG


def test_setting_up_again_replaces_the_handler(root: logging.Logger) -> None:
    configured({})
    stream = configured({"LOG_JSON": "1"})
    logging.getLogger("x").warning("once")
    assert len(root.handlers) == 1
    assert json.loads(stream.getvalue())["message"] == "once"
