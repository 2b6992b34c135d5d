"""Benchmarks 7 and 8: downloads (issue 7 item 8).

7. Download latency: a local farm account renders a task (frames written under a partial name, fsynced,
   renamed into place, one every `interval` seconds) while an auto_download job runs in its own worker
   process (tests/bench/scale_child.py: execution.job_run, the code a Celery worker runs, without the
   broker). A thread here watches the local folder every 5 ms; a frame's latency is from its completion
   (event mode: its frame_finished event recorded; polling mode: its rename into place) to its first
   sight at its final local name. The same clock (this process's time.time()) takes both ends.
   Event mode: every frame is announced, sleep_time is long (so a poll can never be what brings a
   frame), the watcher wakes on the announcement. Polling mode: no frame is announced, so a frame is
   taken once its size is the same in two listings: the watcher lists every `sleep_time`, and again
   after the short stability gap (kinds.download._STABLE_GAP) while an output it saw once is settling.
   Its latency is up to the wait for the first listing that sees it (<= one period), the gap, then the
   transfer. Bound: sleep_time + gap + transfer (the issue wrote sleep_time + transfer, which the
   stability check cannot give for a frame nobody announced: the row says both).
   Event and polling jobs alternate, each round on a fresh account, task and local folder.

8. One big download vs cp: a file in the farm's output area (announced) downloaded cold (caches
   dropped) into a fresh local folder, three ways interleaved in the same rounds: the engine's data path
   (run_transfer, LocalFolder farm area -> LocalFolder local folder, the ledger a download uses, then a
   syncfs), the whole `download` job (execution.job_run in this process: options, two listings a second
   apart, items, progress, the same run_transfer, syncfs before the items are stored), and `cp` + `sync`.
"""

from __future__ import annotations

import logging
import os
import shlex
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from tests.bench.common import MB, Config, Row, drop_caches, interleaved, log, run_shell, timed, write_random_file
from tests.bench.scale import _child, _django, _result

_FIVE_MS = 0.005


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank), so p95 of 20 samples is the 19th smallest."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-int(q * 100) * len(ordered) // 100)))
    return ordered[rank - 1]


class _Bench:
    """Django against a throwaway SQLite in the scratch folder, an embedded Redis, jobs never enqueued."""

    def __init__(self, config: Config) -> None:
        _django(config.root)
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from rvweb.embedded_redis import EmbeddedRedis
        from transfers import tasks
        from transfers.models import Team

        logging.getLogger("transfers").setLevel(logging.WARNING)
        self.config = config
        self.redis = EmbeddedRedis(Path(settings.DATA_DIR)).start() if settings.EMBEDDED_REDIS else None
        self._enqueue = tasks.run_job.delay
        tasks.run_job.delay = lambda *args, **kwargs: None  # the bench runs each job itself
        self.allowed = Path(settings.ALLOWED_LOCAL_ROOTS[0])
        self.allowed.mkdir(parents=True, exist_ok=True)
        stamp = f"{os.getpid()}-{time.time_ns()}"
        self.team = Team.objects.create(name=f"bench-dl-{stamp}")
        self.user = get_user_model().objects.create_superuser(f"bench-dl-{stamp}", password="-")
        from transfers.farm_events import Actor

        self.actor = Actor(user=None)

    def close(self) -> None:
        from transfers import tasks

        tasks.run_job.delay = self._enqueue
        if self.redis is not None:
            self.redis.stop()

    def account(self, name: str) -> Any:
        from transfers.farm import connector_for
        from transfers.models import FarmAccount

        account = FarmAccount.objects.create(name=self.config.fresh(name).name, team=self.team)
        connector_for(account).ensure()
        return account

    def event(self, account: Any, **event: Any) -> dict[str, Any]:
        from transfers.farm_events import farm_event_record

        return dict(farm_event_record(account=account, event=event, actor=self.actor))

    def task(self, account: Any, scene: str, frames: int) -> Any:
        from transfers.models import FarmTask

        created = self.event(account, type="task_created", scene=scene, frames=frames)
        self.event(account, type="task_status", task_id=created["task_id"], status=5)  # rendering
        return FarmTask.objects.get(account=account, task_id=created["task_id"])

    def output(self, account: Any) -> Path:
        from transfers.farm import connector_for

        return connector_for(account).area_root("output")

    def job(self, kind: str, account: Any, **options: Any) -> Any:
        from transfers import jobs

        return jobs.job_create(kind=kind, account=account, user=self.user, options=options)


# --- 7: download latency ----------------------------------------------------------------------------------


class _Arrivals(threading.Thread):
    """Watches for local files every 5 ms; notes when each first appears at its final name."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(name="bench-arrivals", daemon=True)
        self.waiting = set(paths)
        self.seen: dict[Path, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while self.waiting and not self.stop.wait(_FIVE_MS):
            for path in list(self.waiting):
                if os.path.exists(path):
                    self.seen[path] = time.time()
                    self.waiting.discard(path)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _one_render(bench: _Bench, *, announce: bool, frames: int, size: int, interval: float, sleep_time: float) -> dict[str, Any]:
    """One auto_download job in a worker process while a task renders `frames` frames; per-frame latencies."""
    from transfers.farm.simulate import frame_write
    from transfers.models import TransferJob

    mode = "event" if announce else "poll"
    account = bench.account(f"lat-{mode}")
    task = bench.task(account, f"lat{mode}", frames)
    local = bench.allowed / bench.config.fresh(f"lat-{mode}-local").name
    job = bench.job("auto_download", account, task_id_list=[task.task_id], local_path=str(local), sleep_time=sleep_time)
    worker = _child("run", job.pk)
    try:
        _wait(lambda: TransferJob.objects.filter(pk=job.pk, watch__isnull=False).exists(), 120, "the watcher's first listing")
        names = [f"{task.output_folder}/{task.scene}.{n:04d}.exr" for n in range(1, frames + 1)]
        arrivals = _Arrivals([local / name for name in names])
        arrivals.start()
        output, pad = bench.output(account), os.urandom(size - 16)
        done: dict[Path, float] = {}
        began = time.monotonic()
        for number, name in enumerate(names, start=1):
            frame_write(output / name, number.to_bytes(16, "little") + pad, chunk=1 << 20)
            if announce:
                bench.event(account, type="frame_finished", task_id=task.task_id, path=name, size=size)
            done[local / name] = time.time()  # the event is committed (event mode) / the frame renamed into place
            time.sleep(max(0.0, began + number * interval - time.monotonic()))
        bench.event(account, type="task_finished", task_id=task.task_id, status=25)
        ran = _result(worker)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(20)
    arrivals.join(10)
    arrivals.stop.set()
    job.refresh_from_db()
    if job.status != TransferJob.Status.COMPLETED or job.files_done != frames or arrivals.waiting:
        raise RuntimeError(f"{mode} job ended {job.status} with {job.files_done}/{frames} frames: {job.error}")
    latencies = [arrivals.seen[path] - at for path, at in done.items()]
    return {"latencies": latencies, "job_seconds": ran["seconds"]}


def latency(config: Config) -> list[Row]:
    frames = 8 if config.quick else 30
    size = (4 << 20) if config.quick else (32 << 20)
    interval = 0.5 if config.quick else 1.0
    poll_sleep = 1.0 if config.quick else 3.0
    event_sleep = 20.0  # ten times the goal: a frame brought by a poll, not by its event, would show
    rounds = min(config.rounds, 2 if config.quick else 3)
    bench = _Bench(config)
    log(f"{rounds} rounds x 2 modes, each {frames} frames of {size >> 20} MiB one every {interval:g} s")
    found: dict[str, list[float]] = {"event": [], "poll": []}
    per_round: dict[str, list[float]] = {"event": [], "poll": []}
    try:
        for number in range(rounds):
            modes = ["event", "poll"] if number % 2 == 0 else ["poll", "event"]
            for mode in modes:
                got = _one_render(
                    bench,
                    announce=mode == "event",
                    frames=frames,
                    size=size,
                    interval=interval,
                    sleep_time=event_sleep if mode == "event" else poll_sleep,
                )
                found[mode] += got["latencies"]
                per_round[mode].append(_quantile(got["latencies"], 0.95))
                lat = got["latencies"]
                log(
                    f"round {number + 1}: {mode}: p50 {statistics.median(lat):.2f} s, p95 {_quantile(lat, 0.95):.2f} s, "
                    f"max {max(lat):.2f} s (job {got['job_seconds']:.0f} s)"
                )
    finally:
        bench.close()
    event, poll = found["event"], found["poll"]
    transfer = statistics.median(event)  # one wake-up, one listing and the transfer: an upper estimate
    rows = []
    row = Row(7, f"latency, event mode ({frames} x {size >> 20} MiB frames)", goal="p95 <= 2 s")
    p95 = _quantile(event, 0.95)
    row.ours = f"p50 {statistics.median(event):.2f} s, p95 {p95:.2f} s, max {max(event):.2f} s"
    row.baseline, row.ratio_text, row.met = f"goal 2 s; sleep_time {event_sleep:g} s", f"p95 {p95:.2f} s", p95 <= 2.0
    row.notes += [
        f"event mode: {len(event)} frames over {rounds} jobs, each in its own worker process (execution.job_run, no broker); "
        f"latency = frame_finished recorded -> file at its final local name (seen every 5 ms); p95 per job: "
        + ", ".join(f"{v:.2f}" for v in per_round["event"])
        + " s",
    ]
    rows.append(row)
    from transfers.kinds.download import _STABLE_GAP

    bound = poll_sleep + _STABLE_GAP + transfer
    p95 = _quantile(poll, 0.95)
    row = Row(7, f"latency, polling mode (sleep_time {poll_sleep:g} s)", goal="p95 <= sleep_time + gap + transfer")
    row.ours = f"p50 {statistics.median(poll):.2f} s, p95 {p95:.2f} s, max {max(poll):.2f} s"
    row.baseline = f"bound {bound:.2f} s (issue's sleep_time + transfer: {poll_sleep + transfer:.2f} s)"
    row.ratio_text, row.met = f"p95 {p95:.2f} s", p95 <= bound
    row.notes += [
        f"polling mode: {len(poll)} frames never announced; latency = rename into place -> file at its final local name; "
        f"p95 per job: " + ", ".join(f"{v:.2f}" for v in per_round["poll"]) + " s",
        f"polling bound: a frame nobody announced is taken when two listings see the same size: the first within one"
        f" period ({poll_sleep:g} s, plus that round's work), the second {_STABLE_GAP:g} s later, then its transfer:"
        f" {poll_sleep:g} + {_STABLE_GAP:g} + {transfer:.2f} s (transfer = the event mode's median, which also holds a"
        f" wake-up and a listing) = {bound:.2f} s."
        f" The issue's sleep_time + transfer ({poll_sleep + transfer:.2f} s) would take a frame on first sight:"
        f" {'met' if p95 <= poll_sleep + transfer else 'not met'}"
        f" ({sum(1 for v in poll if v <= poll_sleep + transfer)}/{len(poll)} frames within it)",
    ]
    rows.append(row)
    return rows


# --- 8: one big download vs cp ----------------------------------------------------------------------------


def big_download(config: Config) -> list[Row]:
    size = (256 << 20) if config.quick else (2 << 30)
    bench = _Bench(config)
    try:
        return _big_download(config, bench, size)
    finally:
        bench.close()


def _big_download(config: Config, bench: _Bench, size: int) -> list[Row]:
    from transfers import downloads, execution
    from transfers.engine.endpoints import LocalFolder
    from transfers.engine.runner import Move, run_transfer
    from transfers.engine.tracker import Tracker
    from transfers.models import TransferJob

    account = bench.account("big-dl")
    task = bench.task(account, "big", 1)
    server = f"{task.output_folder}/big.0001.exr"
    source = bench.output(account) / server
    log(f"writing {size >> 20} MiB of random bytes to {source}")
    write_random_file(source, size)
    bench.event(account, type="frame_finished", task_id=task.task_id, path=server, size=size)
    bench.event(account, type="task_finished", task_id=task.task_id, status=25)
    made: list[Path] = []

    def check(path: Path) -> None:
        made.append(path)
        if path.stat().st_size != size:
            raise RuntimeError(f"{path} has the wrong size")

    def engine(_: int) -> float:
        local = bench.allowed / config.fresh("big-engine").name
        drop_caches(config)

        def run() -> None:
            farm = LocalFolder(bench.output(account), where="the farm storage")
            folder = LocalFolder(local, where="the local folder", allowed_roots=[bench.allowed])
            try:
                summary = run_transfer(
                    farm,
                    folder,
                    [Move(item_id=1, source=server, destination=server)],
                    report=Tracker(files_total=1, bytes_total=size),
                    ledger=downloads.LocalFilesLedger(folder),
                )
                folder.sync()
            finally:
                farm.close()
                folder.close()
            if summary.files_ok != 1:
                raise RuntimeError(f"the engine did not download the file: {summary}")

        seconds = timed(run)
        check(local / server)
        return seconds

    def job(_: int) -> float:
        local = bench.allowed / config.fresh("big-job").name
        created = bench.job("download", account, task_id_list=[task.task_id], local_path=str(local))
        drop_caches(config)
        seconds = timed(lambda: execution.job_run(job_id=created.pk))
        created.refresh_from_db()
        if created.status != TransferJob.Status.COMPLETED:
            raise RuntimeError(f"the download job ended {created.status}: {created.error}")
        check(local / server)
        return seconds

    def cp(_: int) -> float:
        local = config.fresh("big-dl-cp")
        local.mkdir()
        drop_caches(config)
        seconds = timed(lambda: run_shell(f"cp {shlex.quote(str(source))} {shlex.quote(str(local / 'big.exr'))} && sync"))
        check(local / "big.exr")
        return seconds

    def unlinking(side: Any) -> Any:
        def run(number: int) -> float:
            seconds = float(side(number))
            made.pop().unlink()  # frees the disk; big files delete fast
            return seconds

        return run

    sides = [("engine", unlinking(engine)), ("download job", unlinking(job)), ("cp+sync", unlinking(cp))]
    series = interleaved(config.rounds, sides)
    cp_rate = size / MB / series["cp+sync"].median
    cold = "cold (caches dropped before each run)" if config.can_drop else "WARM (could not drop caches)"
    rows = []
    for name, label in [("engine", "engine data path"), ("download job", "whole download job")]:
        rate = size / MB / series[name].median
        row = Row(8, f"one {size >> 20} MiB download, {label}", goal=">= 0.9x cp")
        row.ours, row.baseline = f"{rate:,.0f} MB/s", f"{cp_rate:,.0f} MB/s (cp+sync)"
        row.ratio = rate / cp_rate
        row.ratio_text, row.met = f"{row.ratio:.2f}x cp", row.ratio >= 0.9
        row.notes.append(f"{name}: {series[name].describe()}")
        rows.append(row)
    rows[0].notes[:0] = [
        f"{cold}; farm output area -> a fresh local folder; engine = run_transfer(LocalFolder -> LocalFolder, the download's"
        " ledger, 4 ranges in parallel, xxh3-128, verified, fsync, rename) + syncfs; download job = execution.job_run"
        " in this process (the frame is announced: one listing, no stability gap)",
    ]
    rows[1].notes += [f"cp:   {series['cp+sync'].describe()}"]
    return rows
