"""Benchmarks 10 and 11 (issue 8 item 10): the job page and its per-file table with a job of 500,000
items (50,000 with --quick) — the page's first response, the table's first page, "failed only", a deep
page and a path search — and the transfers list with 10,000 jobs (2,000 with --quick): its first page,
the live rows it polls every 2 s, a filtered page and an older page. Goal: ≤ 300 ms each (p95).

Django runs in this process against a throwaway SQLite database in the scratch folder, or the database
DATABASE_URL names (PostgreSQL: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/rvweb_jobsbench make
bench BENCH_ARGS="--only 10,11"`; the database must exist, it is migrated and only added to). The
requests go through Django's test client as a team lead (the team-restricted querysets, not staff's);
each is made once to warm up, then ROUNDS times: median and p95.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from tests.bench.common import Row, log
from tests.bench.scale import _django

GOAL_MS = 300.0
ROUNDS = 20


class _Pauses:
    """Python's full (generation 2) garbage collections during the timed requests: this process holds
    the whole benchmark world, so one can cost a request a few hundred ms that a server would not."""

    def __init__(self) -> None:
        self.longest, self.count, self._began = 0.0, 0, 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.count += 1
            self.longest = max(self.longest, (time.perf_counter() - self._began) * 1000)


def _timings(call: Callable[[], Any], rounds: int) -> list[float]:
    response = call()  # warm-up, and a check that it answers at all
    if response.status_code != 200:
        raise RuntimeError(f"answered {response.status_code}: {response.content[:300]!r}")
    times = []
    pauses = _Pauses()
    gc.callbacks.append(pauses)
    try:
        for _ in range(rounds):
            began = time.perf_counter()
            response = call()
            times.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"answered {response.status_code}")
    finally:
        gc.callbacks.remove(pauses)
    if pauses.count:
        log(f"{pauses.count} full garbage collection(s) during these requests, the longest {pauses.longest:.0f} ms")
    return times


def _row(number: int, name: str, times: list[float], *, goal: bool = True) -> Row:
    median = statistics.median(times)
    p95 = statistics.quantiles(times, n=20)[18] if len(times) > 1 else times[0]
    row = Row(number, name, goal=f"<= {GOAL_MS:.0f} ms (p95)" if goal else "report")
    row.ours = f"median {median:.0f} ms, p95 {p95:.0f} ms"
    row.ratio_text = f"{len(times)} requests"
    row.met = p95 <= GOAL_MS if goal else None
    log(f"{name}: {row.ours} (in order: {', '.join(f'{t:.0f}' for t in times)} ms)")
    return row


def _fill_items(job_id: int, count: int) -> None:
    """`count` items in one INSERT ... SELECT: 2% failed, 1% pending, 5% skipped, the rest done."""
    from django.db import connection

    from transfers.models import TransferItem

    table = TransferItem._meta.db_table
    columns = "job_id, number, local, server, size, area, state, bytes_done, checksum, attempts, error_code, error"
    values = (
        f"{job_id}, x, '/mnt/studio/shots/sq' || (x / 1000) || '/f' || x || '.exr', "
        "'/mnt/studio/shots/sq' || (x / 1000) || '/f' || x || '.exr', 1048576, 'input', "
        "CASE WHEN x %% 50 = 7 THEN 'failed' WHEN x %% 100 = 3 THEN 'pending' WHEN x %% 20 = 1 THEN 'skipped' ELSE 'done' END, "
        "CASE WHEN x %% 50 = 7 OR x %% 100 = 3 THEN 0 ELSE 1048576 END, '', "
        "CASE WHEN x %% 50 = 7 THEN 3 ELSE 1 END, "
        "CASE WHEN x %% 50 = 7 THEN 'missing' ELSE '' END, "
        "CASE WHEN x %% 50 = 7 THEN 'source file missing: No such file or directory' ELSE '' END"
    )
    if connection.vendor == "postgresql":
        sql = f"INSERT INTO {table} ({columns}) SELECT {values} FROM generate_series(1, %s) AS x"
    else:
        sql = (
            f"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < %s) "
            f"INSERT INTO {table} ({columns}) SELECT {values} FROM n"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [count])
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {table}")
        else:
            cursor.execute("ANALYZE")


class _World:
    """A lead of one of five teams (ten accounts) and the jobs across them; made once for both benchmarks."""

    def __init__(self, config: Any) -> None:
        _django(config.root)
        from django.contrib.auth import get_user_model
        from django.db import connection, transaction
        from django.test import Client

        from transfers.models import FarmAccount, JobSample, Membership, Team, TransferJob

        logging.getLogger("axes").setLevel(logging.WARNING)
        self.config = config
        self.vendor = connection.vendor
        self.rounds = 8 if config.quick else ROUNDS
        self.jobs = 2_000 if config.quick else 10_000
        tag = f"{os.getpid()}-{int(time.time())}"
        log(f"database: {self.vendor}; making {self.jobs:,} jobs")
        teams = [Team.objects.create(name=f"bench-{tag}-team-{n}") for n in range(5)]
        self.accounts = [FarmAccount.objects.create(name=f"bench-{tag}-farm-{n}", team=teams[n % 5]) for n in range(10)]
        lead = get_user_model().objects.create_user(f"bench-{tag}-lead")
        Membership.objects.create(user=lead, team=teams[0], role=Membership.Role.LEAD)
        statuses = ["completed"] * 14 + ["completed_with_errors", "failed", "cancelled", "paused", "queued", "running"]
        kinds = ["upload_asset", "upload_asset", "download", "auto_download", "upload_config", "upload"]
        rows = [
            TransferJob(
                account=self.accounts[n % 10],
                kind=kinds[n % len(kinds)],
                status=statuses[n % len(statuses)],
                files_total=1000,
                files_done=(n * 37) % 1000,
                bytes_total=1 << 30,
                bytes_done=((n * 37) % 1000) << 20,
                options={"pool_size": 4},
            )
            for n in range(self.jobs)
        ]
        with transaction.atomic():
            TransferJob.objects.bulk_create(rows, batch_size=2000)
        running = TransferJob.objects.filter(account__in=self.accounts, status="running").values_list("pk", flat=True)
        now = time.time()
        samples = [JobSample(job_id=pk, at=now - 2 * s, speed=50e6 + s, bytes_done=s) for pk in running[:100] for s in range(300)]
        JobSample.objects.bulk_create(samples, batch_size=5000)
        self.lead = lead
        self.client = Client(HTTP_HOST="127.0.0.1")
        self.client.force_login(lead)

    def oldest_on_first_page(self) -> int:
        from django.http import QueryDict

        from transfers import job_filters

        jobs, _ = job_filters.job_list_page(self.lead, job_filters.job_filter_read(QueryDict(), user=self.lead))
        return jobs[-1].pk

    def big_job(self, items: int) -> int:
        """A job of `items` items (and a full chart of samples) in the lead's team."""

        from transfers.models import JobSample, TransferJob

        big = TransferJob.objects.create(
            account=self.accounts[0],
            kind="upload_asset",
            status="completed_with_errors",
            files_total=items,
            bytes_total=items << 20,
        )
        began = time.perf_counter()
        _fill_items(big.pk, items)
        log(f"{items:,} items made in {time.perf_counter() - began:.1f} s")
        now = time.time()
        JobSample.objects.bulk_create([JobSample(job_id=big.pk, at=now - 2 * s, speed=80e6, bytes_done=s) for s in range(1500)])
        return big.pk


_world: _World | None = None


def _the_world(config: Any) -> _World:
    global _world
    if _world is None:
        _world = _World(config)
    return _world


def job_page(config: Any) -> list[Row]:
    world = _the_world(config)
    items = 50_000 if config.quick else 500_000
    big, client, rounds = world.big_job(items), world.client, world.rounds
    where = f"({world.vendor}, {items:,} items)"
    return [
        _row(10, f"job page, first response {where}", _timings(lambda: client.get(f"/jobs/{big}/"), rounds)),
        _row(10, f"per-file table, first page {where}", _timings(lambda: client.get(f"/jobs/{big}/items"), rounds)),
        _row(
            10, f'per-file table, "failed only" {where}', _timings(lambda: client.get(f"/jobs/{big}/items?state=failed"), rounds)
        ),
        _row(
            10,
            f'per-file table, "failed only" past item {items // 2:,} {where}',
            _timings(lambda: client.get(f"/jobs/{big}/items?state=failed&after={items // 2}"), rounds),
        ),
        _row(
            10,
            f"per-file table, path search (one match, near the end) {where}",
            _timings(lambda: client.get(f"/jobs/{big}/items?q=/f{items - 5}.exr"), max(3, rounds // 4)),
            goal=False,
        ),
    ]


def transfers_list(config: Any) -> list[Row]:
    world = _the_world(config)
    client, rounds, account = world.client, world.rounds, world.accounts[0].pk
    oldest_shown = world.oldest_on_first_page()
    where = f"({world.vendor}, {world.jobs:,} jobs)"
    return [
        _row(11, f"transfers list, first page {where}", _timings(lambda: client.get("/jobs/"), rounds)),
        _row(11, f"transfers list, live rows (polled every 2 s) {where}", _timings(lambda: client.get("/jobs/?rows=1"), rounds)),
        _row(
            11,
            f"transfers list, filtered: account, kind, status {where}",
            _timings(lambda: client.get(f"/jobs/?account={account}&kind=upload_asset&status=completed"), rounds),
        ),
        _row(11, f"transfers list, an older page {where}", _timings(lambda: client.get(f"/jobs/?before={oldest_shown}"), rounds)),
    ]
