"""Go-style duration strings (``90s``, ``1m30s``, ``500ms``) as used by the CRDs.

The API server validates the same syntax with a pattern and CEL's ``duration()``; this parser
must accept exactly what those accept, so that a resource admitted by Kubernetes never fails here.
"""

import re
from datetime import timedelta

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a duration string; raise ValueError naming the bad text."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. '10s', '1m30s', '500ms'")
    seconds = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest readable form, used in messages such as 'timeout after 10s'."""
    total = delta.total_seconds()
    if total < 1:
        return f"{round(total * 1000)}ms"
    if total == int(total):
        return f"{int(total)}s"
    return f"{total:g}s"
