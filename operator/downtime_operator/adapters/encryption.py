"""Encryption at rest of what was captured from outside: AES-256-GCM under a key ring.

A sealed value is text, so both stores and the log files keep it where the plain value was:

    dtenc1:<key id>:<base64 of the 12-byte random nonce + ciphertext + 16-byte tag>

The key id says which key opens it; the associated data binds it to its place (the incident's
id and the column, ``<incident id>/<column>``), so a ciphertext copied onto another row, or into
another column, fails authentication like a flipped byte does. Values written before keys were
configured are plain, and read as they are.

The ring's first key (or ``LOG_ENCRYPTION_ACTIVE_KEY``) seals; every key of the ring opens. The
ring is replaced in place when its Secret changes, so a key added back is used without a restart.
Keys never leave this object: its repr, its errors and the log show key ids only.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from downtime_operator.services.ports import SealedDataError

PREFIX = "dtenc1:"
NONCE_BYTES = 12

TAMPERED = "the ciphertext failed authentication (tampered, or moved from another row)"


def is_sealed(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(PREFIX)


def key_id_of(value: str) -> str | None:
    """The key id a sealed value names; None for a plain value."""
    if not value.startswith(PREFIX):
        return None
    return value[len(PREFIX) :].split(":", 1)[0]


class LogKeyRing:
    """The keys that seal and open captured data; empty: plain storage, as before encryption."""

    def __init__(self, keys: Mapping[str, bytes] | None = None, *, active: str | None = None):
        self._ring: tuple[dict[str, AESGCM], str | None] = ({}, None)
        self.replace(keys or {}, active=active)

    def replace(self, keys: Mapping[str, bytes], *, active: str | None = None) -> None:
        """Use these keys from now on; ``active`` (default: the first) seals.

        One assignment: a capture sealing in a worker thread meanwhile sees the old ring or the
        new one, never the new keys with the old active key."""
        if active is not None and active not in keys:
            raise ValueError(f"the active key {active!r} is not in the key ring")
        ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._ring = (ciphers, active if active is not None else next(iter(ciphers), None))

    @property
    def ids(self) -> list[str]:
        return list(self._ring[0])

    @property
    def active_id(self) -> str | None:
        """The id of the key that seals; None: values are stored plain."""
        return self._ring[1]

    def __bool__(self) -> bool:
        return self.active_id is not None

    def __repr__(self) -> str:
        return f"LogKeyRing(ids={self.ids!r}, active={self.active_id!r})"

    def seal(self, plain: str, *, context: str) -> str:
        """``plain`` sealed under the active key, bound to ``context``; plain without keys."""
        ciphers, key_id = self._ring
        if key_id is None:
            return plain
        nonce = os.urandom(NONCE_BYTES)
        sealed = ciphers[key_id].encrypt(nonce, plain.encode("utf-8"), _associated(key_id, context))
        return f"{PREFIX}{key_id}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, value: str, *, context: str) -> str:
        """The plain text of a sealed value (a plain value as it is).

        Raises SealedDataError when its key is not in the ring, or when it does not
        authenticate (a flipped byte, or a value moved from another row or column)."""
        key_id = key_id_of(value)
        if key_id is None:
            return value
        cipher = self._ring[0].get(key_id)
        if cipher is None:
            raise SealedDataError(key_id)
        try:
            raw = base64.b64decode(value[len(PREFIX) + len(key_id) + 1 :], validate=True)
            plain = cipher.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(key_id, context)
            )
            return plain.decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError):
            raise SealedDataError(key_id, TAMPERED) from None

    def is_current(self, value: str | None) -> bool:
        """Whether ``value`` is as the ring would write it now: sealed under the active key
        (or plain, without keys); what ``rotate-keys`` leaves alone."""
        if value is None:
            return True
        return key_id_of(value) == self.active_id


def _associated(key_id: str, context: str) -> bytes:
    return f"{key_id}\n{context}".encode()
