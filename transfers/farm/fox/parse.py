"""The farm's JSON answers as the connector's dataclasses: task trees (TaskInfo with its children),
transfer lines (getConfig's, or the account's own), and numbers the farm sends as numbers or strings."""

from __future__ import annotations

from typing import Any

from transfers.farm.base import FarmTaskInfo, TransferLine
from transfers.models import FarmAccount


def static_lines(account: FarmAccount) -> list[TransferLine]:
    """The account's own lines ([{"name", "host", "port", "engine"?}]); a line without an engine serves any."""
    lines = []
    for index, row in enumerate(account.transfer_lines or []):
        if isinstance(row, dict) and row.get("name") and row.get("host") and as_int(row.get("port")):
            engine = str(row.get("engine") or "").lower()
            port = as_int(row["port"]) or 0
            lines.append(TransferLine(str(row["name"]), engine, str(row["host"]), port, is_default=index == 0))
    return lines


def line_of(row: Any, engine: str) -> TransferLine | None:
    if not isinstance(row, dict) or not row.get("server") or not as_int(row.get("port")):
        return None
    notes = {key: str(row[key]) for key in ("lineId", "type") if row.get(key) is not None}
    return TransferLine(
        name=str(row.get("name") or row["server"]),
        engine=engine,
        server=str(row["server"]),
        port=as_int(row["port"]) or 0,
        is_default=as_int(row.get("isDefault")) == 1,
        notes=notes,
    )


def task_tree(item: dict[str, Any], parent_id: int | None = None, depth: int = 0) -> list[FarmTaskInfo]:
    """A TaskInfo and its children (isOpen == 1: respRenderingTaskList, which may be null), parent first."""
    task_id = as_int(item.get("id"))
    if task_id is None:
        return []
    listed = item.get("respRenderingTaskList") if as_int(item.get("isOpen")) == 1 else None
    children = [child for child in as_list(listed) if isinstance(child, dict)]
    below = [task for child in children for task in task_tree(child, task_id, depth + 1)] if depth < 8 else []
    direct = tuple(task.task_id for task in below if task.parent_id == task_id)
    info = FarmTaskInfo(
        task_id=task_id,
        scene=str(item.get("sceneName") or ""),
        status_code=as_int(item.get("taskStatus")),
        output_folder=str(item.get("outputFileName") or "").strip("/"),
        frames_expected=as_int(item.get("totalFrames")) or 0,
        parent_id=parent_id if parent_id is not None else as_int(item.get("layerParentId")) or None,
        layer=str(item.get("layerName") or ""),
        children=direct,
    )
    return [info, *below]


def as_list(value: Any) -> list[Any]:
    """A farm answer's list field: [] for anything that is not a list (null, a number, an object)."""
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None
