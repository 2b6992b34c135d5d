"""Celery tasks: orchestration only. They receive ids, never objects or secrets."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready
from django.db import OperationalError

from transfers import execution
from transfers.locks import JobBusy
from transfers.models import TransferJob

logger = logging.getLogger(__name__)


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
        execution.job_run(job_id=job_id)
    except JobBusy as exc:
        # Another run holds the job (it is stopping after a pause, or a dead worker's lease has not
        # expired yet): try again shortly.
        raise self.retry(exc=exc, countdown=5, max_retries=60) from exc


@shared_task(bind=True, name="transfers.discard_partials", acks_late=True)
def discard_partials(self: Task, job_id: int) -> None:
    try:
        execution.job_discard_partials(job_id=job_id)
    except JobBusy as exc:
        raise self.retry(exc=exc, countdown=5, max_retries=60) from exc


@shared_task(name="transfers.recover_jobs")
def recover_jobs() -> None:
    """Enqueue every job that should be moving: queued ones whose message may be gone (the embedded
    Redis keeps nothing on disk) and running ones whose worker died. Duplicates are harmless."""
    active = (TransferJob.Status.QUEUED, TransferJob.Status.RUNNING)
    for job_id in TransferJob.objects.filter(status__in=active).values_list("pk", flat=True):
        run_job.delay(job_id)


@worker_ready.connect
def _recover_on_start(sender: Any = None, **kwargs: Any) -> None:
    logger.info("worker ready: looking for jobs to recover")
    recover_jobs.delay()
