"""Every failure as the same JSON envelope: ``{"status": "error", "message": ...}``.

Handlers raise ``ApiError``; the ``error_envelope`` middleware turns it, aiohttp's own HTTP errors
(unknown path, wrong method) and anything unexpected into that envelope, so a client never has to
parse an HTML error page, and an unexpected failure says nothing about the internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from uuid import UUID

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from downtime_operator.api.schemas import (
    ErrorResponse,
    FieldError,
    ValidationErrorResponse,
)
from downtime_operator.services.admin_ports import StoreUnavailableError
from downtime_operator.services.ports import SealedDataError

logger = logging.getLogger(__name__)

UNAVAILABLE_RETRY_AFTER = "5"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = tuple(errors)
        self.headers = dict(headers or {})


def invalid(errors: Sequence[FieldError]) -> ApiError:
    return ApiError(422, "invalid parameters", errors=errors)


def not_found(incident_id: UUID) -> ApiError:
    return ApiError(404, f"Incident {incident_id} not found")


def json_response(
    model: BaseModel, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=model.model_dump_json().encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: ApiError) -> web.Response:
    model: BaseModel
    if error.errors:
        model = ValidationErrorResponse(message=error.message, errors=list(error.errors))
    else:
        model = ErrorResponse(message=error.message)
    return json_response(model, status=error.status, headers=error.headers)


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except StoreUnavailableError as exc:
        logger.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(
            ApiError(
                503,
                "the incident database is unavailable; retry later",
                headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
            )
        )
    except SealedDataError as exc:
        # Captured data whose key is missing, or that failed authentication: never served,
        # and only this answer fails; the message names the key id, never a key.
        logger.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(
            ApiError(
                503,
                "the incident's captured data cannot be decrypted",
                errors=[FieldError(field="logs", message=str(exc))],
            )
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Keep what the client needs from aiohttp's error (Allow on 405), not its text body.
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(ApiError(exc.status, exc.reason, headers=headers))
    except Exception:
        # A bug here (a response that does not fit its own schema, say), never the client's
        # fault: logged in full, answered without internals.
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(ApiError(500, "internal error"))
