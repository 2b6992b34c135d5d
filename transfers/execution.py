"""Running a job: the engine works in its own thread; this thread records and publishes its progress.

The copy threads only count (engine.tracker, under a lock). Items and counters reach the database in
batches, after the storage was synced, so what the database calls done is on disk. Every second the
job row is read back: a new speed limit applies at once, and any status other than "running" (a
user's pause or cancel) stops the run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from transfers import progress
from transfers.engine.events import Event, FileFinished
from transfers.engine.paths import PathMap, PathRefused
from transfers.engine.runner import Control, FileTask, RunSummary, TransferOptions, run_upload
from transfers.engine.storage import LocalStorage
from transfers.engine.tracker import Snapshot, Tracker
from transfers.ledger import DbLedger
from transfers.locks import Lease, job_lock
from transfers.models import TransferItem, TransferJob
from transfers.progress import JobFigures
from transfers.services import (
    audit_record,
    farm_storage,
    job_audit_end,
    job_publish_state,
    job_recount,
    job_start,
    job_transition,
)

logger = logging.getLogger(__name__)

_TICK = 0.25  # seconds between progress offers (the throttle decides what is sent)
_DB_EVERY = 1.0  # seconds between batched item/counter writes and looks at the job row
_DB_BATCH = 1000  # ...or this many finished files, whichever comes first
_DB_PATIENCE = 30  # consecutive failed writes (about as many seconds) before the run gives up
_ACTIVE_SHOWN = 5
_ITEM_FIELDS = ["state", "size", "bytes_done", "checksum", "attempts", "error_code", "error"]


class _Recorder:
    """Engine events in, batched database writes and progress messages out."""

    def __init__(
        self, job: TransferJob, storage: LocalStorage, tasks: dict[int, FileTask], expected: dict[int, int | None]
    ) -> None:
        self.job = job
        self.storage = storage
        self.tasks = tasks
        self.expected = expected
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
            expected=expected,
            files_done=job.files_done,
            files_skipped=job.files_skipped,
            files_failed=job.files_failed,
            bytes_done=max(0, job.bytes_done - sum(self.carried.values())),
        )
        self._lock = threading.Lock()
        self._finished: list[FileFinished] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, FileFinished):
            with self._lock:  # the tracker and `carried` change together: a snapshot sees both or neither
                self.tracker(event)
                self.carried.pop(event.item_id, None)
                self._finished.append(event)
        else:
            self.tracker(event)

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
                progress.ActiveFile(name=PurePosixPath(self.tasks[f.item_id].server).name, done=f.done, size=f.size)
                for f in snap.active[:_ACTIVE_SHOWN]
                if f.item_id in self.tasks
            ],
        )

    def write(self) -> None:
        """Store finished items and the job's counters in one transaction, once they are on disk."""
        with self._lock:
            batch, self._finished = self._finished, []
        try:
            self._store(batch)
        except BaseException:
            with self._lock:
                self._finished[:0] = batch  # kept for the next try: nothing finished is forgotten
            raise

    def _store(self, batch: list[FileFinished]) -> None:
        snap, figures = self.snapshot()
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
        # The files under way keep what they hold so far: a resumed run starts its figures from there.
        partials = [
            TransferItem(pk=f.item_id, bytes_done=max(f.done, self.carried.get(f.item_id, 0)))
            for f in snap.active
            if f.item_id in self.tasks
        ]
        with transaction.atomic():
            TransferItem.objects.bulk_update(items, _ITEM_FIELDS, batch_size=500)
            TransferItem.objects.filter(state=TransferItem.State.PENDING).bulk_update(partials, ["bytes_done"], batch_size=500)
            TransferJob.objects.filter(pk=self.job.pk).update(
                files_done=figures["files_done"],
                files_failed=figures["files_failed"],
                files_skipped=figures["files_skipped"],
                bytes_done=figures["bytes_done"],
                bytes_total=figures["bytes_total"],
                bytes_sent=figures["bytes_sent"],
                figures_at=_measured_at(figures),
            )


def _measured_at(figures: JobFigures) -> datetime | None:
    at = figures["figures_at"]
    return datetime.fromtimestamp(at, tz=UTC) if at is not None else None


def transfer_options(options: dict[str, Any]) -> TransferOptions:
    return TransferOptions(pool_size=int(options.get("pool_size", 4)), attempts=int(options.get("upload_num", 3)))


def _final_status(figures: JobFigures, summary: RunSummary) -> tuple[str, str]:
    """The status and error a run that ended by itself leaves, from the whole job's counts (earlier runs
    of a resumed job included), not this run's alone.

    Files never tried are not failures: a run that stopped with files still to send (a full
    destination, say) failed, keeps them pending and says so; Retry sends them, and the failed ones.
    """
    reason = summary.stop_reason if summary.stopped else ""
    not_sent = figures["files_not_sent"]
    if not_sent:
        advice = "free space and press Retry" if reason.startswith("destination full") else "press Retry to send them"
        files = "file" if not_sent == 1 else "files"
        return TransferJob.Status.FAILED, f"{reason or 'the run ended early'}: {not_sent} {files} not sent; {advice}"
    if figures["files_failed"] == 0:
        return TransferJob.Status.COMPLETED, reason
    if figures["files_done"] == 0:
        return TransferJob.Status.FAILED, reason
    return TransferJob.Status.COMPLETED_WITH_ERRORS, reason


class RunInterrupted(Exception):
    """The run cannot go on for a reason outside the job: its lease is lost (Redis went away) or the
    database stayed away beyond patience. The job is not at fault and is recovered, not failed."""


# Failures of the services around a run, not of the job: the run stops (partial files kept) and the
# job stays "running" until recovery (transfers.tasks) runs it again from its byte offsets.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    RunInterrupted,
    OperationalError,  # the database: gone, restarted, locked beyond its timeout
    InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
    BrokerError,
)


def job_run(*, job_id: int) -> None:
    """Run a queued upload job to its end. A finished job (a redelivery) is left alone.

    A job still marked running whose lease we now hold lost its worker: it is taken over and resumed.
    Raises JobBusy while another run of the same job is still going or stopping (the task retries).
    A run interrupted by infrastructure (INFRASTRUCTURE_ERRORS) leaves the job running for recovery;
    only other exceptions, genuine bugs, fail it.
    """
    with job_lock(job_id) as lease:
        if not job_start(job_id=job_id):
            logger.info("job %s is not queued; nothing to do", job_id)
            return
        try:
            job_recount(job_id=job_id)  # a resumed or retried job starts from what its items say
            job = TransferJob.objects.select_related("account").defer("account__access_key").get(pk=job_id)
            _run(job, lease)
        except INFRASTRUCTURE_ERRORS as exc:
            logger.warning("job %s interrupted (%s: %s); left running for recovery to resume", job_id, type(exc).__name__, exc)
        except Exception as exc:
            logger.exception("job %s failed", job_id)
            error = f"internal error ({type(exc).__name__}); see the worker log"
            if job_transition(job_id=job_id, to=TransferJob.Status.FAILED, finished_at=timezone.now(), error=error):
                audit_record(
                    actor=None, action="job.finish", target=TransferJob(pk=job_id), outcome="failed", after={"error": error}
                )


def _run(job: TransferJob, lease: Lease) -> None:
    storage = LocalStorage(
        farm_storage(account=job.account).area_root("input"), label=f'input storage of farm account "{job.account.name}"'
    )
    rows = job.items.filter(state=TransferItem.State.PENDING).values_list("pk", "local", "server", "size")
    tasks, expected = {}, {}
    for pk, local, server, size in rows.iterator(chunk_size=2000):
        tasks[pk] = FileTask(item_id=pk, local=local, server=server)
        expected[pk] = size
    recorder = _Recorder(job, storage, tasks, expected)
    throttle = progress.ProgressThrottle(job.pk)
    control = Control(job.options.get("max_speed"))
    ledger = DbLedger(account_id=job.account_id, area="input") if job.options.get("is_db", True) else None
    outcome: dict[str, RunSummary | BaseException] = {}

    def engine() -> None:
        try:
            outcome["summary"] = run_upload(
                tasks.values(),
                storage=storage,
                allowed_roots=settings.ALLOWED_LOCAL_ROOTS,
                report=recorder,
                options=transfer_options(job.options),
                control=control,
                ledger=ledger,
                path_map=PathMap(job.account.path_map),
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the task's thread below
            outcome["error"] = exc
        finally:
            db_connection.close()  # the ledger's queries opened one in this thread

    thread = threading.Thread(target=engine, name=f"rvweb-job-{job.pk}", daemon=True)
    thread.start()
    try:
        _watch(job, thread, recorder, throttle, control, lease)
    finally:
        control.request_stop("the worker stopped watching")  # no effect once the engine is done
        thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    summary = outcome["summary"]
    assert isinstance(summary, RunSummary)
    _finish(job, recorder, throttle, summary)


def _watch(
    job: TransferJob,
    thread: threading.Thread,
    recorder: _Recorder,
    throttle: progress.ProgressThrottle,
    control: Control,
    lease: Lease,
) -> None:
    """Until the engine is done and its last results are stored: offer progress, write batches,
    follow the user, mind the lease. A database that fails is retried for ~_DB_PATIENCE seconds,
    keeping the batch; losing the lease stops everything at once."""
    last_write, failures = time.monotonic(), 0
    while True:
        alive = thread.is_alive()
        if alive:
            thread.join(_TICK)
        if lease.lost.is_set():
            control.request_stop("lost the job's lease")
            raise RunInterrupted(f"job {job.pk}: lost its lease; another run may have taken it over")
        if alive and recorder.status == TransferJob.Status.RUNNING:
            throttle.offer(recorder.message())
        if alive and time.monotonic() - last_write < _DB_EVERY and recorder.backlog() < _DB_BATCH:
            continue
        last_write = time.monotonic()
        try:
            recorder.write()
            if not alive:
                return  # the engine is done and everything it finished is stored
            _follow_user(job, recorder, control)
            failures = 0
        except DatabaseError:
            failures += 1  # a locked SQLite or a database restart: keep the batch, try again
            logger.warning("job %s: database write failed (%d in a row)", job.pk, failures, exc_info=True)
            if failures >= _DB_PATIENCE:
                control.request_stop("the database is unavailable")
                raise
            if not alive:
                lease.lost.wait(1.0)  # pace the retries; wakes at once if the lease is lost


def _finish(job: TransferJob, recorder: _Recorder, throttle: progress.ProgressThrottle, summary: RunSummary) -> None:
    """End the run: its own final transition, or, when a user paused or cancelled it, tell the page
    the counters it stopped with (stored by the last write). Either way one job.finish event."""
    current = TransferJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()
    if current is None:
        throttle.discard()
        return
    if current != TransferJob.Status.RUNNING:
        # A user paused or cancelled it. The held progress message describes the run before that. A
        # cancelled job's partial files are removed by the discard_partials task once this run lets go.
        throttle.discard()
        job_stopped(job_id=job.pk, status=current)
        return
    _, figures = recorder.snapshot()
    status, error = _final_status(figures, summary)
    recorder.status = status
    throttle.offer(recorder.message())
    throttle.flush()
    with transaction.atomic():
        if job_transition(job_id=job.pk, to=status, finished_at=timezone.now(), error=error):
            job_audit_end(job_id=job.pk, outcome=status, error=error)


def job_stopped(*, job_id: int, status: str) -> None:
    """A run stopped by a user's pause or cancel has ended: a cancelled job is finished now (with the
    counters already stored), the page is told the final state, and the audit trail gets its end."""
    outcome = status if status == TransferJob.Status.CANCELLED else TransferJob.Status.PAUSED  # or paused and resumed
    with transaction.atomic():
        if status == TransferJob.Status.CANCELLED:
            # Only the first to finish a cancelled job writes its end (job_cancel did, for a job with no run).
            ended = TransferJob.objects.filter(pk=job_id, status=status, finished_at__isnull=True).update(
                finished_at=timezone.now()
            )
            if not ended:
                return
        job_audit_end(job_id=job_id, outcome=outcome)
        transaction.on_commit(lambda: job_publish_state(job_id=job_id, status=status))


def _follow_user(job: TransferJob, recorder: _Recorder, control: Control) -> None:
    """Apply what a user changed since the last look: the speed limit, a pause, a cancel."""
    row = TransferJob.objects.filter(pk=job.pk).values_list("options", "status").first()
    if row is None:
        recorder.status = TransferJob.Status.CANCELLED
        control.request_stop("the job was deleted")
        return
    options, status = row
    if status != TransferJob.Status.RUNNING:
        # Only this run moves the job on from running: any other status is a user's pause or cancel
        # (or a pause and a resume so quick that we only see "queued").
        recorder.status = status
        control.request_stop(f"{status} by a user")
    if options.get("max_speed") != job.options.get("max_speed"):
        control.set_max_speed(options.get("max_speed"))
        job.options = options


def job_discard_partials(*, job_id: int) -> None:
    """Remove the partial files of a cancelled job, once no run holds it; finished files stay."""
    with job_lock(job_id):
        job = TransferJob.objects.select_related("account").defer("account__access_key").filter(pk=job_id).first()
        if job is None or job.status != TransferJob.Status.CANCELLED:
            return
        if job.finished_at is None:
            job_stopped(job_id=job_id, status=job.status)  # its run died before it could say it ended
        storage = LocalStorage(farm_storage(account=job.account).area_root("input"))
        unfinished = [TransferItem.State.PENDING, TransferItem.State.FAILED]  # a failed file may have left a partial
        for server in job.items.filter(state__in=unfinished).values_list("server", flat=True).iterator(chunk_size=2000):
            with contextlib.suppress(PathRefused):  # a path refused in storage (its item failed so) has no partial
                storage.discard_partial(server)
