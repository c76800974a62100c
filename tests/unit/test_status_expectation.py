"""The expectation rules and the exact failure texts users read in incidents."""

from datetime import timedelta

import pytest

from downtime_operator.domain.expectations import format_size, status_matches, unmet_expectation
from downtime_operator.domain.models import Expectation


@pytest.mark.parametrize(
    ("code", "accepted", "expected"),
    [
        (200, ("2xx",), True),
        (299, ("2xx",), True),
        (301, ("2xx",), False),
        (503, ("2xx",), False),
        (503, ("5xx",), True),
        (503, ("2XX", "5XX"), True),
        (204, ("200", "204"), True),
        (201, ("200", "204"), False),
        (404, ("2xx", "404"), True),
        (200, (), False),
        (200, ("", "abc", "x2x", "20"), False),  # malformed patterns never match
    ],
)
def test_status_matches(code: int, accepted: tuple[str, ...], expected: bool) -> None:
    assert status_matches(code, accepted) is expected


def _unmet(
    expect: Expectation,
    *,
    status_code: int = 200,
    reason: str | None = "OK",
    body: bytes = b'{"status": "ok"}',
    latency: timedelta = timedelta(milliseconds=20),
    body_over_limit: int | None = None,
) -> str | None:
    return unmet_expectation(
        expect,
        status_code=status_code,
        reason=reason,
        body=body,
        latency=latency,
        body_over_limit=body_over_limit,
    )


def test_all_expectations_met() -> None:
    expect = Expectation(body_contains="ok", max_latency=timedelta(milliseconds=500))
    assert _unmet(expect) is None


def test_unexpected_status_names_code_and_reason() -> None:
    assert _unmet(Expectation(), status_code=503, reason="Service Unavailable") == (
        "HTTP 503 Service Unavailable"
    )
    assert _unmet(Expectation(), status_code=599, reason=None) == "HTTP 599"


def test_status_is_reported_before_body_and_latency() -> None:
    expect = Expectation(body_contains="ok", max_latency=timedelta(milliseconds=1))
    error = _unmet(expect, status_code=500, reason="", body=b"", latency=timedelta(seconds=9))
    assert error == "HTTP 500"


def test_body_contains() -> None:
    assert _unmet(Expectation(body_contains="healthy")) == "body did not contain 'healthy'"
    assert _unmet(Expectation(body_contains="é"), body="café".encode()) is None


def test_max_latency() -> None:
    expect = Expectation(max_latency=timedelta(milliseconds=500))
    assert _unmet(expect, latency=timedelta(milliseconds=500)) is None
    assert _unmet(expect, latency=timedelta(milliseconds=1234)) == (
        "latency 1234ms exceeded maxLatency 500ms"
    )
    assert _unmet(Expectation(max_latency=timedelta(seconds=2)), latency=timedelta(seconds=3)) == (
        "latency 3000ms exceeded maxLatency 2s"
    )


def test_oversized_body_after_status_before_body_contains() -> None:
    expect = Expectation(body_contains="nope")
    assert _unmet(expect, body_over_limit=1 << 20) == "oversized body: more than 1 MiB"
    assert _unmet(expect, status_code=502, reason="Bad Gateway", body_over_limit=1 << 20) == (
        "HTTP 502 Bad Gateway"
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [(1 << 30, "1 GiB"), (1 << 20, "1 MiB"), (64 * 1024, "64 KiB"), (1500, "1500 bytes")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
