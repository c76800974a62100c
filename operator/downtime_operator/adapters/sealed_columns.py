"""Which incident columns hold text captured from outside, and how each is sealed at rest.

Both stores keep these columns as text (PostgreSQL's JSONB read and written as text), so one set
of rules serves both, applied to the stored form of a value:

- ``response_body`` (text): the whole text is sealed.
- ``logs_captured`` (JSON): the whole document becomes one sealed JSON string.
- ``log_analysis`` and ``server_info`` (JSON objects): only their captured parts are sealed
  (the top error messages and exception types; the response headers and the certificate's
  names), so the counts and the rest stay readable in the database.

Identity, times, status, severity, the error message and counts are never sealed: filters,
indexes and statistics work on them as before. Each value is bound to ``<incident id>/<column>``
(and ``/<field>``), so moved ciphertext fails like tampered ciphertext.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from downtime_operator.adapters.encryption import PREFIX, LogKeyRing, is_sealed, key_id_of
from downtime_operator.services.ports import SealedDataError

logger = logging.getLogger(__name__)

TEXT_COLUMNS = frozenset({"response_body"})
WHOLE_JSON_COLUMNS = frozenset({"logs_captured"})
SEALED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "log_analysis": ("error_types", "top_errors"),
    "server_info": ("headers", "certificate"),
}
SEALED_COLUMNS = TEXT_COLUMNS | WHOLE_JSON_COLUMNS | frozenset(SEALED_FIELDS)
INCIDENT_SEALED = ("response_body", "server_info")
"""The sealed columns an ``Incident`` carries (the rest are the captured logs)."""
LOGS_SEALED = ("logs_captured", "log_analysis")

_SEALED_JSON_STRING = '"' + PREFIX


def seal_stored(keys: LogKeyRing, row_id: object, column: str, stored: str | None) -> str | None:
    """The stored form of ``column`` sealed for the row (as it is without keys)."""
    if stored is None or not keys:
        return stored
    context = f"{row_id}/{column}"
    if column in TEXT_COLUMNS:
        return keys.seal(stored, context=context)
    if column in WHOLE_JSON_COLUMNS:
        return json.dumps(keys.seal(stored, context=context))
    document = json.loads(stored)
    if not isinstance(document, dict):
        return stored
    for name in SEALED_FIELDS[column]:
        value = document.get(name)
        if value is not None and not is_sealed(value):
            plain = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            document[name] = keys.seal(plain, context=f"{context}/{name}")
    return json.dumps(document, ensure_ascii=False)


def open_stored(keys: LogKeyRing, row_id: object, column: str, stored: str | None) -> str | None:
    """The plain stored form of ``column`` (a plain value as it is); raises SealedDataError."""
    if stored is None:
        return None
    context = f"{row_id}/{column}"
    if column in TEXT_COLUMNS:
        return keys.open(stored, context=context)
    if column in WHOLE_JSON_COLUMNS:
        if not stored.startswith(_SEALED_JSON_STRING):
            return stored
        return keys.open(str(json.loads(stored)), context=context)
    if _SEALED_JSON_STRING not in stored:  # nothing sealed: no need to parse it
        return stored
    document = json.loads(stored)
    if not isinstance(document, dict) or not any(
        is_sealed(document.get(name)) for name in SEALED_FIELDS[column]
    ):
        return stored
    for name in SEALED_FIELDS[column]:
        value = document.get(name)
        if is_sealed(value):
            document[name] = json.loads(keys.open(value, context=f"{context}/{name}"))
    return json.dumps(document, ensure_ascii=False)


def stored_key_ids(column: str, stored: str | None) -> Iterator[str | None]:
    """The key id of each sealed part of a stored value (None for a plain part)."""
    if stored is None:
        return
    if column in TEXT_COLUMNS:
        yield key_id_of(stored)
    elif column in WHOLE_JSON_COLUMNS:
        yield key_id_of(json.loads(stored)) if stored.startswith(_SEALED_JSON_STRING) else None
    else:
        document = json.loads(stored)
        if isinstance(document, dict):
            for name in SEALED_FIELDS[column]:
                value = document.get(name)
                if value is not None:
                    yield key_id_of(value) if isinstance(value, str) else None


def reseal_stored(keys: LogKeyRing, row_id: object, column: str, stored: str | None) -> str | None:
    """The value sealed under the active key, or None when it already is (``rotate-keys``)."""
    if all(key_id == keys.active_id for key_id in stored_key_ids(column, stored)):
        return None
    return seal_stored(keys, row_id, column, open_stored(keys, row_id, column, stored))


def opened(
    keys: LogKeyRing, row: Mapping[str, Any], columns: Iterable[str], *, strict: bool
) -> dict[str, Any]:
    """The row as a dict with ``columns`` opened (those it has).

    ``strict``: a value that cannot be opened raises SealedDataError (the captured logs: never
    served). Otherwise it reads as absent, so the incident itself, its state and everything else
    keep working (the runners, lists, retention); it is logged once per key and problem.
    """
    out = dict(row)
    row_id = out["incident_id"]
    for column in columns:
        if column not in out:
            continue
        try:
            out[column] = open_stored(keys, row_id, column, out[column])
        except SealedDataError as exc:
            if strict:
                raise
            _report_once(exc)
            out[column] = None
    return out


_reported: set[str] = set()


def _report_once(error: SealedDataError) -> None:
    if str(error) not in _reported:
        _reported.add(str(error))
        logger.warning("captured data left out of incidents read: %s", error)
