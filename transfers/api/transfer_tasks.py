"""The SDK's Raysync transfer-task calls as REST (transfers.transfer_tasks), with the SDK's JSON keys:

    POST /api/transfer-tasks/        start_transfer: `account` plus the SDK's parameter names; 201
                                     {"code": 0, "message", "task-id"}
    GET  /api/transfer-tasks/        get_task_list_status: {"code", "message", "task-list": [...]},
                                     ?task_group=all|active|ended, the latest 500
    GET  /api/transfer-tasks/<id>/   get_task_status: the same shape, one row

A refused start or an unknown task is an HTTP error in the API's one shape (transfers.api.errors): the
function's code 400 is a 400, 404 a 404 (another team's task or account too), 405 (no-permission) a 403.
`wait` is refused here (a request does not hold a server thread for a transfer): poll GET <id>/ instead.
"""

from __future__ import annotations

from typing import Any

import msgspec
from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from transfers import transfer_tasks
from transfers.api.errors import Invalid
from transfers.api.schema import openapi_30

# The function's refusal codes as the API's errors (raised: the exception handler gives them their shape).
_ERRORS: dict[int, type[exceptions.APIException]] = {
    transfer_tasks.INVALID: Invalid,
    transfer_tasks.NOT_FOUND: exceptions.NotFound,
    transfer_tasks.NO_PERMISSION: exceptions.PermissionDenied,
}


def _raise_for(code: int, message: str) -> None:
    if code != transfer_tasks.RESPONSE["successful"]:
        raise _ERRORS.get(code, Invalid)(message)


def _start_schema() -> dict[str, Any]:
    """The body: StartArgs (the SDK's names, drawn from the msgspec struct) plus `account`."""
    _, components = msgspec.json.schema_components([transfer_tasks.StartArgs], ref_template="#/components/schemas/{name}")
    (raw,) = components.values()
    schema: dict[str, Any] = openapi_30(raw)
    schema["title"] = "start_transfer"
    schema["properties"] = {"account": {"type": "integer", "description": "a farm account's id"}, **schema["properties"]}
    schema["properties"]["wait"]["description"] = "false only here: poll GET /api/transfer-tasks/{id}/"
    schema["required"] = ["account", *schema.get("required", [])]
    return schema


_STATES = sorted({state.state for state in transfer_tasks.STATES.values()})
_TASK = {
    "type": "object",
    "properties": {
        "task-id": {"type": "integer"},
        "task-type": {"type": "string", "enum": sorted(set(transfer_tasks.TASK_TYPES.values()))},
        "task-state": {"type": "string", "enum": _STATES},
        "kind": {"type": "string", "description": "rvweb's job kind"},
        "percent": {"type": "integer"},
        "files-done": {"type": "integer"},
        "files-total": {"type": "integer"},
        "bytes-done": {"type": "integer"},
        "bytes-total": {"type": "integer"},
        "error": {"type": "string"},
    },
    "required": [
        "task-id",
        "task-type",
        "task-state",
        "kind",
        "percent",
        "files-done",
        "files-total",
        "bytes-done",
        "bytes-total",
        "error",
    ],
}
_LIST = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "description": "0: success"},
        "message": {"type": "string"},
        "task-list": {"type": "array", "items": _TASK},
    },
    "required": ["code", "message", "task-list"],
}
_STARTED = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "description": "0: started"},
        "message": {"type": "string"},
        "task-id": {"type": "integer", "description": "the transfer task's (the job's) id"},
    },
    "required": ["code", "message", "task-id"],
}


class TransferTaskList(APIView):
    """The user's transfer tasks (their teams' jobs), and starting one."""

    @extend_schema(
        operation_id="transfer_tasks_list",
        parameters=[OpenApiParameter("task_group", str, enum=list(transfer_tasks.TASK_GROUPS), description="default all")],
        responses={200: _LIST},
    )
    def get(self, request: Request) -> Response:
        """get_task_list_status: the latest 500 tasks you may see, in the SDK's raw shape."""
        answer = transfer_tasks.get_task_list_status(user=request.user, task_group=request.query_params.get("task_group", "all"))
        if answer["code"] == transfer_tasks.INVALID:
            raise exceptions.ValidationError({"task_group": [answer["message"]]})
        return Response(answer)

    @extend_schema(
        operation_id="transfer_tasks_start",
        request={"application/json": _start_schema()},
        responses={201: _STARTED},
    )
    def post(self, request: Request) -> Response:
        """start_transfer: a new job (never a restart of an older one); 201 with its id as `task-id`."""
        body: Any = request.data
        if isinstance(body, QueryDict):  # a form post: one value per name
            body = body.dict()
        if isinstance(body, dict) and body.get("wait") not in (None, False, "false", "False", "0", 0):
            raise exceptions.ValidationError({"wait": ["false only here: poll GET /api/transfer-tasks/<id>/ for the end"]})
        result = transfer_tasks.start_transfer_from(user=request.user, body=body, request=request._request)
        _raise_for(result.code, result.message)
        return Response(result.as_sdk(), status=status.HTTP_201_CREATED)


class TransferTaskDetail(APIView):
    @extend_schema(operation_id="transfer_tasks_retrieve", responses={200: _LIST})
    def get(self, request: Request, id: int) -> Response:  # `id`: the path parameter schemathesis and the docs name
        """get_task_status: one task in the SDK's raw shape; another team's task is a 404, as a missing one."""
        answer = transfer_tasks.get_task_status(user=request.user, task_id=id)
        _raise_for(answer["code"], answer["message"])
        return Response(answer)
