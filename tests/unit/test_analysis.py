"""Analysis of a fixed log set: counts, exception types and normalised top errors (accept. 7)."""

from downtime_operator.domain.analysis import analyze_logs_for_errors, normalize_error_message


def record(level: str | None, message: str) -> dict[str, str | None]:
    return {"level": level, "logger": "app", "message": message}


LOGS = [
    record("INFO", "GET /health 200 in 3 ms"),
    record(
        "ERROR",
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='10.0.3.17', port=5432)",
    ),
    record(
        "ERROR",
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='10.0.9.4', port=5432)",
    ),
    record(
        "ERROR",
        "Database connection timeout after 5003 ms (request 7f9c2a1e-1b2c-4d5e-8f90-123456789abc)",
    ),
    record(
        "ERROR",
        "Database connection timeout after 4998 ms (request 0a1b2c3d-0000-4000-8000-000000000001)",
    ),
    record(
        "CRITICAL",
        "Database connection timeout after 30000 ms (request 11111111-2222-4333-8444-555555555555)",
    ),
    record("ERROR", "TimeoutError: read from redis at 2026-03-01T12:00:01.5Z, session 0xdeadbeef"),
    record("ERROR", "TimeoutError: read from redis at 2026-03-01T12:07:44Z, session 0x1f2e"),
    record("ERROR", "worker crashed\nTraceback (most recent call last):\nValueError: bad input"),
    record("WARNING", "retrying in 2s"),
    record("WARNING", "retrying in 4s"),
    record(None, "an Error-looking line without a level is not counted as an error"),
]


def test_fixed_log_set_gives_the_expected_analysis() -> None:
    analysis = analyze_logs_for_errors(LOGS).to_dict()
    assert analysis == {
        "total_logs": 12,
        "error_count": 8,
        "warning_count": 2,
        "error_types": {"ConnectionError": 2, "TimeoutError": 2, "ValueError": 1},
        "top_errors": [
            ["Database connection timeout after <n> ms (request <uuid>)", 3],
            [
                "requests.exceptions.ConnectionError: HTTPConnectionPool(host='<ip>', port=<n>)",
                2,
            ],
            ["TimeoutError: read from redis at <ts>, session <hex>", 2],
            ["worker crashed", 1],
        ],
    }


def test_top_errors_are_limited_and_ties_keep_first_seen_order() -> None:
    logs = [record("ERROR", f"failure kind {chr(97 + i)}") for i in range(15)]
    analysis = analyze_logs_for_errors(logs, top=10)
    assert [message for message, _ in analysis.top_errors] == [
        f"failure kind {chr(97 + i)}" for i in range(10)
    ]


def test_normalisation_of_variable_parts() -> None:
    assert normalize_error_message("pool 10.0.0.7:6379 and [fe80::1] at 12:30:45.5") == (
        "pool <ip> and [<ip>] at <ts>"
    )
    assert normalize_error_message("object a3f9c0d12b7e not found") == "object <hex> not found"
    assert normalize_error_message("  lots   of\tspace  ") == "lots of space"
    assert normalize_error_message("x" * 1000) == "x" * 300


def test_nothing_to_analyse() -> None:
    assert analyze_logs_for_errors([]).to_dict() == {
        "total_logs": 0,
        "error_count": 0,
        "warning_count": 0,
        "error_types": {},
        "top_errors": [],
    }
