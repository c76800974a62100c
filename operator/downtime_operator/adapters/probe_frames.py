"""The pipe protocol between the operator and its check worker: length-prefixed pickle frames.

Both ends are this package in processes of the same installation, talking over an anonymous
pipe nobody else holds, so pickle is safe here and keeps the dataclasses as they are. Each
frame is a list: everything one side had to send during one event-loop turn.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import IO, Any, Generic, TypeVar

from downtime_operator.domain.models import CheckResult, MonitorSpec

Request = tuple[int, MonitorSpec, bool]
"""A check: its id, the spec, and whether a failure should describe the server."""
Reply = tuple[int, CheckResult]

T = TypeVar("T")
_HEADER = 4


async def read_frame(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next frame's items; None at a clean end of the stream."""
    try:
        header = await reader.readexactly(_HEADER)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    items: list[Any] = pickle.loads(await reader.readexactly(int.from_bytes(header, "big")))
    return items


class FrameWriter(Generic[T]):
    """Sends items; those sent during one loop turn leave as one frame."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._items: list[T] = []

    @classmethod
    async def to_pipe(cls, pipe: IO[bytes]) -> FrameWriter[T]:
        transport, _ = await asyncio.get_running_loop().connect_write_pipe(asyncio.Protocol, pipe)
        return cls(transport)

    def send(self, item: T) -> None:
        if not self._items:
            asyncio.get_running_loop().call_soon(self._flush)
        self._items.append(item)

    def _flush(self) -> None:
        if not self._items or self._transport.is_closing():
            self._items.clear()
            return
        data = pickle.dumps(self._items, protocol=pickle.HIGHEST_PROTOCOL)
        self._items = []
        self._transport.write(len(data).to_bytes(_HEADER, "big") + data)

    async def close(self) -> None:
        self._flush()
        self._transport.close()
