"""Which replica checks a monitor when the work is split into shards.

The kube-state-metrics pattern: every replica sees every HealthMonitor, and replica ``i`` of
``K`` checks those whose UID hashes to ``i``. A UID never changes, so a monitor stays on its
shard for its whole life (a rename is a new object), and the split needs no coordination.
"""

from __future__ import annotations

from dataclasses import dataclass

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def _fnv1a_32(data: bytes) -> int:
    # FNV-1a, as kube-state-metrics hashes UIDs: fast, stable across processes and versions
    # (Python's hash() is salted per process, so two replicas would disagree).
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def shard_of(uid: str, *, shards: int) -> int:
    """The shard (0-based) that checks the object with this UID."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    return _fnv1a_32(uid.encode()) % shards


@dataclass(frozen=True, kw_only=True)
class Shard:
    """This replica's share: shard ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    def owns(self, uid: str) -> bool:
        return shard_of(uid, shards=self.count) == self.index

    def peering_name(self, base: str) -> str:
        """Each shard has its own peering object: its replicas exclude each other, not the
        other shards."""
        return f"{base}-shard-{self.index}"

    @property
    def label(self) -> str:
        return str(self.index)
