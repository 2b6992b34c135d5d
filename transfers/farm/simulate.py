"""A simulated render on a storage farm account (local, SFTP, S3): a task (or a parent with child tasks, one per layer) whose
frames appear in the output area over time, each posted as a farm event, as a real render manager would.

Every frame is written through the output area's endpoint under its partial name (which listings and
downloads skip) and committed once complete: a final name never holds a half-written frame.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

from transfers.engine import hashing
from transfers.engine.endpoints import Destination
from transfers.farm import connector_for
from transfers.farm import status as task_status
from transfers.farm_events import Actor, farm_event_record
from transfers.models import FarmAccount, FarmTask

FRAME_SIZE = 64 * 1024
_CHUNK = 16 * 1024


@dataclass(frozen=True)
class RenderPlan:
    account_id: int
    task_id: int  # the top task (a parent when the render has layers)
    frames: int  # per leaf task
    interval: float  # seconds between two frames
    frame_size: int = FRAME_SIZE


def render_start(
    *, account: FarmAccount, scene: str, frames: int, children: int = 0, actor: Actor, interval: float = 0.2
) -> RenderPlan:
    """Create the render's tasks (task_created events): one task, or a parent with `children` layers."""
    top = farm_event_record(
        account=account,
        event={"type": "task_created", "scene": scene, "frames": 0 if children else frames},
        actor=actor,
    )
    for number in range(1, children + 1):
        farm_event_record(
            account=account,
            event={
                "type": "task_created",
                "scene": scene,
                "frames": frames,
                "parent_id": top["task_id"],
                "layer": f"layer_{number}",
            },
            actor=actor,
        )
    return RenderPlan(account_id=account.pk, task_id=top["task_id"], frames=frames, interval=interval)


def frame_write(output: Destination, path: str, data: bytes, *, chunk: int, pause: Callable[[], None] | None = None) -> None:
    """Write a frame into the output area as a renderer would, in pieces, under the area's partial name;
    it appears at its final name only when whole (the endpoint's verified commit), whatever the storage."""
    with output.open_partial(path, 0) as handle:
        for start in range(0, len(data), chunk):
            handle.write_at(data[start : start + chunk], start)
            if pause is not None:
                pause()
        output.finalize(path, size=len(data), checksum=hashing.plain(xxhash.xxh3_128(data).hexdigest()), handle=handle)


def _stopped(top: FarmTask) -> int | None:
    """The status of a render someone ended (a task_finished event, say with 10, Stop), or None."""
    code = FarmTask.objects.filter(pk=top.pk).values_list("status", flat=True).first()
    return code if code is not None and task_status.is_terminal(code) else None


def _stop_leaves(account: FarmAccount, leaves: list[FarmTask], code: int, actor: Actor) -> None:
    """A stopped parent stops its layers too: its tree has ended, nothing waits on it for ever."""
    for leaf in leaves:
        if not task_status.is_terminal(FarmTask.objects.values_list("status", flat=True).get(pk=leaf.pk)):
            farm_event_record(
                account=account, event={"type": "task_finished", "task_id": leaf.task_id, "status": code}, actor=actor
            )


def render_run(plan: RenderPlan, *, actor: Actor, sleep: Callable[[float], None] = time.sleep) -> int:
    """Render the plan's frames into the output area: frame n of every layer, then frame n + 1..., one
    round every `interval` seconds, each frame posted as frame_finished once it is whole; then
    task_finished for every task. A render whose top task has ended meanwhile stops (nothing more is
    posted, and its layers end with its status). Returns the frames written."""
    account = FarmAccount.objects.defer("access_key").get(pk=plan.account_id)
    top = FarmTask.objects.get(account=account, task_id=plan.task_id)
    connector = connector_for(account).ensure()
    try:
        return _render(plan, account, connector.endpoint("output"), top, actor=actor, sleep=sleep)
    finally:
        connector.close()


def _render(
    plan: RenderPlan, account: FarmAccount, output: Destination, top: FarmTask, *, actor: Actor, sleep: Callable[[float], None]
) -> int:
    leaves = list(top.children.order_by("task_id")) or [top]
    tasks = leaves if leaves == [top] else [*leaves, top]
    for task in tasks:
        farm_event_record(account=account, event={"type": "task_status", "task_id": task.task_id, "status": 5}, actor=actor)
    written = 0
    pieces = max(1, -(-plan.frame_size // _CHUNK))
    pause = plan.interval / 2 / pieces / len(leaves)  # half of a round is spent writing, like a renderer
    for number in range(1, plan.frames + 1):
        stopped = _stopped(top)
        if stopped is not None:
            _stop_leaves(account, leaves, stopped, actor)
            return written
        for task in leaves:
            path = f"{task.output_folder}/{task.scene}.{number:04d}.exr"
            frame_write(output, path, os.urandom(plan.frame_size), chunk=_CHUNK, pause=lambda: sleep(pause))
            event = {"type": "frame_finished", "task_id": task.task_id, "path": path, "size": plan.frame_size}
            farm_event_record(account=account, event=event, actor=actor)
            written += 1
        sleep(plan.interval / 2)
    for task in tasks:
        event = {"type": "task_finished", "task_id": task.task_id, "status": task_status.DONE}
        farm_event_record(account=account, event=event, actor=actor)
    return written
