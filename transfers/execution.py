"""Running a job: the engine works in its own thread; this thread records and publishes its progress.

The copy threads only count (engine.tracker, under a lock). Items and counters reach the database in
batches, after the storage was synced, so what the database calls done is on disk. The speed limit
is re-read from the job every second and applied live.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from redis.lock import Lock

from transfers import progress
from transfers.engine.events import Event, FileFinished, FileStarted
from transfers.engine.runner import Control, FileTask, RunSummary, TransferOptions, run_upload
from transfers.engine.storage import LocalStorage
from transfers.engine.tracker import Tracker
from transfers.ledger import DbLedger
from transfers.locks import job_lock
from transfers.models import TransferItem, TransferJob
from transfers.services import farm_storage, job_recount, job_start, job_transition

logger = logging.getLogger(__name__)

_TICK = 0.25  # seconds between progress offers (the throttle decides what is sent)
_DB_EVERY = 1.0  # seconds between batched item/counter writes and option re-reads
_DB_BATCH = 1000  # ...or this many finished files, whichever comes first
_ITEM_FIELDS = ["state", "size", "bytes_done", "checksum", "attempts", "error_code", "error"]


class _Recorder:
    """Engine events in, batched database writes and progress messages out."""

    def __init__(self, job: TransferJob, storage: LocalStorage, expected: dict[int, int | None]) -> None:
        self.job = job
        self.storage = storage
        self.expected = expected
        self.tracker = Tracker(
            files_total=job.files_total,
            bytes_total=job.bytes_total,
            expected=expected,
            files_done=job.files_done,
            files_skipped=job.files_skipped,
            files_failed=job.files_failed,
            bytes_done=job.bytes_done,
        )
        self._lock = threading.Lock()
        self._finished: list[FileFinished] = []
        self.started: set[int] = set()  # items that may have left a partial file

    def __call__(self, event: Event) -> None:
        self.tracker(event)
        if isinstance(event, FileStarted):
            with self._lock:
                self.started.add(event.item_id)
        elif isinstance(event, FileFinished):
            with self._lock:
                self._finished.append(event)
                self.started.discard(event.item_id)

    def backlog(self) -> int:
        with self._lock:
            return len(self._finished)

    def message(self, status: str) -> progress.JobProgress:
        snap = self.tracker.snapshot()
        return progress.JobProgress(
            type="job.progress",
            job=self.job.pk,
            status=status,
            files_total=snap.files_total,
            files_done=snap.files_done,
            files_failed=snap.files_failed,
            bytes_total=snap.bytes_total,
            bytes_done=snap.bytes_done,
            speed=round(snap.speed, 1),
            eta=snap.eta,
        )

    def write(self) -> None:
        """Store finished items and the job's counters in one transaction, once they are on disk."""
        with self._lock:
            batch, self._finished = self._finished, []
        snap = self.tracker.snapshot()
        if batch:
            self.storage.sync()
        items = [
            TransferItem(
                pk=e.item_id,
                state=(TransferItem.State.SKIPPED if e.skipped else TransferItem.State.DONE)
                if e.ok
                else TransferItem.State.FAILED,
                size=e.size if e.ok else self.expected.get(e.item_id),
                bytes_done=e.size,
                checksum=e.checksum,
                attempts=e.attempts,
                error_code=e.error_code,
                error=e.error,
            )
            for e in batch
        ]
        with transaction.atomic():
            TransferItem.objects.bulk_update(items, _ITEM_FIELDS, batch_size=500)
            TransferJob.objects.filter(pk=self.job.pk).update(
                files_done=snap.files_done,
                files_failed=snap.files_failed,
                files_skipped=snap.files_skipped,
                bytes_done=snap.bytes_done,
                bytes_total=snap.bytes_total,
            )


def transfer_options(options: dict[str, Any]) -> TransferOptions:
    return TransferOptions(pool_size=int(options.get("pool_size", 4)), attempts=int(options.get("upload_num", 3)))


# Statuses a user's action puts a running job in (queued: a pause and a resume between two looks).
_USER_STOPS = {TransferJob.Status.PAUSED, TransferJob.Status.CANCELLED, TransferJob.Status.QUEUED}


def _final_status(summary: RunSummary) -> str:
    if summary.files_failed == 0 and not summary.stopped:
        return TransferJob.Status.COMPLETED
    if summary.files_ok == 0:
        return TransferJob.Status.FAILED
    return TransferJob.Status.COMPLETED_WITH_ERRORS


def job_run(*, job_id: int) -> None:
    """Run a queued upload job to its end. A job that is not queued (a redelivery) is left alone.

    Raises JobBusy while an earlier run of the same job is still stopping (the task retries).
    """
    with job_lock(job_id) as lease:
        if not job_start(job_id=job_id):
            logger.info("job %s is not queued; nothing to do", job_id)
            return
        job_recount(job_id=job_id)  # a resumed or retried job starts from what its items say
        job = TransferJob.objects.select_related("account").get(pk=job_id)
        try:
            _run(job, lease)
        except Exception as exc:
            logger.exception("job %s failed", job_id)
            job_transition(
                job_id=job_id,
                to=TransferJob.Status.FAILED,
                finished_at=timezone.now(),
                error=f"internal error ({type(exc).__name__}); see the worker log",
            )


def _run(job: TransferJob, lease: Lock) -> None:
    storage = LocalStorage(farm_storage(account=job.account).area("input"))
    rows = job.items.filter(state=TransferItem.State.PENDING).values_list("pk", "local", "server", "size")
    tasks, expected = [], {}
    for pk, local, server, size in rows.iterator(chunk_size=2000):
        tasks.append(FileTask(item_id=pk, local=local, server=server))
        expected[pk] = size
    recorder = _Recorder(job, storage, expected)
    throttle = progress.ProgressThrottle(job.pk)
    control = Control(job.options.get("max_speed"))
    ledger = DbLedger(account_id=job.account_id, area="input") if job.options.get("is_db", True) else None
    outcome: dict[str, RunSummary | BaseException] = {}

    def engine() -> None:
        try:
            outcome["summary"] = run_upload(
                tasks,
                storage=storage,
                allowed_roots=settings.ALLOWED_LOCAL_ROOTS,
                report=recorder,
                options=transfer_options(job.options),
                control=control,
                ledger=ledger,
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the task's thread below
            outcome["error"] = exc
        finally:
            connection.close()  # the ledger's queries opened one in this thread

    thread = threading.Thread(target=engine, name=f"rvweb-job-{job.pk}", daemon=True)
    thread.start()
    last_write = time.monotonic()
    while thread.is_alive():
        thread.join(_TICK)
        throttle.offer(recorder.message(TransferJob.Status.RUNNING))
        if time.monotonic() - last_write >= _DB_EVERY or recorder.backlog() >= _DB_BATCH:
            recorder.write()
            _follow_user(job, control)
            lease.reacquire()  # renew the lease: this run is alive
            last_write = time.monotonic()
    recorder.write()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    summary = outcome["summary"]
    assert isinstance(summary, RunSummary)
    if summary.stopped and control.reason in _USER_STOPS:
        # The user's transition already happened (and was published); only tidy up after a cancel.
        if control.reason == TransferJob.Status.CANCELLED:
            for item in job.items.filter(pk__in=recorder.started).values_list("server", flat=True):
                storage.discard_partial(item)
        throttle.flush()
        return
    status = _final_status(summary)
    throttle.offer(recorder.message(status))
    throttle.flush()
    job_transition(job_id=job.pk, to=status, finished_at=timezone.now(), error=summary.stop_reason if summary.stopped else "")


def _follow_user(job: TransferJob, control: Control) -> None:
    """Apply what a user changed since the last look: the speed limit, a pause, a cancel."""
    row = TransferJob.objects.filter(pk=job.pk).values_list("options", "status").first()
    if row is None:
        control.request_stop(TransferJob.Status.CANCELLED)  # the job was deleted
        return
    options, status = row
    if status != TransferJob.Status.RUNNING:
        # Only this run moves the job on from running: any other status is a user's pause or cancel
        # (or a pause and a resume so quick that we only see "queued").
        control.request_stop(status)
    if options.get("max_speed") != job.options.get("max_speed"):
        control.set_max_speed(options.get("max_speed"))
        job.options = options


def job_discard_partials(*, job_id: int) -> None:
    """Remove the partial files a cancelled (paused) job left; finished files stay."""
    job = TransferJob.objects.select_related("account").filter(pk=job_id, status=TransferJob.Status.CANCELLED).first()
    if job is None:
        return
    storage = LocalStorage(farm_storage(account=job.account).area("input"))
    for server in job.items.filter(state=TransferItem.State.PENDING).values_list("server", flat=True).iterator(chunk_size=2000):
        storage.discard_partial(server)
