"""Pause, resume, cancel and retry, through a real Celery worker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import wait_for
from transfers import services
from transfers.models import AuditEvent, FarmAccount, TransferItem, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


def _job(lead, files: list[Path], options: dict | None = None) -> tuple[TransferJob, Path]:
    account = FarmAccount.objects.create(name=f"farm-{files[0].parent.name}", team=lead.memberships.get().team)
    data = json.dumps({"asset": [{"local": str(p), "server": str(p)} for p in files]}).encode()
    manifest = services.manifest_import(name="m", account=account, data=data, user=lead)
    job = services.job_create_upload(manifest=manifest, user=lead, options=options or {})
    return job, services.farm_storage(account=account).area_root("input")


def _status(job: TransferJob, *statuses: str) -> bool:
    job.refresh_from_db()
    return job.status in statuses


def _sending(job: TransferJob) -> bool:
    job.refresh_from_db()
    return job.status == TransferJob.Status.RUNNING and job.bytes_done > 0


def _partials(inbox: Path) -> list[Path]:
    return list(inbox.rglob("*.rvpart"))


def test_a_paused_job_keeps_its_partial_file_and_resumes_it_to_the_right_bytes(celery_worker, allowed_dir, lead):
    big = allowed_dir / "big.bin"
    big.write_bytes(os.urandom(4 << 20))
    job, inbox = _job(lead, [big], {"max_speed": 512})  # 8 s of sending at 512 KB/s
    wait_for(lambda: _sending(job), timeout=60, what="the transfer to start")

    assert services.job_pause(job=job, user=lead)
    wait_for(lambda: _partials(inbox) and job.items.get().state == TransferItem.State.PENDING, timeout=30, what="a kept partial")
    services.job_set_max_speed(job=job, max_speed=None, user=lead)
    assert services.job_resume(job=job, user=lead)
    wait_for(lambda: _status(job, *TransferJob.TERMINAL), timeout=60, what="the resumed job to end")

    assert job.status == TransferJob.Status.COMPLETED
    assert (inbox / str(big).lstrip("/")).read_bytes() == big.read_bytes()
    assert (job.bytes_done, job.bytes_total) == (4 << 20, 4 << 20)
    assert not _partials(inbox)
    events = AuditEvent.objects.filter(target_type="TransferJob", target_id=str(job.pk)).order_by("pk")
    assert [e.action for e in events if e.action != "job.finish"] == ["job.create", "job.pause", "job.max_speed", "job.resume"]
    # Each run's end is one event: the paused one (whenever its worker got there) and the last one.
    assert [e.outcome for e in events if e.action == "job.finish"] == ["paused", "completed"]


def test_a_cancelled_job_stops_and_removes_its_partial_file(celery_worker, allowed_dir, lead):
    small, big = allowed_dir / "a-small.bin", allowed_dir / "z-big.bin"
    small.write_bytes(b"done first")
    big.write_bytes(os.urandom(4 << 20))
    job, inbox = _job(lead, [small, big], {"max_speed": 256, "pool_size": 1})
    wait_for(lambda: _sending(job) and _partials(inbox), timeout=60, what="the big file to be under way")

    assert services.job_cancel(job=job, user=lead)
    wait_for(lambda: not _partials(inbox), timeout=30, what="the partial file to be removed")

    job.refresh_from_db()
    assert job.status == TransferJob.Status.CANCELLED
    assert (inbox / str(small).lstrip("/")).read_bytes() == b"done first"
    assert not (inbox / str(big).lstrip("/")).exists()


def test_a_cancelled_run_ends_with_one_finish_event_carrying_its_final_counters(celery_worker, allowed_dir, lead):
    small, big = allowed_dir / "a-small.bin", allowed_dir / "z-big.bin"
    small.write_bytes(b"done first")
    big.write_bytes(os.urandom(4 << 20))
    job, inbox = _job(lead, [small, big], {"max_speed": 256, "pool_size": 1})
    wait_for(lambda: _sending(job) and _partials(inbox), timeout=60, what="the big file to be under way")

    assert services.job_cancel(job=job, user=lead)
    job.refresh_from_db()
    assert job.finished_at is None  # its worker is still stopping: the figures are not final yet
    wait_for(lambda: job.refresh_from_db() or job.finished_at, timeout=30, what="the worker to finish the job")

    (finish,) = AuditEvent.objects.filter(action="job.finish", target_id=str(job.pk))
    assert finish.outcome == "cancelled"
    assert (finish.after["files_done"], finish.after["files_not_sent"]) == (1, 1)
    assert finish.after["bytes_done"] == job.bytes_done > len(b"done first")  # the partial bytes it stopped with
    assert job.as_live()["settled"] is True


def test_retry_sends_only_the_files_that_failed(celery_worker, allowed_dir, lead):
    present, late = allowed_dir / "present.bin", allowed_dir / "late.bin"
    present.write_bytes(b"here")
    job, inbox = _job(lead, [present, late])
    wait_for(lambda: _status(job, *TransferJob.TERMINAL), timeout=60, what="the first run to end")
    assert (job.status, job.files_done, job.files_failed) == (TransferJob.Status.COMPLETED_WITH_ERRORS, 1, 1)

    late.write_bytes(b"arrived later")
    assert services.job_retry(job=job, user=lead)
    wait_for(lambda: _status(job, *TransferJob.TERMINAL), timeout=60, what="the retry to end")

    assert (job.status, job.files_done, job.files_failed) == (TransferJob.Status.COMPLETED, 2, 0)
    assert (inbox / str(late).lstrip("/")).read_bytes() == b"arrived later"
    assert job.items.get(local=str(late)).attempts == 1


def test_a_finished_job_cannot_be_paused_or_cancelled(celery_worker, allowed_dir, lead):
    only = allowed_dir / "only.bin"
    only.write_bytes(b"x")
    job, _ = _job(lead, [only])
    wait_for(lambda: _status(job, *TransferJob.TERMINAL), timeout=60, what="the job to end")

    assert not services.job_pause(job=job, user=lead)
    assert not services.job_cancel(job=job, user=lead)
    job.refresh_from_db()
    assert job.status == TransferJob.Status.COMPLETED


def test_a_pause_and_resume_quicker_than_the_worker_looks_still_ends_right(celery_worker, allowed_dir, lead):
    big = allowed_dir / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    job, inbox = _job(lead, [big], {"max_speed": 1024})
    wait_for(lambda: _sending(job), timeout=60, what="the transfer to start")

    assert services.job_pause(job=job, user=lead)
    assert services.job_resume(job=job, user=lead)  # the old run may still be sending: the new one waits
    services.job_set_max_speed(job=job, max_speed=None, user=lead)
    wait_for(lambda: _status(job, *TransferJob.TERMINAL), timeout=90, what="the job to end")

    assert job.status == TransferJob.Status.COMPLETED
    assert (inbox / str(big).lstrip("/")).read_bytes() == big.read_bytes()
    assert not _partials(inbox)


def test_a_second_run_of_a_job_waits_for_the_first_to_let_go(db):
    from transfers.locks import JobBusy, job_lock

    with job_lock(987654), pytest.raises(JobBusy), job_lock(987654, wait=0.2):
        pass
