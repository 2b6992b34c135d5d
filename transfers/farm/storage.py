"""Storage farms: a studio's own farm whose storage areas are endpoints rvweb reads and writes itself
(a folder on this machine, an SFTP server, an S3 bucket), and whose tasks come from farm events.

What differs between them is only where the areas live: a subclass says how to open an area as an
engine endpoint (`open_area`), which settings of the account's `storage` it needs (`storage_settings`,
checked by `storage_checked`), and how to test the connection. Tasks, outputs and the events' frame
check are the same for all of them and live here.

A connector is made per run (or per request); the endpoints it opens are kept for its life and
closed by `close()` (a remote one holds connections and a thread).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.db.models import Q

from transfers import selectors
from transfers.engine.endpoints import Endpoint, StoredFile
from transfers.engine.paths import PathRefused
from transfers.engine.runner import RunSummary
from transfers.farm.base import (
    CheckStep,
    FarmConnector,
    FarmError,
    FarmOutput,
    FarmTaskInfo,
    LegRequest,
    Route,
    UnknownTask,
    check_area,
)
from transfers.models import FarmFrame, FarmTask

logger = logging.getLogger(__name__)


class StorageUnavailable(FarmError, OSError):
    """The account's storage did not answer as it should (unreachable, refused the key, a host key that is
    not the pinned one, settings its transport cannot use): a FarmError, so pages and jobs say it plainly
    instead of an internal error, and an OSError, as the transport's own error was. `retryable`: the
    server was away or slow, not refusing us."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def unavailable(exc: Exception, where: str) -> StorageUnavailable:
    """The transport's error as a StorageUnavailable naming where it happened (never a secret: the
    transports' messages carry none)."""
    code = str(getattr(exc, "code", ""))
    refused = code in ("auth", "host_key", "settings") or isinstance(exc, PermissionError | ValueError)
    retryable = isinstance(exc, ConnectionError | TimeoutError) and not refused
    message = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
    return StorageUnavailable(f"{where}: {message}", retryable=retryable)


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


class StorageFarm(FarmConnector):
    """A farm whose areas are endpoints of rvweb's own transports and whose tasks are FarmTask rows."""

    takes_events = True

    # A page or an API request waits seconds for the storage, not the worker's minutes (its read timeouts
    # and retries): for_page() makes open_area ask the transport for these.
    page_timeouts: ClassVar[dict[str, Any]] = {}

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self._open: dict[str, Endpoint] = {}
        self._page = False

    def for_page(self) -> StorageFarm:
        self._page = True
        return self

    def tuning(self) -> dict[str, Any]:
        """The transport's timeouts for this connector: the page's, or the transport's own (a worker's)."""
        return dict(self.page_timeouts) if self._page else {}

    @property
    def storage(self) -> dict[str, Any]:
        return dict(self.account.storage or {})

    # --- endpoints ----------------------------------------------------------------------------------

    def open_area(self, name: str) -> Endpoint:
        """A storage area as a new endpoint of the kind's transport."""
        raise NotImplementedError

    def endpoint(self, name: str) -> Endpoint:
        check_area(name)
        if name not in self._open:
            try:
                self._open[name] = self.open_area(name)
            except StorageUnavailable:
                raise
            except (OSError, ValueError) as exc:  # the server away, a key refused or not the pinned one
                raise unavailable(exc, f'the {name} storage of farm account "{self.account.name}"') from None
        return self._open[name]

    def transfer(self, request: LegRequest) -> RunSummary:
        """rvweb's own engine between the area's endpoint and the local files; the job page says where."""
        line = self.lines()[0]
        reason = "a folder on this machine" if line.engine == "local" else f"the account's {line.engine.upper()} storage"
        request.note_route(
            Route(transport=line.engine, line=line.name, host=line.server, port=line.port, engine=line.engine, reason=reason)
        )
        return super().transfer(request)

    def close(self) -> None:
        opened, self._open = self._open, {}
        for endpoint in opened.values():
            with contextlib.suppress(Exception):  # closing never fails a run that has ended
                endpoint.close()

    # --- tasks (farm events) ------------------------------------------------------------------------

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
        for leaf in self.leaves(task_id):
            announced = FarmFrame.objects.filter(
                task__account=self.account, task__task_id=leaf.task_id, finished_at__isnull=False
            )
            on_storage = {stored.path: stored.size for stored in self._files_under(leaf.output_folder)}
            for path, size in announced.values_list("path", "size"):
                # Announced, but not that size now (rewritten, cut short): not complete until it is again.
                # A missing one stays "finished": its item fails saying the file is gone.
                there = on_storage.get(path, size)
                found[path] = FarmOutput(path=path, size=there, finished=there == size, expected=size)
            for path, size in on_storage.items():
                found.setdefault(path, FarmOutput(path=path, size=size, finished=False))
        return [found[path] for path in sorted(found)]

    def _files_under(self, folder: str) -> list[StoredFile]:
        """Regular files under `folder` of the output area (no links, no partial files): the endpoint's
        listing never follows a link out of the area."""
        output = self.endpoint("output")
        try:
            return list(output.list(folder))
        except PathRefused as exc:
            logger.warning("output folder %r of %s is not listed: %s", folder, self.account.name, exc)
            return []
        except OSError as exc:  # a watcher rides out a retryable one; a page says it
            raise unavailable(exc, f'listing {folder}/ in the output storage of farm account "{self.account.name}"') from None

    def announced_since(self, task_ids: list[int], since: float) -> bool:
        """A frame announced, or a task's status changed (its end, say), for these tasks or their children."""
        when = datetime.fromtimestamp(since, tz=UTC)
        tree = Q(task_id__in=task_ids) | Q(parent__task_id__in=task_ids) | Q(parent__parent__task_id__in=task_ids)
        tasks = FarmTask.objects.filter(tree, account=self.account)
        if tasks.filter(updated_at__gt=when).exists():
            return True
        return FarmFrame.objects.filter(task__in=tasks, finished_at__gt=when).exists()

    def frame_stored(self, path: str) -> StoredFile | None:
        """The frame at `path` of the output area as stored now (a regular file), or None."""
        return self.endpoint("output").stat(path)


def step(name: str, probe: Callable[[], str]) -> CheckStep:
    """A check step: the probe's message when it passes, its error when it raises."""
    try:
        return CheckStep(name, True, probe())
    except (OSError, ValueError, PathRefused) as exc:
        return CheckStep(name, False, str(exc) or type(exc).__name__)
