"""A farm account's tasks as the farm page and the farm API show them, whatever the farm: built from
the connector's FarmTaskInfo list (the local farm's rows, or the Fox REST API's answers).

A parent's frames are its children's; a child is shown under its parent. The page reads the `TaskRow`s,
the API the `task_json` dicts (FarmTaskSerializer's shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transfers.farm.base import FarmTaskInfo
from transfers.farm.status import TaskStatus

TASKS_SHOWN = 100  # top-level tasks on the page
TASKS_LISTED = 1000  # tasks in the API's list


@dataclass(frozen=True)
class TaskRow:
    task: FarmTaskInfo
    status: TaskStatus
    frames_done: int
    frames_expected: int
    children: list[TaskRow] = field(default_factory=list)


def _children(tasks: list[FarmTaskInfo]) -> dict[int, list[FarmTaskInfo]]:
    by_id = {task.task_id: task for task in tasks}
    children: dict[int, list[FarmTaskInfo]] = {}
    for task in sorted(tasks, key=lambda t: t.task_id):
        if task.parent_id is not None and task.parent_id in by_id:
            children.setdefault(task.parent_id, []).append(task)
    return children


def _row(task: FarmTaskInfo, kids: list[FarmTaskInfo]) -> TaskRow:
    frames = kids or [task]
    return TaskRow(
        task=task,
        status=task.status,
        frames_done=sum(t.frames_done for t in frames),
        frames_expected=sum(t.frames_expected for t in frames),
        children=[_row(kid, []) for kid in kids],
    )


def task_rows(tasks: list[FarmTaskInfo], *, limit: int = TASKS_SHOWN) -> list[TaskRow]:
    """The top-level tasks (newest first, as the connector lists them), each with its children."""
    children = _children(tasks)
    ids = {task.task_id for task in tasks}
    tops = [task for task in tasks if task.parent_id is None or task.parent_id not in ids]
    return [_row(task, children.get(task.task_id, [])) for task in tops[:limit]]


def task_json(task: FarmTaskInfo, kids: list[FarmTaskInfo]) -> dict[str, Any]:
    """A task as the API shows it; a parent's frames are its children's."""
    row = _row(task, kids)
    return {
        "task_id": task.task_id,
        "scene": task.scene,
        "layer": task.layer,
        "status": task.status_code,
        "status_label": row.status.label,
        "outcome": row.status.outcome.value,
        "terminal": row.status.terminal(),
        "parent_id": task.parent_id,
        "children": [kid.task_id for kid in kids],
        "output_folder": task.output_folder,
        "frames_expected": row.frames_expected,
        "frames_done": row.frames_done,
        "updated_at": task.updated_at.isoformat() if task.updated_at else None,
    }


def tasks_json(tasks: list[FarmTaskInfo], *, limit: int = TASKS_LISTED) -> list[dict[str, Any]]:
    children = _children(tasks)
    return [task_json(task, children.get(task.task_id, [])) for task in tasks[:limit]]


def labels(tasks: list[FarmTaskInfo]) -> dict[int, str]:
    """The download form's choices: each top-level task, "scene (status)"."""
    return {row.task.task_id: f"{row.task.scene} ({row.status.label})" for row in task_rows(tasks, limit=TASKS_LISTED)}
