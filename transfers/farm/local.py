"""The local farm: a folder per account with the farm's storage areas, on this machine's disk.

Its tasks are rows of FarmTask, made and moved by the farm events (transfers.farm_events): by
`manage.py simulate_render`, the demo's "Simulate a render" button, or a studio's own render manager
posting to the farm events API. Its frames are the files in the output area: the ones announced
finished (FarmFrame rows), and the ones written there but not announced yet (maybe half-written).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db.models import Q

from transfers import selectors
from transfers.engine.endpoints import LocalFolder
from transfers.engine.paths import PathRefused
from transfers.farm.base import AREAS, CheckStep, FarmConnector, FarmOutput, FarmTaskInfo, TransferLine, UnknownTask, check_area
from transfers.models import FarmAccount, FarmFrame, FarmTask

logger = logging.getLogger(__name__)


def _info(task: FarmTask, children: tuple[int, ...], parent_task_id: int | None) -> FarmTaskInfo:
    return FarmTaskInfo(
        task_id=task.task_id,
        scene=task.scene,
        status_code=task.status,
        output_folder=task.output_folder,
        frames_expected=task.frames_expected,
        parent_id=parent_task_id,
        layer=task.layer,
        children=children,
        frames_done=getattr(task, "frames_done", 0),
        updated_at=task.updated_at,
    )


class LocalFarm(FarmConnector):
    """The connector of a local farm account: storage under FARM_ROOT/account-<pk>/{input,output,config}."""

    kind = FarmAccount.Kind.LOCAL
    takes_events = True

    @property
    def root(self) -> Path:
        return Path(settings.FARM_ROOT) / f"account-{self.account.pk}"

    def ensure(self) -> LocalFarm:
        for name in AREAS:
            self.area_root(name).mkdir(parents=True, exist_ok=True)
        return self

    def area_root(self, name: str) -> Path:
        return self.root / check_area(name)

    def _rows(self) -> list[FarmTaskInfo]:
        rows = list(selectors.farm_tasks_of(self.account).order_by("-created_at", "-task_id"))
        children: dict[int, list[int]] = {}
        for row in sorted(rows, key=lambda r: r.task_id):
            if row.parent is not None:
                children.setdefault(row.parent.task_id, []).append(row.task_id)
        return [_info(row, tuple(children.get(row.task_id, ())), row.parent.task_id if row.parent else None) for row in rows]

    def tasks(self) -> list[FarmTaskInfo]:
        return self._rows()

    def task(self, task_id: int) -> FarmTaskInfo:
        row = selectors.farm_tasks_of(self.account).filter(task_id=task_id).first()
        if row is None:
            raise UnknownTask(task_id, self.account.name)
        children = tuple(row.children.order_by("task_id").values_list("task_id", flat=True))
        return _info(row, children, row.parent.task_id if row.parent else None)

    def unknown(self, task_ids: list[int]) -> list[int]:
        known: set[int] = set()
        for start in range(0, len(task_ids), 500):  # bounded IN lists
            chunk = task_ids[start : start + 500]
            known.update(FarmTask.objects.filter(account=self.account, task_id__in=chunk).values_list("task_id", flat=True))
        return [task_id for task_id in task_ids if task_id not in known]

    def outputs(self, task_id: int) -> list[FarmOutput]:
        found: dict[str, FarmOutput] = {}
        output = self.area_root("output")
        for leaf in self.leaves(task_id):
            announced = FarmFrame.objects.filter(
                task__account=self.account, task__task_id=leaf.task_id, finished_at__isnull=False
            )
            on_disk = dict(_files_under(output, leaf.output_folder))
            for path, size in announced.values_list("path", "size"):
                # Announced, but not that size now (rewritten, cut short): not complete until it is again.
                # A missing one stays "finished": its item fails saying the file is gone.
                there = on_disk.get(path, size)
                found[path] = FarmOutput(path=path, size=there, finished=there == size, expected=size)
            for path, size in on_disk.items():
                found.setdefault(path, FarmOutput(path=path, size=size, finished=False))
        return [found[path] for path in sorted(found)]

    def announced_since(self, task_ids: list[int], since: float) -> bool:
        """A frame announced, or a task's status changed (its end, say), for these tasks or their children."""
        when = datetime.fromtimestamp(since, tz=UTC)
        tree = Q(task_id__in=task_ids) | Q(parent__task_id__in=task_ids) | Q(parent__parent__task_id__in=task_ids)
        tasks = FarmTask.objects.filter(tree, account=self.account)
        if tasks.filter(updated_at__gt=when).exists():
            return True
        return FarmFrame.objects.filter(task__in=tasks, finished_at__gt=when).exists()

    def check(self) -> list[CheckStep]:
        """The storage root, then each area: there (made if missing), a folder, inside FARM_ROOT once
        symlinks are resolved, and writable (a file is made and removed)."""
        farm_root = Path(settings.FARM_ROOT).resolve()
        steps = [_step(f"storage root {self.root}", lambda: _inside(self.root, farm_root) or _made(self.root))]
        for name in AREAS:
            area = self.area_root(name)
            steps.append(_step(f"{name} area exists", partial(_made, area)))
            steps.append(_step(f"{name} area is a folder", partial(_folder, area)))
            steps.append(_step(f"{name} area is inside the farm root", partial(_inside, area, farm_root)))
            steps.append(_step(f"{name} area is writable", partial(_writable, area)))
        return steps

    def lines(self) -> list[TransferLine]:
        return [TransferLine(name="loopback", engine="local", server="127.0.0.1", port=0, is_default=True)]


def _step(name: str, probe: Callable[[], str]) -> CheckStep:
    try:
        return CheckStep(name, True, probe())
    except (OSError, ValueError) as exc:
        return CheckStep(name, False, str(exc))


def _made(path: Path) -> str:
    if path.is_symlink() or path.exists():
        return "present"
    path.mkdir(parents=True, exist_ok=True)
    return "made (it was missing)"


def _folder(path: Path) -> str:
    if path.is_symlink():
        raise ValueError(f"{path} is a symlink, not a folder")
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder" if path.exists() else f"{path} does not exist")
    return "a folder"


def _inside(path: Path, farm_root: Path) -> str:
    resolved = path.resolve()
    if resolved != farm_root and farm_root not in resolved.parents:
        raise ValueError(f"{path} leads to {resolved}, outside the farm root {farm_root} (RVWEB_FARM_ROOT)")
    return ""


def _writable(path: Path) -> str:
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path} is not writable by this server (user id {os.getuid()})")
    with tempfile.NamedTemporaryFile(dir=path, prefix=".rvweb-check-"):
        pass
    return "a file was written and removed"


def _files_under(root: Path, folder: str) -> list[tuple[str, int]]:
    """Regular files under root/folder (no symlinks, no partial files), as (path relative to root, size).

    Walked from the area's descriptor without following any symlink (LocalFolder.list): a task folder
    that is a symlink out of the area lists nothing, not the names of what it points to."""
    try:
        return [(found.path, found.size) for found in LocalFolder(root).list(folder)]
    except PathRefused as exc:
        logger.warning("output folder %r of the output area %s is not listed: %s", folder, root, exc)
        return []
