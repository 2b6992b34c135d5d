"""Benchmarks 21 and 22 (issue 11): many worker processes, and the studio's shared budget.

21. Aggregate throughput of small files with 1, 2 and 4 worker processes: four upload jobs of 4 KiB
    files (each to its own new account, nothing to skip), enqueued together, on N real `celery worker
    -c 1` processes; timed from the first enqueue to the last job's end in the database. Reports files/s
    for each N and the scaling against one worker. On the throwaway SQLite database by default (its one
    write lock is shared by every worker: expect it to cap the scaling), on PostgreSQL with DATABASE_URL.
22. How closely one shared budget holds: 8 upload jobs at once (2 workers x 4 processes) under one studio
    budget; the bytes they sent together over the span from the first start to the last end, against the
    budget (goal: within 10 %).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from tests.bench.common import Config, Row, drop_caches, log, write_tree
from tests.bench.scale import _django
from tests.bench.worker_upload import _Worker

KIB = 1024
MIB_4 = 4 << 20


class _Stack:
    """Django on the scratch database, an embedded Redis, jobs enqueued on a queue of the bench's own."""

    def __init__(self, config: Config, name: str) -> None:
        _django(config.root)
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from rvweb.celery import app as celery_app
        from rvweb.embedded_redis import EmbeddedRedis
        from transfers.models import Team

        self.config = config
        self.redis = EmbeddedRedis(Path(settings.DATA_DIR)).start() if settings.EMBEDDED_REDIS else None
        self.queue = f"rvweb-bench-{name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.app = celery_app
        self.default_queue = celery_app.conf.task_default_queue
        celery_app.conf.task_default_queue = self.queue
        tag = f"{name}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.user = get_user_model().objects.create_superuser(f"bench-{tag}", password="-")
        self.team = Team.objects.create(name=f"bench-{tag}")
        self.workers: list[_Worker] = []
        self.database = "PostgreSQL" if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else "SQLite"

    def start_workers(self, count: int, concurrency: int = 1) -> None:
        for _ in range(count):
            self.workers.append(_Worker(self.config.fresh("worker").with_suffix(".log"), self.queue, concurrency=concurrency))
        time.sleep(3.0)  # let every worker reach its broker loop before the jobs come

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def close(self) -> None:
        self.stop_workers()
        self.app.conf.task_default_queue = self.default_queue
        if self.redis is not None:
            self.redis.stop()

    def manifests(self, count: int, files: int, size: int) -> list[Any]:
        from django.conf import settings

        from transfers import services
        from transfers.models import FarmAccount

        made = []
        for number in range(count):
            assets = Path(settings.ALLOWED_LOCAL_ROOTS[0]) / self.config.fresh("assets").name
            paths = write_tree(assets, files, size)
            document = {"asset": [{"local": str(p), "server": f"/b/{p.parent.name}/{p.name}"} for p in paths]}
            account = FarmAccount.objects.create(name=f"{self.team.name}-{uuid.uuid4().hex[:6]}-{number}", team=self.team)
            made.append(
                services.manifest_import(
                    name=f"bench {number}", account=account, data=json.dumps(document).encode(), user=self.user
                )
            )
        return made

    def run(self, manifests: list[Any], *, timeout: float) -> list[Any]:
        """Enqueue an upload of each manifest at once; wait for every job's end; the jobs as they ended."""
        from transfers import services
        from transfers.models import TransferJob

        jobs = [services.job_create_upload(manifest=manifest, user=self.user) for manifest in manifests]
        deadline = time.monotonic() + timeout
        while True:
            ended = list(TransferJob.objects.filter(pk__in=[job.pk for job in jobs]))
            if all(job.is_terminal for job in ended):
                return ended
            for worker in self.workers:
                worker.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs not done within {timeout:.0f} s:\n{self.workers[0].tail()}")
            time.sleep(0.05)


def _span(jobs: list[Any]) -> float:
    return float((max(job.finished_at for job in jobs) - min(job.started_at for job in jobs)).total_seconds())


def scaling(config: Config) -> Row:
    jobs_count, files = (4, 500) if config.quick else (4, 2_500)
    row = Row(21, f"{jobs_count} jobs x {files:,} x 4 KiB files on 1, 2, 4 worker processes", goal="report the scaling")
    stack = _Stack(config, "scale")
    rates: dict[int, float] = {}
    try:
        for count in (1, 2, 4):
            manifests = stack.manifests(jobs_count, files, 4 * KIB)
            stack.start_workers(count)
            drop_caches(config)
            began = time.perf_counter()
            ended = stack.run(manifests, timeout=max(300.0, jobs_count * files / 50))
            wall = time.perf_counter() - began
            stack.stop_workers()
            bad = [job for job in ended if job.status != "completed" or job.files_done != files]
            if bad:
                raise RuntimeError(f"job {bad[0].pk} ended {bad[0].status}: done {bad[0].files_done} of {files}")
            rates[count] = jobs_count * files / wall
            log(f"{count} worker process(es): {wall:.2f} s from the enqueue, {rates[count]:,.0f} files/s")
    finally:
        stack.close()
    row.ours = ", ".join(f"{n}: {rate:,.0f} files/s" for n, rate in rates.items())
    row.baseline = "1 worker process"
    row.ratio = rates[4] / rates[1]
    row.ratio_text = f"x{rates[2] / rates[1]:.2f} with 2, x{rates[4] / rates[1]:.2f} with 4"
    row.notes.append(
        f"{stack.database}; {os.cpu_count()} CPUs; each worker `celery -A rvweb worker -c 1`; cold caches; "
        "timed from the first job_create_upload to the last job's end in the database"
    )
    return row


def budget_precision(config: Config) -> Row:
    jobs_count, files, size = (8, 4, MIB_4) if config.quick else (8, 6, MIB_4)
    rate_kbs = 20_000
    row = Row(22, f"{jobs_count} jobs at once under one {rate_kbs:,} KB/s studio budget", goal="within 10 % of the budget")
    stack = _Stack(config, "budget")
    from transfers.models import BandwidthBudget

    budget = BandwidthBudget.objects.create(scope=BandwidthBudget.Scope.STUDIO, max_speed=rate_kbs)
    ratios = []
    try:
        stack.start_workers(2, concurrency=4)
        for number in range(1 if config.quick else 3):
            manifests = stack.manifests(jobs_count, files, size)
            ended = stack.run(manifests, timeout=600.0)
            moved = sum(job.bytes_sent for job in ended)
            ratio = moved / _span(ended) / (rate_kbs * KIB)
            ratios.append(ratio)
            log(f"round {number + 1}: {moved / 1e6:.0f} MB in {_span(ended):.2f} s, {ratio:.3f} of the budget")
    finally:
        budget.delete()
        stack.close()
    worst = max(ratios, key=lambda r: abs(1 - r))
    row.ours = ", ".join(f"{r:.3f}" for r in ratios) + " of the budget"
    row.baseline = f"{rate_kbs * KIB / 1e6:.1f} MB/s"
    row.ratio, row.ratio_text, row.met = worst, f"{worst:.3f}x", worst <= 1.10 and worst >= 0.90
    row.notes.append(
        f"{stack.database}; 2 workers x 4 processes; {jobs_count} jobs of {files} x {size >> 20} MiB each round; "
        "the bytes sent by all the jobs over the span from the first start to the last end"
    )
    return row
