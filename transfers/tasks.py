"""Celery tasks: orchestration only. They receive ids, never objects or secrets.

Recovery: every worker runs `jobs_recover` (and `works_recover`) when it is ready and then every
RVWEB_RECOVER_EVERY seconds in a thread of its main process. It re-enqueues running jobs and manifest
works that no run holds (their run was interrupted by an outage, or their worker died) and, after
Redis came back empty, queued jobs (their messages went with it). Duplicates are harmless: a run
takes the job's (or work's) lease and moves it with conditional transitions, and `run_job` drops a
message for a job another run is moving.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery import Task, shared_task
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, OperationalError, close_old_connections, connection
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from transfers import execution, locks, placement, services, workers
from transfers.models import Manifest, ManifestWork, TransferJob

logger = logging.getLogger(__name__)

# A running job must be seen without a lease this long before it is re-enqueued: a run that lost
# its lease to a Redis restart notices within one renewal and stops before a new one starts.
_UNHELD_GRACE = 2 * locks.LEASE_SECONDS / 6
# A queued job still queued after this long may have lost its message (the broker was away when it
# was enqueued, or lost its data): it is enqueued again. A duplicate costs one no-op message.
_QUEUED_GRACE = 600.0
# Publishing while the broker is away must fail fast: the next round tries again.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 1.0}


@shared_task(
    bind=True,
    name="transfers.run_job",
    acks_late=True,
    autoretry_for=(OperationalError,),  # a database that blinked; the job's state guards re-runs
    retry_backoff=True,
    max_retries=3,
)
def run_job(self: Task, job_id: int) -> None:
    try:
        if _moving_elsewhere(job_id):
            # A redelivered or re-enqueued message while a live run moves the job: nothing to do.
            # If that run dies, its lease expires and recovery enqueues the job again.
            logger.info("job %s is being run by another worker; duplicate message dropped", job_id)
            return
        if not _placed_here(job_id, str(self.request.hostname or "")):
            return
        execution.job_run(job_id=job_id)
    except locks.JobBusy as exc:
        # Another run holds the job (it is stopping after a pause, or a dead worker's lease has not
        # expired yet): try again shortly.
        raise self.retry(exc=exc, countdown=5, max_retries=60) from exc
    except RedisError as exc:
        # No lease could be taken: Redis is away. The job is untouched; recovery enqueues it again.
        logger.warning("job %s not started (%s); recovery will enqueue it again", job_id, type(exc).__name__)


def _placed_here(job_id: int, me: str) -> bool:
    """Whether this worker runs the job (transfers.placement): else it was forwarded, or left waiting."""
    job = TransferJob.objects.select_related("account").defer("account__access_key").filter(pk=job_id).first()
    if job is None or job.is_terminal:
        return job is not None
    try:
        where = placement.place(job, me=me)
    except (DatabaseError, RedisError):
        raise
    except Exception:  # options it cannot read, a kind it does not know: the run itself says why
        logger.warning("job %s: cannot tell where it runs; running it here", job_id, exc_info=True)
        return True
    if where.here:
        logger.info("job %s runs on %s", job_id, me)
        if job.waiting:
            TransferJob.objects.filter(pk=job_id).update(waiting="")
        return True
    if where.queue:
        logger.info("job %s forwarded to worker %s, which sees its files", job_id, where.worker)
        TransferJob.objects.filter(pk=job_id).update(waiting=f"{_SENT_TO}{where.worker}"[:500])
        try:
            run_job.apply_async((job_id,), queue=where.queue, retry=True, retry_policy=_PUBLISH_RETRY)
        except (BrokerError, RedisError, OSError) as exc:  # the broker away: said on the page, placed again next round
            logger.warning("job %s not handed to worker %s (%s); placed again next round", job_id, where.worker, exc)
            why = f"it could not be handed to worker {where.worker} (the broker did not answer); trying again"
            TransferJob.objects.filter(pk=job_id).update(waiting=why[:500])
    else:
        logger.info("job %s waits: %s", job_id, where.waiting)
        TransferJob.objects.filter(pk=job_id).exclude(waiting=where.waiting).update(waiting=where.waiting[:500])
    return False


def _moving_elsewhere(job_id: int) -> bool:
    running = TransferJob.objects.filter(pk=job_id, status=TransferJob.Status.RUNNING).exists()
    return running and bool(locks.leases_held([job_id]))


@shared_task(bind=True, name="transfers.discard_partials", acks_late=True)
def discard_partials(self: Task, job_id: int) -> None:
    try:
        execution.job_discard_partials(job_id=job_id)
    except locks.JobBusy as exc:
        raise self.retry(exc=exc, countdown=5, max_retries=60) from exc


class _Recovery:
    """Decides which jobs to re-enqueue; remembers since when a running job has had no lease."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.unheld_since: dict[int, float] = {}
        self.queued_since: dict[int, float] = {}

    def due(self, *, everything: bool = False) -> list[int]:
        """Running jobs unheld for the grace period; queued ones queued for long, or all of them when
        `everything` or when Redis was emptied."""
        emptied = locks.redis_was_emptied()
        active = dict(
            TransferJob.objects.filter(status__in=(TransferJob.Status.QUEUED, TransferJob.Status.RUNNING)).values_list(
                "pk", "status"
            )
        )
        running = [pk for pk, status in active.items() if status == TransferJob.Status.RUNNING]
        unheld = set(running) - locks.leases_held(running)
        now = self.clock()
        self.unheld_since = {pk: self.unheld_since.get(pk, now) for pk in unheld}
        due = {pk for pk, since in self.unheld_since.items() if now - since >= _UNHELD_GRACE}
        queued = {pk for pk, status in active.items() if status == TransferJob.Status.QUEUED}
        self.queued_since = {pk: self.queued_since.get(pk, now) for pk in queued}
        stale = {pk for pk, since in self.queued_since.items() if now - since >= _QUEUED_GRACE}
        due |= queued if everything or emptied else stale
        due |= _placing(queued)
        for pk in due & queued:
            self.queued_since[pk] = now  # its grace starts again
        return sorted(due)


_SENT_TO = placement.SENT_TO


def _placing(queued: set[int]) -> set[int]:
    """Queued jobs to place again this round: those waiting for a worker that can run them, and those
    sent to a worker that is gone (its heartbeat lapsed) before it started them."""
    waiting = dict(TransferJob.objects.filter(pk__in=queued).exclude(waiting="").values_list("pk", "waiting"))
    if not waiting:
        return set()
    try:
        live = {str(worker.get("hostname")) for worker in workers.live()}
    except (RedisError, OSError):
        live = set()
    return {pk for pk, why in waiting.items() if not why.startswith(_SENT_TO) or why.removeprefix(_SENT_TO) not in live}


class _WorkRecovery:
    """The same for manifest works (transfers.manifest_work): running ones no run holds (their worker
    died, or their run lost its lease) after the grace, and queued ones queued for long."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.unheld_since: dict[int, float] = {}
        self.queued_since: dict[int, float] = {}

    def due(self) -> list[int]:
        active = dict(ManifestWork.objects.filter(state__in=ManifestWork.ACTIVE).values_list("pk", "state"))
        running = [pk for pk, state in active.items() if state == ManifestWork.State.RUNNING]
        unheld = set(running) - locks.works_held(running)
        now = self.clock()
        self.unheld_since = {pk: self.unheld_since.get(pk, now) for pk in unheld}
        due = {pk for pk, since in self.unheld_since.items() if now - since >= _UNHELD_GRACE}
        queued = {pk for pk, state in active.items() if state == ManifestWork.State.QUEUED}
        self.queued_since = {pk: self.queued_since.get(pk, now) for pk in queued}
        stale = {pk for pk, since in self.queued_since.items() if now - since >= _QUEUED_GRACE}
        for pk in stale:
            self.queued_since[pk] = now
        return sorted(due | stale)


def works_recover(recovery: _WorkRecovery) -> list[int]:
    """Enqueue the manifest works that should be moving and are not; returns their ids. A run takes
    the work's lease first, so a duplicate message does nothing (manifest_work.work_run)."""
    due = recovery.due()
    for work_id in due:
        manifest_work.apply_async((work_id,), retry=True, retry_policy=_PUBLISH_RETRY)
    if due:
        logger.info("recovery enqueued manifest works %s", due)
    return due


def jobs_recover(recovery: _Recovery | None = None, *, everything: bool = False) -> list[int]:
    """Enqueue the jobs that should be moving and are not; returns their ids."""
    due = (recovery or _Recovery()).due(everything=everything)
    for job_id in due:
        run_job.apply_async((job_id,), retry=True, retry_policy=_PUBLISH_RETRY)
    if due:
        logger.info("recovery enqueued jobs %s", due)
    return due


@shared_task(name="transfers.notify", acks_late=True)
def notify(user_id: int, channel: str, event: str, job_id: int, task_id: int | None, attempt: int) -> None:
    """One attempt at a notification (transfers.notifications.deliver); a failed one is enqueued again
    later, the wait doubling each time. Ids only: the address and the secret are read here."""
    from transfers import notifications

    wait = notifications.deliver(user_id=user_id, channel=channel, event=event, job_id=job_id, task_id=task_id, attempt=attempt)
    if wait is not None:
        notify.apply_async((user_id, channel, event, job_id, task_id, attempt + 1), countdown=wait)


@shared_task(name="transfers.import_manifest", acks_late=True)
def import_manifest(manifest_id: int) -> None:
    """Read, check and store an uploaded manifest (services.manifest_import_begin recorded it)."""
    services.manifest_import_run(manifest_id=manifest_id)


@shared_task(name="transfers.recover_imports")
def recover_imports() -> None:
    """Enqueue every manifest still importing, and every queued manifest work: its message may be gone
    with a restarted Redis, or its worker died. A duplicate of a run still going does nothing
    (services.manifest_import_run, manifest_work.work_run)."""
    importing = Manifest.objects.filter(state=Manifest.State.IMPORTING, split_from__isnull=True)
    built = ManifestWork.objects.filter(kind=ManifestWork.Kind.APPEND).values("manifest_id")
    # Those being built by an append, or made by a split, have no file to read: their work fills them.
    for manifest_id in importing.exclude(pk__in=built).values_list("pk", flat=True):
        import_manifest.delay(manifest_id)
    # Appends, splits and dry runs still queued: a queued one runs once (manifest_work.work_run).
    for work_id in ManifestWork.objects.filter(state=ManifestWork.State.QUEUED).values_list("pk", flat=True):
        manifest_work.delay(work_id)


@shared_task(name="transfers.recover_jobs")
def recover_jobs() -> None:
    """Enqueue every queued job (see the module's docstring); kept for manual use."""
    jobs_recover(everything=True)


class _RecoveryThread(threading.Thread):
    def __init__(self, every: float, name: str = "") -> None:
        super().__init__(name="rvweb-recovery", daemon=True)
        self.every = every
        self.stopping = threading.Event()
        self.worker_name = name or f"worker@{socket.gethostname()}:{os.getpid()}"
        self.started = time.time()

    def run(self) -> None:
        recovery, works = _Recovery(), _WorkRecovery()
        first = True
        while not self.stopping.is_set():
            workers.heartbeat(self.worker_name, self.started)  # never raises: Redis away is logged
            try:
                close_old_connections()
                # At start every queued job: this worker may be the first since everything restarted.
                jobs_recover(recovery, everything=first)
                works_recover(works)
                if first:
                    recover_imports.delay()  # an import whose worker died, or whose message Redis lost
                first = False
            except Exception as exc:  # noqa: BLE001 - Redis, broker or database away: next round
                logger.warning("job recovery round failed (%s); trying again in %.0fs", type(exc).__name__, self.every)
            finally:
                connection.close()
            self.stopping.wait(self.every)


_thread: _RecoveryThread | None = None


@celeryd_after_setup.connect
def _own_queue(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    """Each worker also consumes a queue of its own: jobs only it (or workers like it) can run are sent there."""
    if instance is not None and sender:
        instance.app.amqp.queues.select_add(placement.own_queue(str(sender)))


@worker_ready.connect
def _start_recovery(sender: Any = None, **kwargs: Any) -> None:
    global _thread
    logger.info("worker ready: recovering jobs now and every %ss", settings.RECOVER_EVERY)
    _thread = _RecoveryThread(settings.RECOVER_EVERY, name=str(getattr(sender, "hostname", "") or ""))
    _thread.start()


@worker_shutdown.connect
def _stop_recovery(sender: Any = None, **kwargs: Any) -> None:
    if _thread is not None:
        _thread.stopping.set()
        workers.gone(_thread.worker_name)


@shared_task(name="transfers.manifest_work", acks_late=True)
def manifest_work(work_id: int) -> None:
    """Append to, split or dry-run a manifest (transfers.manifest_work recorded the work)."""
    from transfers.manifest_work import work_run

    work_run(work_id=work_id)
