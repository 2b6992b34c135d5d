"""Celery tasks: orchestration only. They receive ids, never objects or secrets."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from transfers import execution


@shared_task(
    name="transfers.run_job",
    acks_late=True,
    autoretry_for=(OperationalError,),  # a database that blinked; the job's state guards re-runs
    retry_backoff=True,
    max_retries=3,
)
def run_job(job_id: int) -> None:
    execution.job_run(job_id=job_id)
