"""The OpenAPI schema's view of every operation: drf-spectacular's, plus the errors any of them can answer,
all in the one shape of transfers.api.errors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

from transfers.api.errors import ErrorSerializer

ERRORS = {
    "400": "invalid input: a field, an option or a query parameter (named in `fields`); a body too large",
    "401": "no credentials, or a wrong or revoked token",
    "403": "your role in the object's team does not allow this",
    "404": "no such object, or one you may not see; a page past the end",
}
WRITE_ERRORS = {
    "409": "the object's state does not allow this now",
    "415": "a body in a content type this operation does not take (or a multipart body without its parts)",
}


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


# --- the job kinds' options (transfers.kinds.options, msgspec structs) as schema components ----------------


def options_component(kind: str) -> str:
    """The component name of a kind's options: `download` → `DownloadOptions`."""
    return "".join(part.title() for part in kind.split("_")) + "Options"


def openapi_30(node: Any) -> Any:
    """msgspec writes JSON Schema 2020-12; OpenAPI 3.0 has `nullable` instead of a {"type": "null"} branch,
    and no empty `required`."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi_30(value) for key, value in node.items() if not (key == "required" and value == [])}
    branches = node.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches:
        rest = [branch for branch in branches if branch != {"type": "null"}]
        del node["anyOf"]
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
    return node


def kind_options_hook(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: a component per job kind's options, which the job doors' bodies name."""
    import msgspec

    from transfers import kinds

    for name in kinds.names():
        _, components = msgspec.json.schema_components([kinds.get(name).Options], ref_template="#/components/schemas/{name}")
        (schema,) = components.values()  # the options are flat structs: one component each
        schema = openapi_30(schema)
        schema["title"] = f"{name} options"
        result.setdefault("components", {}).setdefault("schemas", {})[options_component(name)] = schema
    return result
