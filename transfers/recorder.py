"""The recorder of a running job: engine events in, batched database writes and progress messages out.

The copy threads only count (engine.tracker, under a lock). Finished items and the job's counters reach
the database in short batches, after the destinations were synced, so what the database calls done is
on disk. Memory stays bounded whatever the job's size (see Recorder).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from transfers import metrics, progress
from transfers.engine.events import Event, FileFinished, FileRetrying
from transfers.engine.tracker import Snapshot, Tracker
from transfers.models import TransferItem, TransferJob
from transfers.progress import JobFigures

_DB_BATCH = 1000  # ...or this many finished files, whichever comes first
_ACTIVE_SHOWN = 5
_BACKLOG_MAX = 5 * _DB_BATCH  # finished files not yet stored before the engine waits for the database
_ITEM_UPDATE = (
    f"UPDATE {TransferItem._meta.db_table} SET state = %s, size = %s, bytes_done = %s, checksum = %s, "  # noqa: S608 - ours
    "attempts = %s, error_code = %s, error = %s WHERE id = %s"
)
# A file under way keeps the bytes it holds so far, unless it finished meanwhile (the state guard).
_PARTIAL_UPDATE = f"UPDATE {TransferItem._meta.db_table} SET bytes_done = %s WHERE id = %s AND state = 'pending'"  # noqa: S608


class RunSuperseded(Exception):
    """Another run has taken the job over (TransferJob.run_token is no longer this run's): this one
    stops at once and writes nothing more, neither items nor counters nor an end."""


class Recorder:
    """Engine events in, batched database writes and progress messages out.

    Memory stays bounded whatever the job's size: only items in flight (handed to the engine, not yet
    stored) are remembered, and an engine that gets _BACKLOG_MAX finished files ahead of the
    database waits for it, instead of piling up results and then storing them in one long write.
    """

    def __init__(self, job: TransferJob, storages: list[Any]) -> None:
        self.job = job
        self.run_token = job.run_token  # every write is fenced by it (see _store)
        self.storages = storages
        self.names: dict[int, str] = {}  # in-flight item -> its server path (names the active files)
        self.most_tracked = 0  # the high-water mark of in-flight items (the tests check the bound)
        self.stopped = threading.Event()  # the run is over: an engine waiting for room goes on
        self.status: str = TransferJob.Status.RUNNING  # as last read from the job row
        # Bytes an earlier run left in the partial files of pending items (job_recount counted them in
        # bytes_done). The engine reports them again as it resumes each file; until it has, they are
        # shown from here, so the bar neither falls back at a resume nor counts them twice.
        self.carried: dict[int, int] = dict(
            job.items.filter(state=TransferItem.State.PENDING, bytes_done__gt=0).values_list("pk", "bytes_done")
        )
        self.sent_before = job.bytes_sent
        self.tracker = Tracker(
            files_total=job.files_total,
            bytes_total=job.bytes_total,
            files_done=job.files_done,
            files_skipped=job.files_skipped,
            files_failed=job.files_failed,
            bytes_done=max(0, job.bytes_done - sum(self.carried.values())),
        )
        self.expected = self.tracker.expected  # in-flight item -> its size as the manifest said (shared)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._finished: list[FileFinished] = []
        self.tally = metrics.Tally()  # failures and retries by class, for the metrics

    def add_destination(self, destination: Any) -> None:
        """A destination the engine writes into: synced before its finished files are stored."""
        with self._lock:
            if destination not in self.storages:
                self.storages = [*self.storages, destination]

    def settle(self, row: TransferJob) -> None:
        """Take the counts the database holds (recounted from the items) once the engine is done."""
        with self._lock:
            self.tracker.settle(
                files_done=row.files_done,
                files_failed=row.files_failed,
                files_skipped=row.files_skipped,
                bytes_done=row.bytes_done,
                bytes_total=row.bytes_total,
            )
            self.carried.clear()

    def grow(self, *, files: int, size: int) -> None:
        """Items added while the job runs (a download's new outputs): the totals grow with them."""
        with self._lock:
            self.tracker.grow(files=files, size=size)

    def track(self, item_id: int, server: str, size: int | None) -> None:
        """An item handed to the engine (from its thread); forgotten once its result is stored."""
        with self._lock:
            self.names[item_id] = server
            self.expected[item_id] = size

    def sizes(self) -> dict[int, int | None]:
        """The expected size of each item handed to the engine and not stored yet (None: not known)."""
        with self._lock:
            return dict(self.expected)

    def in_flight(self) -> set[int]:
        """The items handed to the engine whose results are not stored yet."""
        with self._lock:
            return set(self.names)
        self.most_tracked = max(self.most_tracked, len(self.names))

    def __call__(self, event: Event) -> None:
        if isinstance(event, FileFinished):
            with self._room:  # the tracker and `carried` change together: a snapshot sees both or neither
                self.tracker(event)
                self.carried.pop(event.item_id, None)
                self._finished.append(event)
                while len(self._finished) >= _BACKLOG_MAX and not self.stopped.is_set():
                    self._room.wait(0.5)
        else:
            if isinstance(event, FileRetrying):
                self.tally.add("retries", event.error_code)
            self.tracker(event)

    def report_many(self, events: Sequence[FileFinished]) -> None:
        """Many finished files at once (the engine's unchanged files, a batch at a time)."""
        with self._room:
            self.tracker.report_many(events)
            for event in events:
                self.carried.pop(event.item_id, None)
            self._finished.extend(events)
            while len(self._finished) >= _BACKLOG_MAX and not self.stopped.is_set():
                self._room.wait(0.5)

    def snapshot(self) -> tuple[Snapshot, JobFigures]:
        """The tracker's snapshot and the figures the page shows for it (with the carried partial bytes)."""
        with self._lock:
            snap = self.tracker.snapshot()
            carried = dict(self.carried)
        counted = {f.item_id: f.done for f in snap.active}
        view = TransferJob(
            status=self.status,
            files_total=snap.files_total,
            files_done=snap.files_done,
            files_skipped=snap.files_skipped,
            files_failed=snap.files_failed,
            bytes_total=snap.bytes_total,
            bytes_done=snap.bytes_done + sum(max(0, b - counted.get(item, 0)) for item, b in carried.items()),
            bytes_sent=self.sent_before + self.tracker.bytes_sent,
            figures_at=timezone.now(),
        )
        return snap, view.figures()

    def backlog(self) -> int:
        with self._lock:
            return len(self._finished)

    def message(self) -> progress.JobProgress:
        snap, figures = self.snapshot()
        return progress.JobProgress(
            type="job.progress",
            job=self.job.pk,
            **figures,
            speed=round(snap.speed, 1),
            eta=snap.eta,
            active=[
                progress.ActiveFile(name=PurePosixPath(name).name, done=f.done, size=f.size)
                for f in snap.active[:_ACTIVE_SHOWN]
                if (name := self.names.get(f.item_id)) is not None
            ],
        )

    def write(self) -> None:
        """Store finished items and the job's counters, _DB_BATCH items per short transaction (a
        whole backlog in one would hold SQLite's write lock for minutes), once they are on disk.
        What fails stays queued for the next try: nothing finished is forgotten."""
        while True:
            started = time.monotonic()
            with self._lock:
                batch = self._finished[:_DB_BATCH]
            self._store(batch)
            with self._room:
                del self._finished[: len(batch)]
                more = bool(self._finished)
                self._room.notify_all()
                for event in batch:  # under the lock: in_flight() copies `names` from the engine's thread
                    self.names.pop(event.item_id, None)
                    self.expected.pop(event.item_id, None)
            if not more:
                return
            time.sleep(min(0.2, time.monotonic() - started))  # let a login or a Cancel take the lock

    def _store(self, batch: list[FileFinished]) -> None:
        snap, figures = self.snapshot()
        with self._lock:
            carried = dict(self.carried)
        if batch:
            for storage in list(self.storages):
                storage.sync()
        rows = [
            (
                (TransferItem.State.SKIPPED if e.skipped else TransferItem.State.DONE) if e.ok else TransferItem.State.FAILED,
                e.size if e.ok else self.expected.get(e.item_id),
                e.size,
                e.checksum,
                e.attempts,
                e.error_code,
                e.error,
                e.item_id,
            )
            for e in batch
        ]
        # The files under way keep what they hold so far: a resumed run starts its figures from there.
        partials = [(max(f.done, carried.get(f.item_id, 0)), f.item_id) for f in snap.active if f.item_id in self.names]
        with transaction.atomic():
            # The fence, first: the job row is held from here to the commit, so a run taking the job
            # over (services.job_start) waits for this batch, and a batch after a takeover stores nothing.
            # Without it a run that lost its lease overwrote items and counters the new run had stored.
            owned = TransferJob.objects.filter(pk=self.job.pk, run_token=self.run_token).update(
                files_done=figures["files_done"],
                files_failed=figures["files_failed"],
                files_skipped=figures["files_skipped"],
                bytes_done=figures["bytes_done"],
                bytes_total=figures["bytes_total"],
                bytes_sent=figures["bytes_sent"],
                figures_at=_measured_at(figures),
            )
            if not owned:
                if TransferJob.objects.filter(pk=self.job.pk).exists():
                    raise RunSuperseded(f"job {self.job.pk}: another run has taken it over")
                return  # deleted meanwhile: nothing left to store
            with db_connection.cursor() as cursor:
                # One prepared UPDATE per row: ~118,000 rows/s on SQLite, where bulk_update's CASE per field
                # managed ~520 (the 5-7 minute jumps of issue 6: its backlog grew faster than it was stored).
                if rows:
                    cursor.executemany(_ITEM_UPDATE, rows)
                if partials:
                    cursor.executemany(_PARTIAL_UPDATE, partials)
        for event in batch:
            if not event.ok:
                self.tally.add("failures", event.error_code)
        self.tally.flush()


def _measured_at(figures: JobFigures) -> datetime | None:
    at = figures["figures_at"]
    return datetime.fromtimestamp(at, tz=UTC) if at is not None else None
