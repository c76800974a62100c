"""A client of the admin API, for commands that act through a running operator or monitor
(``downtime-operator maintenance start``): the same route, key, audit and limits as any
client, so that the command works the same with and without Kubernetes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=30)


class AdminApiError(Exception):
    """The API refused (its status and message), or could not be reached."""


async def post_json(*, url: str, key: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST ``body`` to ``url + path`` with the key; the JSON answer of a 2xx."""
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.post(f"{url.rstrip('/')}{path}", json=dict(body), headers=headers) as answer,
        ):
            found: dict[str, Any] = await answer.json(content_type=None)
            if answer.status >= 300:
                errors = "; ".join(
                    f"{e.get('field')}: {e.get('message')}" for e in found.get("errors", ())
                )
                raise AdminApiError(
                    f"HTTP {answer.status}: {found.get('message', '')}"
                    + (f" ({errors})" if errors else "")
                )
            return found
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise AdminApiError(f"{url}: {type(exc).__name__}: {exc}") from exc
