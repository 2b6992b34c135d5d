"""Farm events: what moves a local farm's tasks. The farm events API, `manage.py simulate_render` and the
demo's button all come here, with plain values (an event is the JSON object as parsed), and an actor.

Events (one JSON object each; `task_id` is the farm's task id, an integer):

    {"type": "task_created", "scene": "shot_010", "frames": 50, "task_id": 1234?, "parent_id": 1200?,
     "layer": "beauty"?, "status": 0?}
    {"type": "task_status", "task_id": 1234, "status": 5}
    {"type": "frame_finished", "task_id": 1234, "path": "1234_shot_010/frame_0001.exr", "size": 65536}
    {"type": "task_finished", "task_id": 1234, "status": 25}

A frame's path is relative to the account's output area and lies in its task's output folder; the file
must be there, complete (its size as announced), when the event arrives. Every accepted event is audited;
a refused one raises EventInvalid (400), UnknownTask (404) or TaskExists (409) and changes nothing.

The events token of an account is stored as a SHA-256 digest only (FarmEventToken): the token is
returned once by farm_token_generate and never logged, stored or shown again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from transfers import selectors
from transfers.engine.endpoints import Destination
from transfers.engine.paths import PathRefused, clean_server_path
from transfers.farm import FarmConnector, FarmError, UnknownTask, connector_for
from transfers.farm import status as task_status
from transfers.models import AuditEvent, FarmAccount, FarmEventToken, FarmFrame, FarmTask
from transfers.services import audit_team_of

logger = logging.getLogger(__name__)

EVENT_TYPES = ("task_created", "task_status", "frame_finished", "task_finished")
FIRST_TASK_ID = 1001
MAX_FRAMES = 1_000_000
MAX_PATH = 1000  # FarmFrame.path
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")  # a scene or layer name: one folder name, no tricks


class EventInvalid(ValueError):
    """An event the farm refuses; the message says what to fix."""


class TaskExists(ValueError):
    """A task_created event for a task id the account already has."""


@dataclass(frozen=True)
class Actor:
    """Who acts: a user (None for the farm itself: a token or a command), and where the request came from."""

    user: Any = None
    request_id: str = ""
    remote_addr: str | None = None


class EventResult(TypedDict):
    type: str
    task_id: int
    outcome: str  # created, updated, unchanged
    status: int
    frames_done: int
    frames_expected: int


def _audit(actor: Actor, action: str, target: Any, *, after: dict[str, Any] | None = None, outcome: str = "ok") -> None:
    person = actor.user if isinstance(actor.user, AuthUser) else None
    AuditEvent.objects.create(
        actor=person,
        actor_name=person.get_username() if person is not None else "farm",
        team_id=audit_team_of(target),
        action=action,
        target_type=type(target).__name__,
        target_id=str(getattr(target, "pk", target)),
        request_id=actor.request_id,
        remote_addr=actor.remote_addr,
        after=after,
        outcome=outcome,
    )


# --- tokens -------------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _require_manage(actor: Actor, account: FarmAccount) -> None:
    if actor.user is not None and not selectors.user_may(actor.user, "manage", account):
        raise PermissionDenied("you may not manage this farm account's events (that needs the lead role in its team)")


def farm_token_generate(*, account: FarmAccount, actor: Actor) -> str:
    """A new events token for the account (the old one stops working): returned once, stored as a digest."""
    _require_manage(actor, account)
    token = f"rvf_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        replaced = FarmEventToken.objects.filter(account=account).delete()[0] > 0
        FarmEventToken.objects.create(account=account, digest=_digest(token), created_by=actor.user if actor.user else None)
        _audit(actor, "farm.token_generate", account, after={"replaced": replaced})
    return token


def farm_token_revoke(*, account: FarmAccount, actor: Actor) -> bool:
    """Revoke the account's events token; False when it had none."""
    _require_manage(actor, account)
    with transaction.atomic():
        revoked = FarmEventToken.objects.filter(account=account).delete()[0] > 0
        if revoked:
            _audit(actor, "farm.token_revoke", account)
    return revoked


def farm_token_account(*, account_id: int, token: str) -> FarmAccount | None:
    """The account whose current events token this is; None for no account, no token, or another token."""
    stored = FarmEventToken.objects.filter(account_id=account_id).values_list("digest", flat=True).first()
    if stored is None or not token:
        return None
    if not hmac.compare_digest(stored, _digest(token)):
        return None
    return FarmAccount.objects.defer("access_key").get(pk=account_id)


# --- reading an event -----------------------------------------------------------------------------


def _int(event: dict[str, Any], key: str, *, default: int | None = None, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    value = event.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is None:
        raise EventInvalid(f"{key} is missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise EventInvalid(f"{key} must be a whole number, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise EventInvalid(f"{key} must be between {minimum} and {maximum}, not {value}")
    return value


def _name(event: dict[str, Any], key: str, *, required: bool) -> str:
    value = event.get(key, "")
    if not required and value in ("", None):
        return ""
    if not isinstance(value, str) or not _NAME.match(value) or value != value.strip():
        raise EventInvalid(
            f"{key} must be 1 to 100 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit"
        )
    return value


def _task(account: FarmAccount, task_id: int, *, lock: bool = False) -> FarmTask:
    tasks = FarmTask.objects.select_for_update() if lock else FarmTask.objects
    task = tasks.filter(account=account, task_id=task_id).first()
    if task is None:
        raise UnknownTask(task_id, account.name)
    return task


def _result(event_type: str, task: FarmTask, outcome: str) -> EventResult:
    return {
        "type": event_type,
        "task_id": task.task_id,
        "outcome": outcome,
        "status": task.status,
        "frames_done": FarmFrame.objects.filter(task=task, finished_at__isnull=False).count(),
        "frames_expected": task.frames_expected,
    }


# --- the events ------------------------------------------------------------------------------------


def farm_event_record(*, account: FarmAccount, event: object, actor: Actor, storage: FarmConnector | None = None) -> EventResult:
    """Check one event and apply it to the account's tasks, audited; EventInvalid/UnknownTask/TaskExists
    (nothing changed) when it cannot be. `storage`: the account's connector a frame is checked through,
    shared by the events of one request (its caller closes it); None: one of its own, closed after."""
    if not isinstance(event, dict):
        raise EventInvalid(f"an event must be a JSON object, not {type(event).__name__}")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise EventInvalid(f"unknown event type {kind!r}; expected one of {', '.join(EVENT_TYPES)}")
    handler = _HANDLERS[kind]
    if not connector_for(account).takes_events:
        raise EventInvalid(f"farm account {account.name!r} reports its own tasks: it takes no farm events")
    with transaction.atomic():
        if handler is _frame_finished:
            return _frame_finished(account, event, actor, storage=storage)
        return handler(account, event, actor)


def _task_created(account: FarmAccount, event: dict[str, Any], actor: Actor) -> EventResult:
    scene = _name(event, "scene", required=True)
    layer = _name(event, "layer", required=False)
    frames = _int(event, "frames", default=0, maximum=MAX_FRAMES)
    code = _int(event, "status", default=task_status.WAITING, minimum=-(2**31), maximum=2**31 - 1)
    task_status.status_of(code)  # logs a code the table does not know; it is kept all the same
    parent = None
    if event.get("parent_id") is not None:
        parent = _task(account, _int(event, "parent_id", minimum=1))
    elif layer:
        raise EventInvalid("a layer needs a parent_id: a layer is a child task of a render")
    task = _task_insert(account, event, scene=scene, layer=layer, frames=frames, code=code, parent=parent, actor=actor)
    after = {"task_id": task.task_id, "scene": scene, "frames": frames, "parent_id": parent.task_id if parent else None}
    _audit(actor, "farm.task_create", task, after=after)
    return _result("task_created", task, "created")


def _task_insert(
    account: FarmAccount,
    event: dict[str, Any],
    *,
    scene: str,
    layer: str,
    frames: int,
    code: int,
    parent: FarmTask | None,
    actor: Actor,
) -> FarmTask:
    """Insert the task, with the id the event gives or the next free one (retried if another writer took it)."""
    chosen = _int(event, "task_id", minimum=1) if event.get("task_id") is not None else None
    for _attempt in range(5):
        if chosen is not None:
            task_id = chosen
        else:
            task_id = max(FIRST_TASK_ID, (FarmTask.objects.filter(account=account).aggregate(m=Max("task_id"))["m"] or 0) + 1)
        folder = f"{parent.output_folder}/{layer}" if parent is not None and layer else f"{task_id}_{scene}"
        try:
            with transaction.atomic():
                return FarmTask.objects.create(
                    account=account,
                    task_id=task_id,
                    scene=scene,
                    layer=layer,
                    output_folder=clean_server_path(folder),
                    status=code,
                    parent=parent,
                    frames_expected=frames,
                    created_by=actor.user if isinstance(actor.user, AuthUser) else None,
                )
        except IntegrityError:
            if chosen is not None:
                raise TaskExists(f"farm account {account.name!r} has a task {task_id} already") from None
            # another writer took the next id meanwhile: choose again
    raise TaskExists("could not choose a free task id (too many tasks created at once); try again")


def _task_status(account: FarmAccount, event: dict[str, Any], actor: Actor) -> EventResult:
    task = _task(account, _int(event, "task_id", minimum=1), lock=True)
    code = _int(event, "status", minimum=-(2**31), maximum=2**31 - 1)
    task_status.status_of(code)  # logs a code the table does not know
    before = task.status
    if before == code:
        return _result("task_status", task, "unchanged")
    FarmTask.objects.filter(pk=task.pk).update(status=code, updated_at=timezone.now())
    task.status = code
    _audit(actor, "farm.task_status", task, after={"task_id": task.task_id, "before": before, "status": code})
    return _result("task_status", task, "updated")


def _task_finished(account: FarmAccount, event: dict[str, Any], actor: Actor) -> EventResult:
    task = _task(account, _int(event, "task_id", minimum=1), lock=True)
    code = _int(event, "status", default=task_status.DONE, minimum=-(2**31), maximum=2**31 - 1)
    if not task_status.status_of(code).terminal(is_test_stop=True):
        ends = ", ".join(str(c) for c in sorted(task_status.TERMINAL_CODES | {40}))
        raise EventInvalid(f"status {code} does not end a task; a finished task has one of {ends}")
    before = task.status
    FarmTask.objects.filter(pk=task.pk).update(status=code, updated_at=timezone.now())
    task.status = code
    _audit(actor, "farm.task_finish", task, after={"task_id": task.task_id, "before": before, "status": code})
    return _result("task_finished", task, "unchanged" if before == code else "updated")


def _frame_finished(
    account: FarmAccount, event: dict[str, Any], actor: Actor, *, storage: FarmConnector | None = None
) -> EventResult:
    task = _task(account, _int(event, "task_id", minimum=1))
    size = _int(event, "size")
    raw = event.get("path")
    if not isinstance(raw, str):
        raise EventInvalid("path must be a string: the frame's path relative to the output area")
    try:
        path = clean_server_path(raw)
    except PathRefused as exc:
        raise EventInvalid(str(exc)) from None
    if len(path) > MAX_PATH:
        raise EventInvalid(f"path is {len(path)} characters long; at most {MAX_PATH}")
    if not path.startswith(f"{task.output_folder}/"):
        raise EventInvalid(f"path {raw!r} is not in the output folder of task {task.task_id} ({task.output_folder}/)")
    # A request (in a transaction) waits seconds for the storage; the events of one request share a connection.
    connector = storage if storage is not None else connector_for(account).for_page()
    try:
        frame_check(output=connector.endpoint("output"), path=path, size=size)
    except FarmError as exc:  # the storage itself did not answer (a server away, a host key not the pinned one)
        raise EventInvalid(f"frame {path!r} cannot be checked now ({exc}); post the event again") from None
    finally:
        if storage is None:
            connector.close()
    frame, created = FarmFrame.objects.get_or_create(task=task, path=path, defaults={"size": size, "finished_at": timezone.now()})
    outcome = "created" if created else "unchanged"
    if not created and (frame.size != size or frame.finished_at is None):
        FarmFrame.objects.filter(pk=frame.pk).update(size=size, finished_at=timezone.now())
        outcome = "updated"
    if outcome != "unchanged":
        _audit(actor, "farm.frame_finish", task, after={"task_id": task.task_id, "path": path, "size": size})
    return _result("frame_finished", task, outcome)


def frame_check(*, output: Destination, path: str, size: int) -> None:
    """The frame is a regular file of the output area, complete: EventInvalid saying what is wrong."""
    try:
        stored = output.stat(path)
    except PathRefused as exc:
        raise EventInvalid(str(exc)) from None
    except OSError as exc:  # a remote storage that does not answer: the event can be posted again
        raise EventInvalid(f"frame {path!r} cannot be checked now ({exc}); post the event again") from None
    if stored is None:
        raise EventInvalid(f"frame {path!r} is not in the output area as a regular file (write it there before announcing it)")
    if stored.size != size:
        raise EventInvalid(f"frame {path!r} holds {stored.size} bytes, not the {size} announced (still being written?)")


_HANDLERS: dict[str, Callable[..., EventResult]] = {
    "task_created": _task_created,
    "task_status": _task_status,
    "frame_finished": _frame_finished,
    "task_finished": _task_finished,
}


def farm_events_refused(*, account: FarmAccount, actor: Actor, error: str) -> None:
    """Audit a refused request to the events API (its events changed nothing)."""
    _audit(actor, "farm.event", account, after={"error": error[:500]}, outcome="refused")
