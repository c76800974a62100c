"""Bearer API keys, each with a name, compared in constant time.

Why digests: ``hmac.compare_digest`` is constant-time only for inputs of equal length, and
otherwise reveals the length. Comparing SHA-256 digests makes every comparison 32 bytes against
32 bytes, so a missing key, a wrong key and a key of the right length but wrong content all cost
the same. Every configured key is compared on every request, with no early exit, so which key
matched (or how many are configured before it) cannot be timed either. Several keys at once is
what makes rotation possible: add the new one, move clients, remove the old.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class KeyRing:
    def __init__(self, keys: Mapping[str, str]) -> None:
        """``keys`` maps a key's name (what the audit log records) to the key itself."""
        self.replace(keys)

    def replace(self, keys: Mapping[str, str]) -> None:
        """Serve with these keys from now on (a rotated Secret), in one assignment."""
        self._entries = tuple((name, _digest(key)) for name, key in keys.items())

    @property
    def names(self) -> list[str]:
        return sorted(name for name, _ in self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def identify(self, authorization: str | None) -> str | None:
        """The name of the key in an ``Authorization: Bearer <key>`` header, else None."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            presented = ""
        digest = _digest(presented.strip())
        found: str | None = None
        for name, expected in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = name
        # An empty key never matches, even if one were configured.
        return found if presented.strip() else None
