"""What people write on an incident for its post-mortem: a root cause and signed notes.

The root cause is one text, set and replaced. Notes are a log: each is appended as its own line
carrying when and by whom it was written, so nothing anyone wrote is ever overwritten, and the
notes the system writes itself (a manual resolve's, a deleted monitor's) sit among them in order.
"""

from __future__ import annotations

from datetime import UTC, datetime

ROOT_CAUSE_MAX_CHARS = 2000
NOTE_MAX_CHARS = 4000
"""One note, as for the notes of a manual resolve or acknowledge."""


def signed_note(text: str, *, author: str, at: datetime) -> str:
    """``[2026-11-29T10:00:00Z alice] text``: the note as it is appended to the incident's notes."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"[{stamp} {author}] {text}"
