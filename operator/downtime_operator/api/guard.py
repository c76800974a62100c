"""The admin routes' gate, in one place and in this order:

1. client address allowlist (403) — cheapest, and nothing else is spent on a stranger;
2. per-address token bucket (429) — bounds what any one client can make the server do,
   including how fast it can guess keys and how many audit rows it can cause;
3. API key -> key name; for a POST or PATCH the attempt is written to the audit log now, before
   anything else can fail, so even a refused call is on record (an audit write that fails
   refuses the call: nothing mutates unaudited);
4. no valid key: 401; 5. per-key token bucket (429); 6. the handler; the outcome is audited.

Probes, metrics and the OpenAPI document are outside the gate: kubelet and Prometheus carry no
API key, and the document describes nothing secret.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_address
from uuid import UUID

from aiohttp import web
from aiohttp.typedefs import Handler

from downtime_operator.api.deps import DEPS, KEY_NAME, ApiDeps
from downtime_operator.api.errors import ApiError, error_response
from downtime_operator.api.ratelimit import retry_after_header
from downtime_operator.api.routes import OPENAPI_PATH, PREFIX
from downtime_operator.api.schemas import UUID_PATTERN
from downtime_operator.services.admin_ports import AuditEntry, StoreUnavailableError

logger = logging.getLogger(__name__)

_AUDITED_VALUE_CHARS = 1000
_AUDITED_NAME_CHARS = 100
_AUDITED_METHODS = frozenset({"POST", "PATCH"})
_OUTCOMES = {
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def _guarded(path: str) -> bool:
    return (path == PREFIX or path.startswith(f"{PREFIX}/")) and path != OPENAPI_PATH


def client_address(
    remote: str | None,
    forwarded_for: str | None,
    trusted: tuple[IPv4Network | IPv6Network, ...],
) -> str | None:
    """The client's address: the peer's, or behind trusted proxies the nearest untrusted hop.

    Only a peer inside ``trusted`` (API_TRUSTED_PROXIES: the ingress) may speak for the client,
    and only its own hops are skipped, from the right, so a client cannot pick its address by
    sending its own X-Forwarded-For. A malformed hop stops the walk at the peer's address.
    """
    if not trusted or not _within(remote, trusted) or not forwarded_for:
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        try:
            ip_address(hop)
        except ValueError:
            return remote
        if not _within(hop, trusted):
            return hop
    return hops[0]


def _within(address: str | None, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        parsed = ip_address(address or "")
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _address_allowed(deps: ApiDeps, remote: str | None) -> bool:
    return not deps.allowed_networks or _within(remote, deps.allowed_networks)


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    return _OUTCOMES.get(status, "error")


def _rate_limited(wait: float, who: str) -> ApiError:
    return ApiError(
        429,
        f"rate limit exceeded for this {who}",
        headers={"Retry-After": retry_after_header(wait)},
    )


async def _audit_entry(
    request: web.Request, deps: ApiDeps, key_name: str | None, remote: str | None
) -> AuditEntry:
    raw_id = request.match_info.get("incident_id", "")
    return AuditEntry(
        key_name=key_name,
        action=request.match_info.route.name or f"{request.method} {request.path[:200]}",
        incident_id=UUID(raw_id) if re.fullmatch(UUID_PATTERN, raw_id) else None,
        parameters=_cut({**request.query, **await _body_fields(request)}),
        remote_addr=remote,
        at=deps.clock.now(),
    )


async def _body_fields(request: web.Request) -> Mapping[str, object]:
    """What the body asked for: a JSON object's fields, else the body as it came. (The handler
    reads it again: aiohttp keeps what was read.)"""
    if not request.body_exists:
        return {}
    raw = await request.read()
    try:
        data = json.loads(raw)
    except ValueError:
        return {"body": raw.decode(errors="replace")}
    if isinstance(data, dict):
        return {str(name): value for name, value in data.items()}
    return {"body": data}


def _cut(parameters: Mapping[str, object]) -> dict[str, str]:
    """As text, names and values cut short: the trail says what was asked, not a copy of it."""
    return {
        name[:_AUDITED_NAME_CHARS]: (value if isinstance(value, str) else json.dumps(value))[
            :_AUDITED_VALUE_CHARS
        ]
        for name, value in parameters.items()
    }


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _guarded(request.path):
        return await handler(request)
    deps = request.app[DEPS]
    remote = client_address(
        request.remote, request.headers.get("X-Forwarded-For"), deps.trusted_proxies
    )
    if not _address_allowed(deps, remote):
        return error_response(ApiError(403, "client address not allowed"))
    wait = deps.address_buckets.take(remote or "")
    if wait is not None:
        return error_response(_rate_limited(wait, "client address"))
    key_name = deps.keys.identify(request.headers.get("Authorization"))
    audit_id: int | None = None
    if request.method in _AUDITED_METHODS:
        # Raises when the audit log cannot be written: the call is then refused (503).
        entry = await _audit_entry(request, deps, key_name, remote)
        audit_id = await deps.audit.record_attempt(entry)
    response = await _authorized(request, handler, deps, key_name)
    if audit_id is not None:
        try:
            await deps.audit.record_outcome(
                audit_id, outcome=_outcome(response.status), status_code=response.status
            )
        except StoreUnavailableError as exc:
            # The attempt is on record (as pending); the action's answer stands.
            logger.error("audit %d: outcome %d not recorded: %s", audit_id, response.status, exc)
    return response


async def _authorized(
    request: web.Request, handler: Handler, deps: ApiDeps, key_name: str | None
) -> web.StreamResponse:
    if key_name is None:
        return error_response(
            ApiError(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
        )
    wait = deps.key_buckets.take(key_name)
    if wait is not None:
        return error_response(_rate_limited(wait, "API key"))
    request[KEY_NAME] = key_name
    return await handler(request)
