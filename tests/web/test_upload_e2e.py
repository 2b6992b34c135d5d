"""One upload, end to end, through a real Celery worker process and the real broker and database."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import xxhash

from tests.conftest import wait_for
from transfers import services
from transfers.models import FarmAccount, TransferItem, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)


def _tree(root: Path, count: int) -> list[Path]:
    files = []
    for number in range(count):
        path = root / f"d{number % 7}" / f"f{number:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1 + (number * 7919) % 50_000))
        files.append(path)
    return files


def _manifest(account: FarmAccount, files: list[Path], user: object, extra: list[dict[str, str]] | None = None):
    document = {"asset": [{"local": str(p), "server": str(p)} for p in files] + (extra or [])}
    return services.manifest_import(name="e2e", account=account, data=json.dumps(document).encode(), user=user)


def _finished(job: TransferJob) -> TransferJob | None:
    job.refresh_from_db()
    return job if job.is_terminal else None


def test_upload_of_a_few_hundred_files_arrives_byte_for_byte(celery_worker, allowed_dir, make_account, make_user):
    account = make_account(name="farm")
    user = make_user("lead", team=account.team, role="lead")
    files = _tree(allowed_dir, 300)
    manifest = _manifest(account, files, user)

    job = services.job_create_upload(manifest=manifest, user=user)
    wait_for(lambda: _finished(job), timeout=120, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    assert job.status == TransferJob.Status.COMPLETED
    assert (job.files_done, job.files_failed, job.files_total) == (300, 0, 300)
    total = sum(p.stat().st_size for p in files)
    assert (job.bytes_done, job.bytes_total) == (total, total)
    inbox = services.farm_storage(account=account).area_root("input")
    for path in files:
        assert (inbox / str(path).lstrip("/")).read_bytes() == path.read_bytes()
    checksums = dict(job.items.values_list("local", "checksum"))
    assert checksums[str(files[0])] == "xxh3-128:" + xxhash.xxh3_128(files[0].read_bytes()).hexdigest()
    assert not list(inbox.rglob("*.rvpart")), "no temporary file may remain"


def test_missing_files_and_folders_fail_alone_and_the_job_completes_with_errors(
    celery_worker, allowed_dir, make_account, make_user
):
    account = make_account(name="farm2")
    user = make_user("lead2", team=account.team, role="lead")
    files = _tree(allowed_dir, 20)
    folder = allowed_dir / "not-a-file"
    folder.mkdir()
    missing = {"local": str(allowed_dir / "gone.bin"), "server": "/gone.bin"}
    manifest = _manifest(account, files, user, extra=[missing, {"local": str(folder), "server": "/folder.bin"}])

    job = services.job_create_upload(manifest=manifest, user=user)
    wait_for(lambda: _finished(job), timeout=120, what=f"job {job.pk} to end\n{celery_worker.log_tail()}")

    assert job.status == TransferJob.Status.COMPLETED_WITH_ERRORS
    assert (job.files_done, job.files_failed) == (20, 2)
    errors = dict(job.items.filter(state=TransferItem.State.FAILED).values_list("server", "error"))
    assert errors == {
        "/gone.bin": f"local file not found: {allowed_dir / 'gone.bin'}",
        "/folder.bin": f"local path is a folder, not a file: {folder}",
    }
    inbox = services.farm_storage(account=account).area_root("input")
    assert all((inbox / str(p).lstrip("/")).read_bytes() == p.read_bytes() for p in files)


def test_a_redelivered_task_does_not_run_a_finished_job_again(celery_worker, allowed_dir, make_account, make_user):
    from transfers.tasks import run_job

    account = make_account(name="farm3")
    user = make_user("lead3", team=account.team, role="lead")
    manifest = _manifest(account, _tree(allowed_dir, 3), user)
    job = services.job_create_upload(manifest=manifest, user=user)
    wait_for(lambda: _finished(job), timeout=120, what="job to end")
    finished_at = job.finished_at

    run_job(job.pk)  # as if the broker delivered the message a second time

    job.refresh_from_db()
    assert (job.status, job.finished_at, job.files_done) == (TransferJob.Status.COMPLETED, finished_at, 3)


def test_a_second_manifest_of_unchanged_files_sends_nothing(celery_worker, allowed_dir, make_account, make_user):
    account = make_account(name="farm4")
    user = make_user("lead4", team=account.team, role="lead")
    files = _tree(allowed_dir, 30)
    first = services.job_create_upload(manifest=_manifest(account, files, user), user=user)
    wait_for(lambda: _finished(first), timeout=120, what="first job to end")

    second = services.job_create_upload(manifest=_manifest(account, files, user), user=user)
    wait_for(lambda: _finished(second), timeout=120, what="second job to end")

    assert (second.status, second.files_done, second.files_skipped) == (TransferJob.Status.COMPLETED, 30, 30)
    assert set(second.items.values_list("state", flat=True)) == {TransferItem.State.SKIPPED}


def test_lifting_the_speed_limit_of_a_running_job_takes_effect_at_once(celery_worker, allowed_dir, make_account, make_user):
    account = make_account(name="farm5")
    user = make_user("lead5", team=account.team, role="lead")
    big = allowed_dir / "big.bin"
    big.write_bytes(os.urandom(8 << 20))  # 80 s at the 100 KB/s limit below
    manifest = _manifest(account, [big], user)
    job = services.job_create_upload(manifest=manifest, user=user, options={"max_speed": 100})

    def started() -> bool:
        job.refresh_from_db()
        return job.bytes_done > 0

    wait_for(started, timeout=60, what="the limited transfer to start")
    services.job_set_max_speed(job=job, max_speed=None, user=user)
    wait_for(lambda: _finished(job), timeout=30, what="the unlimited transfer to end")

    assert job.status == TransferJob.Status.COMPLETED
    assert (services.farm_storage(account=account).area_root("input") / str(big).lstrip("/")).read_bytes() == big.read_bytes()
