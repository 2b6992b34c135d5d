"""Reading transfer tasks: rvweb's jobs in the Raysync vocabulary (the SDK's get_task_status and
get_task_list_status, reference/sdk-spec.md §5.3), and the code table every answer uses.

One table maps a job's status to its Raysync state and code (STATES); one its kind to a task type
(TASK_TYPES). Every job comes from selectors.jobs_for: another team's job answers as a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from transfers import selectors
from transfers.models import Manifest, TransferJob

# The SDK's RESPONSE table (§5.3), and rvweb's two additions.
RESPONSE: dict[str, int] = {
    "successful": 0,
    "ready": 100,
    "start": 101,
    "stopped": 102,
    "auth-failed": 201,
    "proxy-closed": 202,
    "ip-locked": 205,
    "account-locked": 209,
    "idle": 300,
    "stop-by-server": 301,
    "no-permission": 405,
    "failed": 500,
}
INVALID = 400  # rvweb: arguments refused before anything was recorded
NOT_FOUND = 404  # rvweb: no such task or account that the user may see (the same answer for both)
NO_PERMISSION = RESPONSE["no-permission"]

MAX_TASKS = 500  # get_task_list_status answers the user's latest 500 jobs


@dataclass(frozen=True)
class TaskState:
    """How a job's status reads in the Raysync vocabulary, and whether a waiting start waits on."""

    state: str
    code: int
    going_on: bool  # the run goes on by itself: wait=True keeps waiting (a pause waits for a person)


# One row per TransferJob status (a test keeps them in step).
STATES: dict[str, TaskState] = {
    TransferJob.Status.QUEUED: TaskState("ready", RESPONSE["ready"], going_on=True),
    TransferJob.Status.RUNNING: TaskState("start", RESPONSE["start"], going_on=True),
    TransferJob.Status.PAUSED: TaskState("stopped", RESPONSE["stopped"], going_on=False),
    TransferJob.Status.COMPLETED: TaskState("successful", RESPONSE["successful"], going_on=False),
    TransferJob.Status.COMPLETED_WITH_ERRORS: TaskState("failed", RESPONSE["failed"], going_on=False),
    TransferJob.Status.FAILED: TaskState("failed", RESPONSE["failed"], going_on=False),
    TransferJob.Status.CANCELLED: TaskState("stopped", RESPONSE["stopped"], going_on=False),
}

# A job's Raysync task type: by its kind, and for a manifest upload by where its manifest came from.
TASK_TYPES: dict[tuple[str, str | None], str] = {
    (TransferJob.Kind.UPLOAD_ASSET, None): "upload",
    (TransferJob.Kind.UPLOAD_ASSET, Manifest.TransmitType.UPLOAD_LIST): "upload-list",
    (TransferJob.Kind.UPLOAD_CONFIG, None): "upload",
    (TransferJob.Kind.UPLOAD, None): "upload",
    (TransferJob.Kind.DOWNLOAD, None): "download",
    (TransferJob.Kind.AUTO_DOWNLOAD, None): "download",
    (TransferJob.Kind.AUTO_DOWNLOAD_AFTER_TASK_COMPLETED, None): "download",
}

TASK_GROUPS: dict[str, frozenset[str]] = {
    "all": frozenset(TransferJob.Status.values),
    "active": TransferJob.ACTIVE,
    "ended": TransferJob.TERMINAL,
}

# The raw shapes, with the SDK's hyphenated keys (hence the functional TypedDict syntax).
TaskEntry = TypedDict(
    "TaskEntry",
    {
        "task-id": int,
        "task-type": str,
        "task-state": str,
        "kind": str,  # rvweb's job kind
        "percent": int,
        "files-done": int,
        "files-total": int,
        "bytes-done": int,
        "bytes-total": int,
        "error": str,
    },
)
TaskListAnswer = TypedDict("TaskListAnswer", {"code": int, "message": str, "task-list": list[TaskEntry]})


def task_entry(job: TransferJob) -> TaskEntry:
    """One job as a Raysync task-list row, with rvweb's figures."""
    transmit = job.manifest.transmit_type if job.manifest is not None else None
    return {
        "task-id": job.pk,
        "task-type": TASK_TYPES.get((job.kind, transmit)) or TASK_TYPES[(job.kind, None)],
        "task-state": STATES[job.status].state,
        "kind": job.kind,
        "percent": job.percent,
        "files-done": job.files_done,
        "files-total": job.files_total,
        "bytes-done": job.bytes_done,
        "bytes-total": job.bytes_total,
        "error": job.error,
    }


def get_task_status(*, user: Any, task_id: int) -> TaskListAnswer:
    """The SDK's get_task_status(transfer_task_id): code 0 and the task as a one-row task-list; code 404
    and an empty list for a task that does not exist or that the user may not see (the same answer)."""
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        return {"code": INVALID, "message": "task_id: a transfer task's id (a whole number)", "task-list": []}
    job = selectors.jobs_for(user).filter(pk=task_id).first()
    if job is None:
        return {"code": NOT_FOUND, "message": f"no transfer task {task_id} that you may see", "task-list": []}
    return {"code": RESPONSE["successful"], "message": "success", "task-list": [task_entry(job)]}


def get_task_list_status(*, user: Any, task_group: str = "all") -> TaskListAnswer:
    """The SDK's get_task_list_status(): the user's tasks (their teams' jobs, selectors.jobs_for), the
    latest MAX_TASKS first; task_group "active" (queued, running, paused) or "ended" narrows them."""
    statuses = TASK_GROUPS.get(task_group) if isinstance(task_group, str) else None
    if statuses is None:
        return {"code": INVALID, "message": f"task_group: one of {', '.join(TASK_GROUPS)}", "task-list": []}
    jobs = selectors.jobs_for(user).filter(status__in=statuses).order_by("-created_at", "-pk")[:MAX_TASKS]
    return {"code": RESPONSE["successful"], "message": "success", "task-list": [task_entry(job) for job in jobs]}
