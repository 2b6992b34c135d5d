"""The farm events API: a render manager (a studio's own, or `simulate_render`) tells a local farm account
what its tasks do. `POST /api/farm/<account_id>/events/` with one event (a JSON object) or a list of
them, and `Authorization: Bearer <the account's events token>`; the events are in transfers.farm_events.

Answers: 200 with what each event did; 401 without a token, or with one that is not this account's current
token (wrong, revoked, another account's: one answer for all, which also hides whether the account
exists); 400 bad JSON or a refused event; 404 an unknown task; 409 a task id already taken; 413 a body or
a list too large. A list is applied all or nothing. Never a 500 for what a client sends.

And, with the API's usual authentication: `POST /api/farm/<account_id>/token/` (a lead of the account's
team): a new events token, in this answer only; `GET /api/farm/<account_id>/tasks/` (whoever sees the
account): its tasks with their status and frames done / expected; `GET /api/farm/<account_id>/tasks/<task_id>/`:
one task with its output files (path, size, finished), as the account's farm connector reports them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from transfers import selectors
from transfers.api.errors import FarmUnavailable, Invalid, error_body
from transfers.api.serializers import FarmTaskDetailSerializer, FarmTaskListSerializer, FarmTokenSerializer
from transfers.farm import FarmConnector, FarmError, UnknownTask, UnsupportedAccount, connector_for, task_rows
from transfers.farm_events import (
    Actor,
    EventInvalid,
    EventResult,
    TaskExists,
    farm_event_record,
    farm_events_refused,
    farm_token_account,
    farm_token_generate,
)
from transfers.models import FarmAccount

logger = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # bytes: a thousand events fit easily
MAX_EVENTS = 1000


_CODES = {
    400: "invalid",
    401: "not_authenticated",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
}


def _answer(status: int, detail: str, **extra: Any) -> JsonResponse:
    """200: {"detail", "events"}; an error: the API's one error shape (transfers.api.errors)."""
    body = error_body(_CODES.get(status, "invalid"), detail) if status >= 400 else {"detail": detail, **extra}
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="rvweb farm events"'
    return response


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=None, request_id=getattr(request, "request_id", ""), remote_addr=request.META.get("REMOTE_ADDR"))


def _body(request: HttpRequest) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (whatever Content-Length claims)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return None
    body = request.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


@csrf_exempt  # no cookies here: a bearer token authenticates each request
def farm_events(request: HttpRequest, account_id: int) -> JsonResponse:
    if request.method != "POST":
        response = _answer(405, f"{request.method} is not allowed here: POST events")
        response["Allow"] = "POST"
        return response
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _answer(401, "this API needs the farm account's events token: send the header 'Authorization: Bearer <token>'")
    account = farm_token_account(account_id=account_id, token=token.strip())
    if account is None:
        logger.warning("farm events for account %s refused: the token is not its current one", account_id)
        return _answer(
            401, f"this token is not the current events token of farm account {account_id} (wrong, revoked or another's)"
        )
    actor = _actor(request)
    status, answer = _apply(request, account, actor)
    if status != 200:
        farm_events_refused(account=account, actor=actor, error=str(answer.get("detail", "")))
    return _answer(status, **answer)


def _apply(request: HttpRequest, account: Any, actor: Actor) -> tuple[int, dict[str, Any]]:
    body = _body(request)
    if body is None:
        return 413, {"detail": f"the body is larger than {MAX_BODY} bytes: send fewer events at a time"}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; RecursionError: absurd nesting
        return 400, {"detail": f"the body is not valid JSON ({exc.__class__.__name__}: {str(exc)[:200]})"}
    events = data if isinstance(data, list) else [data]
    if not events:
        return 400, {"detail": "no events: send one event object or a list of them"}
    if len(events) > MAX_EVENTS:
        return 413, {"detail": f"{len(events)} events in one request; at most {MAX_EVENTS}"}
    results: list[EventResult] = []  # its length is the number of the event being applied
    storage: FarmConnector | None = None
    try:
        storage = connector_for(account).for_page()  # one connection for the request's frames, not two an event
        with transaction.atomic():
            for event in events:
                results.append(farm_event_record(account=account, event=event, actor=actor, storage=storage))
    except (EventInvalid, UnsupportedAccount) as exc:
        return 400, {"detail": _where(len(results), events, str(exc))}
    except UnknownTask as exc:
        return 404, {"detail": _where(len(results), events, f"{exc}: create it first (a task_created event)")}
    except TaskExists as exc:
        return 409, {"detail": _where(len(results), events, str(exc))}
    finally:
        if storage is not None:
            storage.close()
    return 200, {"detail": f"{len(results)} event(s) recorded", "events": results}


def _where(number: int, events: list[Any], message: str) -> str:
    prefix = f"event {number} of {len(events)}: " if len(events) > 1 else ""
    suffix = "; no event of this request was recorded" if len(events) > 1 else ""
    return f"{prefix}{message}{suffix}"


@extend_schema(operation_id="farm_token_create", request=None, responses=FarmTokenSerializer)
@api_view(["POST"])
def farm_token(request: Request, account_id: int) -> Response:
    """A new events token for the account (the old one stops working), shown in this answer only."""
    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    if not selectors.user_may(request.user, "manage", account):
        raise PermissionDenied("only a lead of the account's team (or staff) may make its events token")
    actor = Actor(user=request.user, request_id=getattr(request, "request_id", ""), remote_addr=request.META.get("REMOTE_ADDR"))
    token = farm_token_generate(account=account, actor=actor)
    return Response(
        {"account": account.pk, "token": token, "detail": "shown once: store it now; a new token replaces it"},
        headers={"Cache-Control": "no-store"},
    )


@extend_schema(operation_id="farm_tasks_list", responses=FarmTaskListSerializer)
@api_view(["GET"])
def farm_tasks(request: Request, account_id: int) -> Response:
    """The account's tasks, newest first (parents and children alike; a child names its parent)."""
    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    try:
        tasks = _connector(account).tasks()
    except FarmError as exc:
        raise FarmUnavailable(str(exc)) from None
    return Response({"account": account.pk, "tasks": task_rows.tasks_json(tasks)})


def _connector(account: FarmAccount) -> FarmConnector:
    try:
        return connector_for(account).for_page()  # a request waits seconds for a farm, not minutes
    except UnsupportedAccount as exc:
        raise Invalid(str(exc)) from None


@extend_schema(operation_id="farm_task_retrieve", responses=FarmTaskDetailSerializer)
@api_view(["GET"])
def farm_task(request: Request, account_id: int, task_id: int) -> Response:
    """One task and its output files (of its leaves, for a parent): path in the output area, size, finished."""
    account = get_object_or_404(selectors.accounts_for(request.user), pk=account_id)
    connector = _connector(account)
    try:
        task = connector.task(task_id)
        kids = [connector.task(child) for child in task.children]
        outputs = connector.outputs(task_id)
    except UnknownTask:
        raise NotFound(f"farm account {account.name!r} has no task {task_id}") from None
    except FarmError as exc:
        raise FarmUnavailable(str(exc)) from None
    finally:
        connector.close()  # a remote storage's connections and thread, not left for the garbage collector
    files = [{"path": o.path, "size": o.size, "finished": o.finished} for o in outputs]
    return Response({**task_rows.task_json(task, kids), "outputs": files})
