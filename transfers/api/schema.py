"""The OpenAPI schema's view of every operation: drf-spectacular's, plus the errors any of them can answer,
all in the one shape of transfers.api.errors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from transfers.api.errors import ErrorSerializer

ERRORS = {
    "400": "invalid input: a field, an option or a query parameter (named in `fields`)",
    "401": "no credentials, or a wrong or revoked token",
    "403": "your role in the object's team does not allow this",
    "404": "no such object, or one you may not see; a page past the end",
}
WRITE_ERRORS = {"409": "the object's state does not allow this now"}


class ApiSchema(AutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        bodies: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return bodies
        errors = ERRORS | (WRITE_ERRORS if self.method in ("POST", "PUT", "PATCH", "DELETE") else {})
        for code, description in errors.items():
            if code not in bodies:
                bodies[code] = self._get_response_for_code(OpenApiResponse(ErrorSerializer, description=description), code)
        return bodies
