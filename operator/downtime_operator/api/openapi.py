"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Generated rather than written by hand so it cannot drift: each route's parameters come from the
model its handler parses the query with, each response from the model it answers with, and the
guard's answers (401, 403, 429, 503) are added to every route the guard covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from downtime_operator.api.routes import Operation
from downtime_operator.api.schemas import UUID_PATTERN, ErrorResponse

_REF = "#/components/schemas/{model}"
_DESCRIPTIONS = {
    200: "Success",
    201: "Created",
    202: "Accepted",
    401: "Missing or wrong API key",
    403: "Client address not allowed",
    404: "No such incident, or no SLA report for that month or monitor",
    409: "The incident is already resolved",
    422: "Invalid parameters, each named with the reason",
    429: "Rate limited; retry after the given seconds",
    503: "A dependency is unavailable; retry later",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1},
    }
}


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        if model.__name__ not in self.schemas:
            schema = model.model_json_schema(ref_template=_REF, mode="serialization")
            self._hoist(schema)
            self.schemas[model.__name__] = schema
        return {"$ref": _REF.format(model=model.__name__)}

    def body(self, model: type[BaseModel]) -> dict[str, Any]:
        """A required JSON request body, described as it is validated."""
        schema = model.model_json_schema(ref_template=_REF, mode="validation")
        self._hoist(schema)
        self.schemas[model.__name__] = schema
        return {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        }

    def query_parameters(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(ref_template=_REF, mode="validation")
        self._hoist(schema)
        parameters = []
        for name, prop in schema.get("properties", {}).items():
            parameter: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in schema.get("required", ()),
                "schema": _without_null(prop),
            }
            if "description" in prop:
                parameter["description"] = prop["description"]
            parameters.append(parameter)
        return parameters

    def _hoist(self, schema: dict[str, Any]) -> None:
        self.schemas.update(schema.pop("$defs", {}))


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value; JSON null has no spelling in a query string."""
    out = {k: v for k, v in prop.items() if k not in ("title", "description")}
    branches = [b for b in out.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        out.update(branches[0])
    elif branches:
        out["anyOf"] = branches
    if out.get("default", 0) is None:
        del out["default"]
    return out


def _content(components: _Components, models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    refs = [components.ref(m) for m in models]
    return {"application/json": {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}}


def _operation(components: _Components, op: Operation) -> dict[str, Any]:
    parameters = []
    if op.has_incident_id:
        parameters.append(
            {
                "name": "incident_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
            }
        )
    parameters.extend(components.query_parameters(op.query))
    responses: dict[str, Any] = {}
    if op.document is not None:
        schema = {"type": "object"} if op.document == "application/json" else {"type": "string"}
        responses["200"] = {"description": "Success", "content": {op.document: {"schema": schema}}}
    answers = dict(op.responses)
    if op.admin:
        for status in (401, 403, 429, 503):
            answers.setdefault(status, (ErrorResponse,))
    for status, models in sorted(answers.items()):
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            # Beside the document, if the route also answers with a model (content negotiation).
            "content": {
                **responses.get(str(status), {}).get("content", {}),
                **_content(components, models),
            },
        }
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        responses[str(status)] = response
    operation: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if op.body is not None:
        operation["requestBody"] = components.body(op.body)
    if not op.admin:
        operation["security"] = []
    return operation


def build_openapi(operations: Iterable[Operation], *, version: str) -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(components, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Downtime Operator admin API",
            "version": version,
            "description": "Incidents recorded by the downtime operator: list, inspect, "
            "resolve, acknowledge, annotate, logs, reports and statistics."
            " Send `Authorization: Bearer <key>`.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
