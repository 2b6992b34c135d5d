"""One error shape for the whole API: every 4xx body is

    {"error": {"code": "not_found", "message": "No TransferJob matches the given query.", "fields": {...}}}

`code` is a short word a script can test (DRF's codes: invalid, parse_error, not_authenticated,
authentication_failed, permission_denied, not_found, method_not_allowed, unsupported_media_type,
throttled; ours: conflict, too_large, locked_out); `message` is for a person; `fields` (validation
errors only) maps each refused field or query parameter to its messages (`non_field_errors` for the rest).

DRF views get it from `exception_handler` (REST_FRAMEWORK's EXCEPTION_HANDLER); views raise `Invalid` or
`Conflict` rather than build a body. The plain-Django parts of /api/ (farm events, an unknown URL, a login
lockout) build it with `error_body`.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found as html_page_not_found
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ErrorDetail(TypedDict):
    code: str
    message: str
    fields: NotRequired[dict[str, Any]]


class ErrorBody(TypedDict):
    error: ErrorDetail


class Invalid(exceptions.APIException):  # type: ignore[misc]
    """A request the view cannot act on, said in one message (a refused option, a manifest not ready)."""

    status_code = 400
    default_code = "invalid"
    default_detail = "this request cannot be done as sent"


class Conflict(exceptions.APIException):  # type: ignore[misc]
    """The object's state does not allow it now (pausing a finished job)."""

    status_code = 409
    default_code = "conflict"
    default_detail = "the object's state does not allow this now"


class TooLarge(exceptions.APIException):  # type: ignore[misc]
    """A body past Django's bounds (DATA_UPLOAD_MAX_MEMORY_SIZE, _NUMBER_FIELDS, _NUMBER_FILES)."""

    status_code = 400
    default_code = "too_large"
    default_detail = "the request's body is too large"


class FarmUnavailable(exceptions.APIException):  # type: ignore[misc]
    """The farm behind the account did not answer as it should (unreachable, refused the credentials)."""

    status_code = 502
    default_code = "farm_unavailable"
    default_detail = "the farm did not answer"


_TOO_LARGE: dict[type[Exception], str] = {
    RequestDataTooBig: "the request's body is too large",
    TooManyFieldsSent: "the request's body has too many fields",
    TooManyFilesSent: "the request's body has too many files",
}


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> ErrorBody:
    detail: ErrorDetail = {"code": code, "message": message}
    if fields is not None:
        detail["fields"] = fields
    return {"error": detail}


def _plain(value: Any) -> Any:
    """DRF's ErrorDetail strings (and nested lists and dicts of them) as plain JSON."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value)


def _first(value: Any) -> str:
    while isinstance(value, list | dict) and value:
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return str(value) if value else ""


def _validation(exc: exceptions.ValidationError) -> ErrorBody:
    detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    fields = _plain(detail)
    names = [name for name in fields if name != "non_field_errors"]
    if names:
        message = f"invalid {', '.join(names)}: {_first(fields[names[0]])}" if len(names) == 1 else f"invalid: {', '.join(names)}"
    else:
        message = _first(fields) or "invalid input"
    return error_body("invalid", message, fields)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (Http404 and Django's PermissionDenied as NotFound and PermissionDenied), its body in
    our shape; a body past Django's bounds a 400 (Django's own answer, an HTML page, otherwise); None (a 500)
    for anything else."""
    if type(exc) in _TOO_LARGE:
        exc = TooLarge(_TOO_LARGE[type(exc)])
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation(exc)
    else:
        codes = exc.get_codes()
        response.data = error_body(codes if isinstance(codes, str) else exc.default_code, _first(_plain(exc.detail)))
    return response


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: an unknown URL under /api/ answers in the API's shape; elsewhere the 404 page."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", f"no API endpoint at {request.path}"), status=404)
    return html_page_not_found(request, exception)


class ErrorDetailSerializer(serializers.Serializer):  # type: ignore[misc]
    code = serializers.CharField(help_text="a short word a script can test: invalid, not_found, conflict, …")
    message = serializers.CharField()
    fields = serializers.DictField(required=False, help_text="validation errors only: messages by field or parameter")


class ErrorSerializer(serializers.Serializer):  # type: ignore[misc]
    """The schema of an error body (see the module's docstring)."""

    error = ErrorDetailSerializer()
