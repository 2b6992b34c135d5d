"""Workers where the files are (issue 11, items 1 and 3): a job runs on a worker that sees its files;
one no worker sees waits saying so, and starts when such a worker comes up; a worker killed mid-job
(its whole process group) has the job taken over by another that sees the same files, from where it was."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import Service, spawn_worker, wait_for
from transfers import placement, services, workers
from transfers.models import FarmAccount, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1 << 20


def _upload(account: FarmAccount, user, files: list[Path], options: dict | None = None) -> TransferJob:
    document = {"asset": [{"local": str(p), "server": str(p)} for p in files]}
    manifest = services.manifest_import(name="placed", account=account, data=json.dumps(document).encode(), user=user)
    return services.job_create_upload(manifest=manifest, user=user, options=options or {})


def _files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for number in range(count):
        path = folder / f"f{number}.bin"
        path.write_bytes(os.urandom(size))
        made.append(path)
    return made


def _job(job: TransferJob) -> TransferJob:
    return TransferJob.objects.get(pk=job.pk)


def _stop(*running: Service | None) -> None:
    for worker in running:
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGTERM)
            worker.stop()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)


def _roots(*extra: Path) -> dict[str, str]:
    return {"RVWEB_ALLOWED_LOCAL_ROOTS": os.pathsep.join([*(str(r) for r in settings.ALLOWED_LOCAL_ROOTS), *map(str, extra)])}


def test_what_a_worker_lacks_is_named():
    needs = placement.Needs(frozenset({"/mnt/nas2/shots", "/srv/assets/a"}), "sftp")
    assert placement.uncovered(needs, ["/srv/assets", "/mnt/nas2"], ["local", "sftp"]) == ""
    assert placement.uncovered(needs, ["/srv/assets"], ["local", "sftp"]) == "/mnt/nas2/shots"
    assert placement.uncovered(needs, ["/srv/assets", "/mnt/nas2"], ["local"]) == "the sftp transport"
    assert placement.uncovered(needs, ["/mnt/nas"], ["sftp"]) == "/mnt/nas2/shots", "a root is a whole folder, not a prefix"
    assert placement.uncovered(needs, ["/"], ["sftp"]) == ""


def test_a_job_waits_while_no_worker_sees_its_files_and_runs_on_the_one_that_does(
    celery_worker, make_account, make_user, tmp_path
):
    account = make_account(name="placed farm")
    lead = make_user("placement-lead", team=account.team, role="lead")
    nas = tmp_path / "nas2"
    files = _files(nas / "shots", 3, 100_000)
    queue, name = f"rvweb-b-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    env = _roots(nas) | {"RVWEB_RECOVER_EVERY": "1"}
    b: Service | None = spawn_worker(name, queue, env)
    try:
        document = {"asset": [{"local": str(p), "server": str(p)} for p in files]}
        # Recorded while worker b announces the folder: the studio's roots are every worker's.
        manifest = services.manifest_import(name="nas2", account=account, data=json.dumps(document).encode(), user=lead)
        _stop(b)  # b goes away (its announcement with it) before the job starts
        b = None
        assert name not in {w["hostname"].split("@")[0] for w in workers.live()}

        job = services.job_create_upload(manifest=manifest, user=lead)
        wait_for(lambda: _job(job).waiting, timeout=30, what=f"the wait\n{celery_worker.log_tail()}")
        assert _job(job).waiting == f"no worker sees {nas / 'shots'}"
        assert _job(job).status == TransferJob.Status.QUEUED, "it waits: neither failed nor run on a worker without the files"

        b = spawn_worker(name, queue, env)  # back: the next round places the job on it
        wait_for(lambda: _job(job).is_terminal, timeout=60, what=f"the job on worker b\n{b.log_tail()}")
        done = _job(job)
        assert done.status == TransferJob.Status.COMPLETED and done.waiting == ""
        assert f"{job.pk}" in b.log.read_text(errors="replace"), "worker b ran it"
        announced = {w["hostname"]: w for w in workers.live()}
        assert any(str(nas) in w["roots"] for w in announced.values()), announced
    finally:
        _stop(b)


def test_a_worker_killed_mid_job_has_it_taken_over_by_one_that_sees_the_same_files(
    celery_worker, make_account, make_user, tmp_path
):
    account = make_account(name="failover farm")
    lead = make_user("failover-lead", team=account.team, role="lead")
    nas = tmp_path / "render-nas"
    files = _files(nas, 4, 4 * MIB)
    total = sum(p.stat().st_size for p in files)
    env = _roots(nas) | {"RVWEB_RECOVER_EVERY": "2"}
    first: Service | None = None
    second: Service | None = None
    try:
        first = spawn_worker(f"f1-{uuid.uuid4().hex[:6]}", f"rvweb-f1-{uuid.uuid4().hex[:6]}", env)
        job = _upload(account, lead, files, {"max_speed": 2048})  # 2 MB/s: ~8 s in all
        wait_for(lambda: _job(job).bytes_done > 4 * MIB, timeout=60, what=f"the job under way\n{first.log_tail()}")
        second = spawn_worker(f"f2-{uuid.uuid4().hex[:6]}", f"rvweb-f2-{uuid.uuid4().hex[:6]}", env)
        killed_at = time.monotonic()
        os.killpg(first.process.pid, signal.SIGKILL)  # the machine gone: the worker and its pool, no goodbye
        first.process.wait()
        wait_for(lambda: _job(job).is_terminal, timeout=120, what=f"the take-over\n{second.log_tail(60)}")
        taken_over_in = time.monotonic() - killed_at
        print(f"failover: the job ended {taken_over_in:.1f} s after its worker was killed")
    finally:
        _stop(first, second)
    done = _job(job)
    assert done.status == TransferJob.Status.COMPLETED, done.error
    assert taken_over_in <= 60 + total / (2048 * 1024), f"finished {taken_over_in:.0f} s after the kill"
    assert done.bytes_sent < 1.5 * total, "resumed from the byte offsets, not sent again from the start"
    inbox = services.farm_storage(account=account).area_root("input")
    for path in files:
        assert (inbox / str(path).lstrip("/")).read_bytes() == path.read_bytes()


def test_a_job_the_broker_cannot_forward_says_so_and_is_placed_again_next_round(make_account, monkeypatch):
    from kombu.exceptions import OperationalError as BrokerError

    from transfers import tasks

    account = make_account(name="unforwarded")
    job = TransferJob.objects.create(kind="upload_asset", account=account, status="queued")
    monkeypatch.setattr(placement, "place", lambda job, me: placement.Placement(here=False, queue="q.w.b", worker="b@host"))

    def away(*args: object, **kwargs: object) -> None:
        raise BrokerError("connection refused")

    monkeypatch.setattr(tasks.run_job, "apply_async", away)

    assert tasks._placed_here(job.pk, "a@host") is False
    waiting = _job(job).waiting
    assert waiting.startswith("it could not be handed to worker b@host") and _job(job).status == "queued"
    assert job.pk in tasks._placing({job.pk}), "placed again at the next recovery round"
