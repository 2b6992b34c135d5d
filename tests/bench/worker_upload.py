"""Benchmark 15: 20,000 small files (4 KiB) uploaded through a real Celery worker, with the database
bookkeeping (items made from the manifest, each file's state and checksum stored, the job's counters,
the ledger), against the goal of 3,000 files/s.

Django runs here on a throwaway SQLite database in the scratch folder (as benchmarks 3 and 6) with an
embedded Redis; a `celery -A rvweb worker` process on a queue of its own does the work. Each round is
a new farm account (nothing to skip), caches dropped first, timed from the enqueue (job_create_upload)
to the job's end as seen in the database; the worker's own started_at..finished_at is noted. A last
job sends the same files again to the last account: every file skipped through the ledger.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.bench.common import Config, Row, drop_caches, log, write_tree
from tests.bench.scale import ROOT, _django

GOAL = 3000  # files/s


class _Worker:
    """`celery -A rvweb worker` on a queue of its own, writing to this process's database."""

    def __init__(self, log_path: Path, queue: str, *, concurrency: int = 1) -> None:
        from django.conf import settings

        env = dict(
            os.environ,
            REDIS_URL=settings.REDIS_URL,
            BROKER_URL=settings.BROKER_URL,
            RVWEB_QUEUE=queue,
            PYTHONUNBUFFERED="1",
        )
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "rvweb", "worker", "-Q", queue, "-c", str(concurrency), "-l", "WARNING",
             "--without-mingle", "--without-gossip", "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the celery worker exited ({self.process.returncode}):\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _run_job(worker: _Worker, manifest: Any, user: Any, timeout: float) -> tuple[float, Any]:
    """Enqueue an upload of `manifest`, wait for its end; (seconds from the enqueue, the job)."""
    from transfers import services

    began = time.perf_counter()
    job = services.job_create_upload(manifest=manifest, user=user)
    deadline = time.monotonic() + timeout
    while True:
        job.refresh_from_db()
        if job.is_terminal and job.finished_at is not None:
            return time.perf_counter() - began, job
        worker.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job.pk} did not end within {timeout:.0f} s ({job.status}):\n{worker.tail()}")
        time.sleep(0.05)


def _worker_seconds(job: Any) -> float:
    return (job.finished_at - job.started_at).total_seconds() if job.started_at and job.finished_at else float("nan")


def bench(config: Config) -> Row:
    count = 2_000 if config.quick else 20_000
    row = Row(15, f"{count:,} x 4 KiB files through a Celery worker, cold", goal=f">= {GOAL:,} files/s")
    _django(config.root)
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from rvweb.celery import app as celery_app
    from rvweb.embedded_redis import EmbeddedRedis
    from transfers import services
    from transfers.models import FarmAccount, Team, TransferItem

    redis = EmbeddedRedis(Path(settings.DATA_DIR)).start() if settings.EMBEDDED_REDIS else None
    queue = f"rvweb-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    default_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue  # this process enqueues where the worker listens
    worker: _Worker | None = None
    try:
        assets = Path(settings.ALLOWED_LOCAL_ROOTS[0]) / config.fresh("worker-assets").name
        log(f"writing {count:,} files of 4 KiB under {assets}")
        paths = write_tree(assets, count, 4096)
        document = {"asset": [{"local": str(p), "server": f"/shots/{p.parent.name}/{p.name}"} for p in paths]}
        user = get_user_model().objects.create_superuser(f"bench-worker-{os.getpid()}-{count}", password="-")
        team = Team.objects.create(name=f"bench-worker-{os.getpid()}-{count}")
        worker = _Worker(config.fresh("celery-worker").with_suffix(".log"), queue)
        timeout = max(300.0, count / 20)

        def one(number: int) -> tuple[float, Any, Any, Any]:
            account = FarmAccount.objects.create(name=f"bench-worker-{os.getpid()}-{count}-{number}", team=team)
            manifest = services.manifest_import(
                name=f"bench {number}", account=account, data=json.dumps(document).encode(), user=user
            )
            drop_caches(config)
            seconds, job = _run_job(worker, manifest, user, timeout)
            return seconds, job, account, manifest

        log("warm-up job (the worker's first job loads what it needs)")
        seconds, job, _, _ = one(0)
        log(f"warm-up: {seconds:.2f} s, {job.status}, done {job.files_done:,}")
        walls: list[float] = []
        inner: list[float] = []
        last: tuple[Any, Any] | None = None
        for number in range(1, min(config.rounds, 3) + 1):
            seconds, job, account, manifest = one(number)
            if (job.status, job.files_done, job.files_failed, job.files_skipped) != ("completed", count, 0, 0):
                raise RuntimeError(f"job {job.pk} ended {job.status}: done {job.files_done}, failed {job.files_failed}")
            stored = job.items.filter(state=TransferItem.State.DONE).exclude(checksum="").count()
            if stored != count:
                raise RuntimeError(f"job {job.pk}: {stored} items stored as done with a checksum, not {count}")
            walls.append(seconds)
            inner.append(_worker_seconds(job))
            last = account, manifest
            log(f"round {number}: {seconds:.2f} s from the enqueue ({count / seconds:,.0f} files/s); worker {inner[-1]:.2f} s")
        assert last is not None
        skip_seconds, skip_job = _run_job(worker, last[1], user, timeout)
        if skip_job.files_skipped != count:
            raise RuntimeError(f"the re-upload sent files again: skipped {skip_job.files_skipped} of {count}")
        log(f"re-upload of the same files: {skip_seconds:.2f} s ({count / skip_seconds:,.0f} files/s), all skipped")
    finally:
        celery_app.conf.task_default_queue = default_queue
        if worker is not None:
            worker.stop()
        if redis is not None:
            redis.stop()
    wall = statistics.median(walls)
    rate = count / wall
    row.ours = f"{rate:,.0f} files/s"
    row.baseline = f"goal {GOAL:,} files/s"
    row.ratio, row.ratio_text, row.met = rate / GOAL, f"{rate / GOAL:.2f}x the goal", rate >= GOAL
    cold = "cold (caches dropped before each job)" if config.can_drop else "WARM (could not drop caches)"
    row.notes += [
        f"{cold}; celery worker -c 1, SQLite, embedded Redis; a new account per job (nothing skipped); "
        "timed from job_create_upload to the job's end in the database (polled every 50 ms)",
        "jobs: "
        + ", ".join(f"{w:.2f} s" for w in walls)
        + f" (median {wall:.2f} s); the worker's own started..finished: "
        + ", ".join(f"{s:.2f} s" for s in inner)
        + f" (median {count / statistics.median(inner):,.0f} files/s)",
        f"re-upload of the same {count:,} files (all skipped through the ledger): {skip_seconds:.2f} s,"
        f" {count / skip_seconds:,.0f} files/s",
    ]
    return row
