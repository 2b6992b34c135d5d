"""Running a job: the engine copies in its own thread; this thread records and publishes its progress.

All database writes and channel-layer sends happen in the task's thread, in batches: the copy
threads only count, under a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from transfers import progress
from transfers.engine.meter import RateMeter
from transfers.engine.runner import BytesSent, Event, FileFinished, FileTask, RunSummary, run_upload
from transfers.models import TransferItem, TransferJob
from transfers.services import farm_storage, job_start, job_transition

logger = logging.getLogger(__name__)

_TICK = 0.25  # seconds between progress offers (the throttle decides what is sent)
_DB_EVERY = 1.0  # seconds between batched item/counter writes
_DB_BATCH = 1000  # ...or this many finished files, whichever comes first
_ITEM_FIELDS = ["state", "size", "bytes_done", "checksum", "attempts", "error_code", "error"]


@dataclass
class _Recorder:
    """Thread-safe tally of engine events, written to the database and the channel layer in batches."""

    job: TransferJob
    expected: dict[int, int | None]
    lock: threading.Lock = field(default_factory=threading.Lock)
    meter: RateMeter = field(default_factory=RateMeter)
    finished: list[FileFinished] = field(default_factory=list)
    inflight: dict[int, int] = field(default_factory=dict)

    def __call__(self, event: Event) -> bool:
        job = self.job
        with self.lock:
            if isinstance(event, BytesSent):
                job.bytes_done += event.count
                self.inflight[event.item_id] = self.inflight.get(event.item_id, 0) + event.count
                return True
            sent = self.inflight.pop(event.item_id, 0)
            expected = self.expected.get(event.item_id) or 0
            if event.ok:
                job.files_done += 1
                job.bytes_total += event.size - expected  # the file may have changed since import
                job.bytes_done += event.size - sent
            else:
                job.files_failed += 1
                job.bytes_total -= expected  # the bar ends at 100% of what could arrive
                job.bytes_done -= sent
            self.finished.append(event)
        return True

    def message(self) -> progress.JobProgress:
        job = self.job
        with self.lock:
            self.meter.add(job.bytes_done)
            return progress.JobProgress(
                type="job.progress",
                job=job.pk,
                status=job.status,
                files_total=job.files_total,
                files_done=job.files_done,
                files_failed=job.files_failed,
                bytes_total=job.bytes_total,
                bytes_done=job.bytes_done,
                speed=round(self.meter.speed(), 1),
                eta=self.meter.eta(max(0, job.bytes_total - job.bytes_done)),
            )

    def backlog(self) -> int:
        with self.lock:
            return len(self.finished)

    def write(self) -> None:
        """Store finished items and the job's counters in one transaction."""
        job = self.job
        with self.lock:
            batch, self.finished = self.finished, []
            counters = {
                "files_done": job.files_done,
                "files_failed": job.files_failed,
                "bytes_done": job.bytes_done,
                "bytes_total": job.bytes_total,
            }
        items = [
            TransferItem(
                pk=e.item_id,
                state=TransferItem.State.DONE if e.ok else TransferItem.State.FAILED,
                size=e.size if e.ok else self.expected.get(e.item_id),
                bytes_done=e.size,
                checksum=e.checksum,
                attempts=1,
                error_code=e.error_code,
                error=e.error,
            )
            for e in batch
        ]
        with transaction.atomic():
            TransferItem.objects.bulk_update(items, _ITEM_FIELDS, batch_size=500)
            TransferJob.objects.filter(pk=job.pk).update(**counters)


def _final_status(job: TransferJob, summary: RunSummary) -> str:
    if summary.stopped:
        return TransferJob.Status.CANCELLED
    if job.files_failed == 0:
        return TransferJob.Status.COMPLETED
    if job.files_done == 0:
        return TransferJob.Status.FAILED
    return TransferJob.Status.COMPLETED_WITH_ERRORS


def job_run(*, job_id: int) -> None:
    """Run a queued upload job to its end. A job that is not queued (a redelivery) is left alone."""
    if not job_start(job_id=job_id):
        logger.info("job %s is not queued; nothing to do", job_id)
        return
    job = TransferJob.objects.select_related("account").get(pk=job_id)
    try:
        _run(job)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        job_transition(
            job_id=job_id,
            to=TransferJob.Status.FAILED,
            finished_at=timezone.now(),
            error=f"internal error ({type(exc).__name__}); see the worker log",
        )


def _run(job: TransferJob) -> None:
    storage = farm_storage(account=job.account).area("input")
    rows = job.items.filter(state=TransferItem.State.PENDING).values_list("pk", "local", "server", "size")
    tasks, expected = [], {}
    for pk, local, server, size in rows.iterator(chunk_size=2000):
        tasks.append(FileTask(item_id=pk, local=local, server=server))
        expected[pk] = size
    recorder = _Recorder(job=job, expected=expected)
    throttle = progress.ProgressThrottle(job.pk)
    outcome: dict[str, RunSummary | BaseException] = {}

    def engine() -> None:
        try:
            outcome["summary"] = run_upload(
                tasks,
                storage_root=storage,
                allowed_roots=settings.ALLOWED_LOCAL_ROOTS,
                report=recorder,
                pool_size=int(job.options.get("pool_size", 4)),
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the task's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=engine, name=f"rvweb-job-{job.pk}", daemon=True)
    thread.start()
    last_write = time.monotonic()
    while thread.is_alive():
        thread.join(_TICK)
        throttle.offer(recorder.message())
        if time.monotonic() - last_write >= _DB_EVERY or recorder.backlog() >= _DB_BATCH:
            recorder.write()
            last_write = time.monotonic()
    recorder.write()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    summary = outcome["summary"]
    assert isinstance(summary, RunSummary)
    status = _final_status(job, summary)
    job.status = status
    throttle.offer(recorder.message())
    throttle.flush()
    job_transition(job_id=job.pk, to=status, finished_at=timezone.now())
