"""What a job kind works with while its job runs, in the engine's thread (kinds.base.RunContext): the
endpoints of each leg, the engine over the job's pending items, new items found on the way (a
download's outputs), waiting between polls, and the watcher's notes for the page.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from transfers import downloads, progress
from transfers.engine.endpoints import Endpoint, LocalFiles, LocalFolder, StoredFile
from transfers.engine.paths import PathMap, PathRefused
from transfers.engine.runner import Control, Move, RunSummary, Task, TransferOptions
from transfers.farm import connector_for
from transfers.farm.base import LegRequest, Route
from transfers.kinds.base import Leg, NewItem
from transfers.kinds.options import Download, Transfer
from transfers.ledger import DbLedger
from transfers.models import TransferItem, TransferJob
from transfers.notifications import notify_tasks_end
from transfers.recorder import Recorder, RunSuperseded

_PAGE = 2000  # pending items read per query
logger = logging.getLogger(__name__)


def transfer_options(options: Transfer) -> TransferOptions:
    return TransferOptions(pool_size=options.pool_size, attempts=options.attempts)


class JobRun:
    """One run of one job (kinds.base.RunContext)."""

    def __init__(self, job: TransferJob, recorder: Recorder, control: Control, options: Transfer) -> None:
        self.job = job
        self.recorder = recorder
        self.control = control
        self.options = options
        self.connector = connector_for(job.account)
        self._taken: set[str] | None = None
        self._locals: set[str] | None = None
        self._next_number: int | None = None
        self._local: LocalFolder | None = None
        self._areas: dict[str, Endpoint | None] = {}
        self._ended_told: set[int] | None = None  # watched tasks whose end was notified (in the stored watch)

    # --- endpoints ----------------------------------------------------------------------------------

    def area(self, name: str) -> Endpoint | None:
        """The farm account's storage area `name` as an endpoint rvweb reads and writes itself, or None
        when the farm's own transport moves its files (FarmConnector.files_here)."""
        if name not in self._areas:
            self._areas[name] = self.connector.files_here(name)
        return self._areas[name]

    def close(self) -> None:
        """Release the endpoints the run opened (a remote storage's connections, descriptors)."""
        for endpoint in [*self._areas.values(), self._local]:
            if endpoint is not None:
                with contextlib.suppress(Exception):  # closing never fails a run that has ended
                    endpoint.close()
        self._areas, self._local = {}, None
        self.connector.close()

    def local_folder(self) -> LocalFolder:
        """A download's local folder (created under its allowed root on first use)."""
        if self._local is None:
            assert isinstance(self.options, Download)
            roots = [Path(root) for root in settings.ALLOWED_LOCAL_ROOTS]
            root = downloads.local_root(self.options, roots, create=True)
            try:
                self._local = LocalFolder(root, label=f"local folder {root}", where="the local folder", allowed_roots=roots)
            except (PathRefused, OSError) as exc:  # changed since its check (a symlink, another filesystem...)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise downloads.DownloadRefused(f"local_path: cannot open the local folder {str(root)!r}: {reason}") from None
        return self._local

    # --- the engine ---------------------------------------------------------------------------------

    def transfer(self, leg: Leg) -> RunSummary:
        """The leg's pending items, moved by the farm's connector (farm.base.FarmConnector.transfer)."""
        logger.debug("job %s: %s leg in %s through the %s connector", self.job.pk, leg.direction, leg.area, self.connector.kind)
        return self.connector.transfer(
            LegRequest(
                job_id=self.job.pk,
                area=leg.area,
                direction=leg.direction,
                tasks=self._pending(leg),
                job_options=self.options,
                engine=transfer_options(self.options),
                report=self.recorder,
                control=self.control,
                local_files=lambda: LocalFiles(list(settings.ALLOWED_LOCAL_ROOTS), PathMap(self.job.account.path_map)),
                local_folder=self.local_folder,
                ledger=lambda: self._ledger(leg),
                destination_added=self.recorder.add_destination,
                note_route=self.note_route,
                sizes=self.recorder.sizes,
            )
        )

    def _ledger(self, leg: Leg) -> Any:
        if not leg.ledger:
            return None
        if leg.direction == "download":
            return downloads.LocalFilesLedger(self.local_folder())  # a download always writes there
        return DbLedger(account_id=self.job.account_id, area=leg.area)

    def note_route(self, route: Route) -> None:
        """Keep how this run reaches the farm on the job, for its page (fenced like every write of a run)."""
        TransferJob.objects.filter(pk=self.job.pk, run_token=self.recorder.run_token).update(route=route.as_json())

    def _pending(self, leg: Leg) -> Iterator[Task]:
        """The job's pending items in the leg's area, _PAGE at a time in primary-key order (never all at once).

        Not those an earlier transfer of this run (a watcher's last round) handed to the engine: finished,
        but maybe not stored yet, they still read as pending and would be sent again (or, with a ledger,
        count as "unchanged"). Taken before the query: an item stored since then reads as done."""
        handed = self.recorder.in_flight()
        pending = TransferItem.objects.filter(job_id=self.job.pk, state=TransferItem.State.PENDING, area=leg.area)
        last = 0
        while rows := list(pending.filter(pk__gt=last).order_by("pk").values_list("pk", "local", "server", "size")[:_PAGE]):
            for pk, local, server, size in rows:
                if pk in handed:
                    continue
                self.recorder.track(pk, server, size)
                if leg.direction == "download":
                    yield Move(item_id=pk, source=server, destination=local)
                else:
                    yield Move(item_id=pk, source=local, destination=server)
            last = rows[-1][0]

    # --- items found on the way ---------------------------------------------------------------------

    @property
    def taken(self) -> set[str]:
        if self._taken is None:
            self._taken = set(TransferItem.objects.filter(job_id=self.job.pk).values_list("server", flat=True))
        return self._taken

    def add_items(self, items: list[NewItem], *, conflict: str = "overwrite") -> int:
        items = [item for item in items if item.server not in self.taken]
        if not items:
            return 0
        if self._next_number is None:
            self._next_number = (TransferItem.objects.filter(job_id=self.job.pk).aggregate(n=Max("number"))["n"] or 0) + 1
        if conflict == "keep_both":
            items = self._beside_existing(items)
        items = self._apart(items, keep_both=conflict == "keep_both")
        rows = []
        for item in items:
            rows.append(
                TransferItem(
                    job_id=self.job.pk,
                    number=self._next_number,
                    local=item.local,
                    server=item.server,
                    size=item.size,
                    area="output",
                )
            )
            self._next_number += 1
        added_bytes = sum(item.size or 0 for item in items)
        with transaction.atomic():
            # Fenced as the recorder's writes are: a run another has taken over adds nothing.
            owned = TransferJob.objects.filter(pk=self.job.pk, run_token=self.recorder.run_token).update(
                files_total=F("files_total") + len(rows), bytes_total=F("bytes_total") + added_bytes
            )
            if not owned:
                raise RunSuperseded(f"job {self.job.pk}: another run has taken it over")
            TransferItem.objects.bulk_create(rows, batch_size=1000)
        self.recorder.grow(files=len(rows), size=added_bytes)
        self.taken.update(item.server for item in items)
        return len(rows)

    def _apart(self, items: list[NewItem], *, keep_both: bool) -> list[NewItem]:
        """Two outputs never share a local name in one job (download_filename_format "false" with two tasks of
        one scene): the later one goes beside the earlier, as `name (2).ext`, never over it."""
        if self._locals is None:
            self._locals = set(TransferItem.objects.filter(job_id=self.job.pk).values_list("local", flat=True))
        placed: list[NewItem] = []
        for item in items:
            name = item.local
            if name in self._locals:
                name = downloads.free_name(self.local_folder(), name, also_taken=self._locals, on_disk=keep_both)
                logger.warning(
                    "job %s: %s and an earlier output share the local name %s: written as %s",
                    self.job.pk,
                    item.server,
                    item.local,
                    name,
                )
            self._locals.add(name)
            placed.append(NewItem(server=item.server, local=name, size=item.size))
        return placed

    def _beside_existing(self, items: list[NewItem]) -> list[NewItem]:
        """keep_both: an output whose local name holds other bytes goes beside it, as `name (2).ext`."""
        local, source = self.local_folder(), self.area("output")
        placed: list[NewItem] = []
        chosen: set[str] = set()
        for item in items:
            name = item.local
            there = local.stat(name)
            # A folder (or anything not a file) at the name is kept too: the frame goes beside it.
            other = there is None and os.path.lexists(local.native_path(name) or "")
            # A farm whose bytes rvweb cannot read here (source None): a local file at the name is taken as other bytes.
            differs = there is not None and (source is None or downloads.identical(source, item.server, local, name) is None)
            if name in chosen or other or differs:
                name = downloads.free_name(local, name, also_taken=chosen)
            chosen.add(name)
            placed.append(NewItem(server=item.server, local=name, size=item.size))
        return placed

    def list_output(self, prefix: str) -> list[StoredFile]:
        return self.connector.list_output(prefix)

    # --- waiting and telling ------------------------------------------------------------------------

    def wait(self, seconds: float, *, wake: Callable[[], bool] | None = None) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.control.stop.wait(min(0.5, left)):
                return False
            if wake is not None and wake():
                return True
        return not self.control.stop.is_set()

    def note_watch(self, watches: list[Any], *, next_poll: float, error: str = "") -> None:
        state: progress.WatchState = {
            "tasks": [
                {
                    "task_id": w.task_id,
                    "status": w.status,
                    "ended": w.ended,
                    "frames_expected": w.frames_expected,
                    "outputs_seen": w.outputs_seen,
                    "settling": len(w.sizes),
                }
                for w in watches
            ],
            "next_poll_at": (timezone.now() + timedelta(seconds=next_poll)).isoformat(),
            "error": error,
        }
        if self._ended_told is None:  # a run taking over: the ends its predecessor stored were told already
            stored = TransferJob.objects.filter(pk=self.job.pk).values_list("watch", flat=True).first() or {}
            self._ended_told = {task["task_id"] for task in stored.get("tasks", []) if task.get("ended")}
        newly = [w for w in watches if w.ended and w.task_id not in self._ended_told]
        TransferJob.objects.filter(pk=self.job.pk).update(watch=state)
        progress.publish_watch(self.job.pk, state, team_id=self.job.account.team_id)
        if newly:
            self._ended_told.update(watch.task_id for watch in newly)
            notify_tasks_end(job_id=self.job.pk, ended=[(w.task_id, bool(getattr(w, "failed", False))) for w in newly])
