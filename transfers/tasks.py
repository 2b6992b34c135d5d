"""Celery tasks: orchestration only. They receive ids, never objects or secrets."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import OperationalError

from transfers import execution
from transfers.locks import JobBusy


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
        # An earlier run is still letting go (a quick pause and resume): try again shortly.
        raise self.retry(exc=exc, countdown=5, max_retries=60) from exc


@shared_task(name="transfers.discard_partials", acks_late=True)
def discard_partials(job_id: int) -> None:
    execution.job_discard_partials(job_id=job_id)
