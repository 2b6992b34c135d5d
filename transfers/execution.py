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
import uuid
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from transfers import budget, kinds, progress
from transfers.downloads import DownloadRefused
from transfers.engine.paths import PathRefused
from transfers.engine.runner import Control, RunSummary
from transfers.farm import FarmError, TransportUnavailable, UnsupportedAccount
from transfers.kinds.options import Transfer
from transfers.locks import Lease, job_lock
from transfers.models import TransferItem, TransferJob
from transfers.progress import JobFigures
from transfers.recorder import _DB_BATCH, Recorder, RunSuperseded
from transfers.run_context import JobRun
from transfers.samples import Sampler
from transfers.services import (
    audit_record,
    job_audit_end,
    job_publish_state,
    job_recount,
    job_start,
    job_transition,
)

logger = logging.getLogger(__name__)

_TICK = 0.25  # seconds between progress offers (the throttle decides what is sent)
_DB_EVERY = 1.0  # seconds between batched item/counter writes and looks at the job row
_DB_PATIENCE = 30  # consecutive failed writes (about as many seconds) before the run gives up
_PAGE = 2000  # pending items read per query

_Recorder = Recorder  # the name the tests know


def _prepare(job: TransferJob, lease: Lease, kind: kinds.JobKind[Any], options: Transfer) -> bool:
    """Make the job's items (a new job, or a retry's failed items) in the worker; False when a user
    paused or cancelled it meanwhile."""

    def keep_going() -> bool:
        if lease.lost.is_set():
            raise RuntimeError(f"job {job.pk}: lost its lease; another run may have taken it over")
        status, owner = TransferJob.objects.filter(pk=job.pk).values_list("status", "run_token").first() or ("", "")
        if status and owner != job.run_token:
            raise RunSuperseded(f"job {job.pk}: another run has taken it over")
        return status == TransferJob.Status.RUNNING

    if not kind.prepare(job, options, keep_going):
        return False
    job_recount(job_id=job.pk, owned_by=job.run_token)
    job.refresh_from_db(fields=["files_total", "files_done", "files_skipped", "files_failed", "bytes_total", "bytes_done"])
    return True


def _combined(summaries: list[RunSummary]) -> RunSummary:
    """One summary for a run of several legs: the counts added up, the stop of the leg that stopped."""
    stopped = next((summary for summary in summaries if summary.stopped), None)
    return RunSummary(
        files_ok=sum(s.files_ok for s in summaries),
        files_failed=sum(s.files_failed for s in summaries),
        files_skipped=sum(s.files_skipped for s in summaries),
        bytes_sent=sum(s.bytes_sent for s in summaries),
        stopped=stopped is not None,
        stop_reason=stopped.stop_reason if stopped else "",
        files_not_sent=sum(s.files_not_sent for s in summaries),
        bytes_not_sent=sum(s.bytes_not_sent for s in summaries),
    )


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
    only other exceptions, genuine bugs, fail it. Every write of the run is fenced by its run token:
    once another run has taken the job over, this one stops (RunSuperseded) and leaves it to that run.
    """
    token = uuid.uuid4().hex
    with job_lock(job_id) as lease:
        if not job_start(job_id=job_id, run_token=token):
            logger.info("job %s is not queued; nothing to do", job_id)
            return
        try:
            job_recount(job_id=job_id, owned_by=token)  # a resumed or retried job starts from what its items say
            job = TransferJob.objects.select_related("account").defer("account__access_key").get(pk=job_id)
            if job.run_token != token:
                raise RunSuperseded(f"job {job_id}: another run took it over as this one started")
            _run(job, lease)
        except RunSuperseded as exc:
            logger.warning("job %s interrupted (%s); left running for the run that took it over", job_id, exc)
        except INFRASTRUCTURE_ERRORS as exc:
            logger.warning("job %s interrupted (%s: %s); left running for recovery to resume", job_id, type(exc).__name__, exc)
        except Exception as exc:
            if isinstance(
                exc,
                (kinds.OptionsInvalid, kinds.UnknownKind, DownloadRefused, TransportUnavailable, UnsupportedAccount, FarmError),
            ):
                error = f"this job cannot go on: {exc}"  # the user's to fix, said plainly; no traceback
                logger.warning("job %s refused: %s", job_id, exc)
            else:
                logger.exception("job %s failed", job_id)
                error = f"internal error ({type(exc).__name__}); see the worker log"
            failed = job_transition(
                job_id=job_id, to=TransferJob.Status.FAILED, owned_by=token, finished_at=timezone.now(), error=error
            )
            if failed:
                audit_record(
                    actor=None, action="job.finish", target=TransferJob(pk=job_id), outcome="failed", after={"error": error}
                )


def _run(job: TransferJob, lease: Lease) -> None:
    kind = kinds.get(job.kind)
    options = kind.options(job)
    if not job.prepared and not _prepare(job, lease, kind, options):
        return  # paused or cancelled while its items were made: a resume continues them
    recorder = Recorder(job, [])
    throttle = progress.ProgressThrottle(job.pk, team_id=job.account.team_id)
    sampler = Sampler(job.pk)
    control = Control(options.max_speed)
    control.bucket = budget.SharedBudgets(control.bucket.rate)  # the studio's shared budgets on top of max_speed
    budget.refresh_for(job, control.bucket)
    outcome: dict[str, RunSummary | BaseException] = {}

    def engine() -> None:
        run = JobRun(job, recorder, control, options)
        try:
            outcome["summary"] = _combined(kind.drive(run, options))
        except BaseException as exc:  # noqa: BLE001 - handed to the task's thread below
            outcome["error"] = exc
        finally:
            run.close()
            db_connection.close()  # the ledger's queries opened one in this thread

    thread = threading.Thread(target=engine, name=f"rvweb-job-{job.pk}", daemon=True)
    thread.start()
    try:
        _watch(job, thread, recorder, throttle, control, lease, sampler)
    finally:
        control.request_stop("the worker stopped watching")  # no effect once the engine is done
        recorder.stopped.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    summary = outcome["summary"]
    assert isinstance(summary, RunSummary)
    _finish(job, recorder, throttle, summary)


def _watch(
    job: TransferJob,
    thread: threading.Thread,
    recorder: Recorder,
    throttle: progress.ProgressThrottle,
    control: Control,
    lease: Lease,
    sampler: Sampler | None = None,
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
            message = recorder.message()
            throttle.offer(message)
            if sampler is not None:
                sampler.offer(message)  # the chart's speed over time, every few seconds
        if alive and time.monotonic() - last_write < _DB_EVERY and recorder.backlog() < _DB_BATCH:
            continue
        last_write = time.monotonic()
        try:
            recorder.write()
            if not alive:
                return  # the engine is done and everything it finished is stored
            _follow_user(job, recorder, control)
            budget.refresh_for(job, control.bucket)  # a changed budget, or the line's once chosen
            failures = 0
        except DatabaseError:
            failures += 1  # a locked SQLite or a database restart: keep the batch, try again
            logger.warning("job %s: database write failed (%d in a row)", job.pk, failures, exc_info=True)
            if failures >= _DB_PATIENCE:
                control.request_stop("the database is unavailable")
                raise
            if not alive:
                lease.lost.wait(1.0)  # pace the retries; wakes at once if the lease is lost


def _finish(job: TransferJob, recorder: Recorder, throttle: progress.ProgressThrottle, summary: RunSummary) -> None:
    """End the run: its own final transition, or, when a user paused or cancelled it, tell the page
    the counters it stopped with (stored by the last write). Either way one job.finish event. A run
    that another took over meanwhile ends nothing (RunSuperseded): the job is that run's to end."""
    if _end(job, recorder, throttle, summary):
        return
    row = TransferJob.objects.filter(pk=job.pk).values_list("status", "run_token").first()
    throttle.discard()  # the held progress message describes the run before whatever ended it
    if row is None:
        return
    current, owner = row
    if owner != recorder.run_token:
        raise RunSuperseded(f"job {job.pk}: another run took it over before this one ended")
    if current == TransferJob.Status.RUNNING:
        raise RunInterrupted(f"job {job.pk}: its items could not be counted")  # not prepared: cannot happen
    # A user paused or cancelled it. A cancelled job's partial files are removed by the
    # discard_partials task once this run lets go.
    job_stopped(job_id=job.pk, status=current)


def _end(job: TransferJob, recorder: Recorder, throttle: progress.ProgressThrottle, summary: RunSummary) -> bool:
    """The final status, from the items (the truth), and the transition to it, in one transaction that
    holds the job row from the recount on: no other run's write comes between the count and the end.
    False, changing nothing, when the job is no longer running or no longer this run's."""
    with transaction.atomic():
        if not job_recount(job_id=job.pk, owned_by=recorder.run_token):
            return False
        recorder.settle(TransferJob.objects.get(pk=job.pk))
        _, figures = recorder.snapshot()
        status, error = _final_status(figures, summary)
        recorder.status = status
        message = recorder.message()

        def publish() -> None:  # the last figures before the state message (job_transition's, also on commit)
            throttle.offer(message)
            throttle.flush()

        transaction.on_commit(publish)
        ended = job_transition(job_id=job.pk, to=status, owned_by=recorder.run_token, finished_at=timezone.now(), error=error)
        if ended:
            job_audit_end(job_id=job.pk, outcome=status, error=error)
        return ended


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


def _follow_user(job: TransferJob, recorder: Recorder, control: Control) -> None:
    """Apply what a user changed since the last look: the speed limit, a pause, a cancel."""
    row = TransferJob.objects.filter(pk=job.pk).values_list("options", "status", "run_token").first()
    if row is None:
        recorder.status = TransferJob.Status.CANCELLED
        control.request_stop("the job was deleted")
        return
    stored, status, owner = row
    if owner != recorder.run_token:
        # Taken over by a run that holds the lease now: stop sending at once (the files this run has
        # open are locked, and would read as busy to that run). Nothing more of ours is stored.
        control.request_stop("another run took the job over")
        raise RunSuperseded(f"job {job.pk}: another run has taken it over")
    if status != TransferJob.Status.RUNNING:
        # Only this run moves the job on from running: any other status is a user's pause or cancel
        # (or a pause and a resume so quick that we only see "queued").
        recorder.status = status
        control.request_stop(f"{status} by a user")
    kind = kinds.get(job.kind)
    if (speed := kind.parse(stored).max_speed) != kind.options(job).max_speed:
        control.set_max_speed(speed)
        job.options = stored


def job_discard_partials(*, job_id: int) -> None:
    """Remove the partial files of a cancelled job, once no run holds it; finished files stay."""
    with job_lock(job_id):
        job = TransferJob.objects.select_related("account").defer("account__access_key").filter(pk=job_id).first()
        if job is None or job.status != TransferJob.Status.CANCELLED:
            return
        if job.finished_at is None:
            job_stopped(job_id=job_id, status=job.status)  # its run died before it could say it ended
        kind = kinds.get(job.kind)
        run = JobRun(job, Recorder(job, []), Control(), kind.options(job))
        unfinished = [TransferItem.State.PENDING, TransferItem.State.FAILED]  # a failed file may have left a partial
        rows = job.items.filter(state__in=unfinished).values_list("area", "local", "server")
        downloads_to = {leg.area for leg in kind.legs(run.options) if leg.direction == "download"}
        try:
            for area, local, server in rows.iterator(chunk_size=2000):
                # A download's partial files are in its local folder; an upload's in the farm's area.
                where, path = (run.local_folder(), local) if area in downloads_to else (run.area(area), server)
                if where is None:
                    continue  # the farm's own transport moved it: no partial of rvweb's on the farm
                with contextlib.suppress(PathRefused, OSError):  # a refused path (its item failed so) has no partial
                    where.discard_partial(path)
        finally:
            run.close()
