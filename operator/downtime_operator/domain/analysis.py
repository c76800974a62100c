"""What the captured logs say about an outage: counts, exception types, most frequent errors.

The most frequent errors are counted after normalising the parts that differ between two
occurrences of the same failure (numbers, UUIDs, hex ids, IP addresses, timestamps), so that
"timeout after 5003 ms to 10.0.0.7" and "timeout after 4998 ms to 10.0.0.9" count as one failure
mode instead of two rare ones.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
WARNING_LEVEL = "WARNING"
TOP_ERRORS = 10
"""How many of the most frequent errors the stored analysis keeps (the CR shows 3)."""
MESSAGE_MAX_CHARS = 300

# Exception class names: ConnectionError, requests.exceptions.ReadTimeout, NullPointerException.
# A bare "Error" or "Timeout" is a word, not a type, so a prefix before the suffix is required.
_EXCEPTION_TYPE = re.compile(
    r"\b(?:[A-Za-z_]\w*\.)*([A-Z]\w*?(?:Error|Exception|Timeout|Refused|Fault|Failure|Exit))\b"
)

# One pass over the message; the first alternative that matches at a position wins, so the
# specific shapes come before the general ones (a timestamp before its numbers). The leading
# lookahead skips, cheaply, the positions where no alternative can start (it halves the time).
_VARIABLE_PARTS = re.compile(
    "(?=[0-9a-fA-F:])(?:"
    + "|".join(
        (
            r"(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
            r"|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b)",
            r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
            r"[0-9a-fA-F]{12}\b)",
            # IPv4 with an optional port; IPv6 full or "::"-compressed, only tried where two
            # colons follow (the guard keeps its backtracking off ordinary text).
            r"(?P<ip>\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"
            r"|(?<![\w:])(?=[0-9a-fA-F:]*:[0-9a-fA-F]*:)"
            r"(?:(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}"
            r"|(?:[0-9a-fA-F]{1,4}:){0,6}[0-9a-fA-F]{0,4}::(?:[0-9a-fA-F]{1,4}:){0,6}[0-9a-fA-F]{0,4})"
            r"(?![\w:]))",
            r"(?P<hex>\b0[xX][0-9a-fA-F]+\b"
            r"|\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b)",
            r"(?P<n>\d+(?:\.\d+)*)",
        )
    )
    + ")"
)


def normalize_error_message(message: str) -> str:
    """The failure mode a message names: first line, variable parts replaced by placeholders."""
    first_line = message.strip().split("\n", 1)[0]
    replaced = _VARIABLE_PARTS.sub(lambda m: f"<{m.lastgroup}>", first_line)
    return " ".join(replaced.split())[:MESSAGE_MAX_CHARS]


@dataclass(frozen=True, kw_only=True)
class LogAnalysis:
    total_logs: int
    error_count: int
    warning_count: int
    error_types: dict[str, int]
    top_errors: list[tuple[str, int]]

    def to_dict(self) -> dict[str, Any]:
        """The seed's analysis shape (``top_errors`` as ``[message, count]`` pairs)."""
        return {
            "total_logs": self.total_logs,
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "error_types": dict(self.error_types),
            "top_errors": [[message, count] for message, count in self.top_errors],
        }


def analyze_logs_for_errors(
    records: Iterable[Mapping[str, Any]], *, top: int = TOP_ERRORS
) -> LogAnalysis:
    """Analyse stored entries ({level, message, ...}); errors are ERROR and CRITICAL lines.

    An exception type counts once per error line that names it. Ties among the most frequent
    errors keep the order of first occurrence, so the result is deterministic.
    """
    total = 0
    warnings = 0
    errors = 0
    types: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    normalized: dict[str, str] = {}  # an outage repeats its messages: normalise each once
    for record in records:
        total += 1
        level = record.get("level")
        if level == WARNING_LEVEL:
            warnings += 1
        if level not in ERROR_LEVELS:
            continue
        errors += 1
        message = str(record.get("message") or "")
        for name in dict.fromkeys(_EXCEPTION_TYPE.findall(message)):
            types[name] += 1
        key = normalized.get(message)
        if key is None:
            key = normalized[message] = normalize_error_message(message)
        messages[key] += 1
    return LogAnalysis(
        total_logs=total,
        error_count=errors,
        warning_count=warnings,
        error_types=dict(types.most_common()),
        top_errors=messages.most_common(top),
    )
