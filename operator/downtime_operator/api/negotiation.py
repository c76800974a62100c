"""Which of two media types an ``Accept`` header prefers (RFC 9110 §12.5.1, what we need of it)."""

from __future__ import annotations


def prefers(accept: str | None, *, offered: str, default: str) -> bool:
    """Whether ``accept`` ranks ``offered`` above ``default``; on a tie, or without a header,
    ``default`` wins. Each type is weighed by the most specific range that matches it."""
    return _quality(accept or "", offered) > _quality(accept or "", default)


def _quality(accept: str, media_type: str) -> float:
    major = media_type.split("/", 1)[0]
    ranges = {media_type: 3, f"{major}/*": 2, "*/*": 1}
    best_specificity, best_q = 0, 0.0
    for part in accept.split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        specificity = ranges.get(name.lower(), 0)
        if specificity > best_specificity:
            best_specificity, best_q = specificity, _q(params)
    return best_q


def _q(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0
