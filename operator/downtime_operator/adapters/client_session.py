"""The lifecycle shared by the adapters that own one aiohttp session (the probe, Loki)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import aiohttp


class SessionOwner:
    """``start()``/``close()`` or ``async with``; subclasses say how their session is built.

    The session must be created inside the event loop that uses it, hence ``start()`` rather
    than the constructor.
    """

    _session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        raise NotImplementedError

    async def start(self) -> None:
        if self._session is None:
            self._session = self._new_session()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
