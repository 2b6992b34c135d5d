"""auto_download end to end in a real worker while three tasks render: every frame arrives exactly once,
with its bytes, never as a partial at its final name; the worker killed mid-way and another started in
its place downloads nothing again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import xxhash
from django.conf import settings

from tests.conftest import ROOT, Service, _subprocess_env, wait_for
from transfers import jobs, tasks
from transfers.engine.paths import PARTIAL_SUFFIX
from transfers.farm import connector_for
from transfers.farm.simulate import render_run, render_start
from transfers.farm_events import Actor
from transfers.models import FarmTask, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

TASKS, FRAMES = 3, 50
SYSTEM = Actor(user=None)


def _worker(queue: str) -> Service:
    """A worker of this test's own on its own queue (the session's worker must not take the job, and
    this one is killed). Recovery every second, so the job is picked up again soon after its lease lapses."""
    env = _subprocess_env() | {"RVWEB_QUEUE": queue, "RVWEB_RECOVER_EVERY": "1"}
    log = Path(settings.DATA_DIR) / "logs" / f"download-worker-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "wb")  # noqa: SIM115 - the child owns it
    args = [sys.executable, "-m", "celery", "-A", "rvweb", "worker", "-Q", queue, "-c", "2", "-l", "INFO",
            "--without-gossip", "--without-mingle", "--hostname", f"dl-{uuid.uuid4().hex[:6]}@%h"]  # fmt: skip
    # Its own process group: the kill below takes its pool processes too, and none outlives the test.
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    service = Service(process=process, log=log)
    wait_for(lambda: "ready." in log.read_text(errors="replace"), timeout=60, what="the worker to start")
    return service


def _arrived(local: Path) -> dict[str, tuple[int, int]]:
    """Final files below `local` (no partials): name -> (inode, mtime)."""
    found = {}
    for path in local.rglob("*"):
        if path.is_file() and PARTIAL_SUFFIX not in path.name:
            info = path.stat()
            found[path.relative_to(local).as_posix()] = (info.st_ino, info.st_mtime_ns)
    return found


def test_three_renders_auto_downloaded_through_a_worker_killed_mid_way(make_account, make_user, allowed_dir, monkeypatch):
    monkeypatch.setattr(tasks.run_job, "delay", lambda *args: None)  # sent below, to this test's queue
    account = make_account(name="render farm")
    lead = make_user("lead", team=account.team, role="lead")
    scene = f"e2e_{uuid.uuid4().hex[:6]}"  # the farm folder outlives the test database's ids
    plans = [render_start(account=account, scene=f"{scene}_{n}", frames=FRAMES, actor=SYSTEM, interval=0.1) for n in range(TASKS)]
    local = allowed_dir / "downloads"
    job = jobs.job_create(
        kind="auto_download",
        account=account,
        user=lead,
        options={"task_id_list": [plan.task_id for plan in plans], "local_path": str(local), "sleep_time": 1},
    )
    queue = f"rvweb-dl-{uuid.uuid4().hex[:8]}"
    renderers = [threading.Thread(target=render_run, args=(plan,), kwargs={"actor": SYSTEM}, daemon=True) for plan in plans]
    first = _worker(queue)
    second: Service | None = None
    try:
        tasks.run_job.apply_async((job.pk,), queue=queue)
        for renderer in renderers:
            renderer.start()
        wait_for(lambda: len(_arrived(local)) >= 40, timeout=90, what=f"frames to arrive\n{first.log_tail()}")

        os.killpg(first.process.pid, signal.SIGKILL)  # the whole worker: no chance to store or stop anything
        first.process.wait()
        before = _arrived(local)
        second = _worker(queue)
        wait_for(
            lambda: TransferJob.objects.get(pk=job.pk).is_terminal, timeout=180, what=f"the job to end\n{second.log_tail(60)}"
        )
    finally:
        for renderer in renderers:
            renderer.join(60)
        for worker in (first, second):
            if worker is not None:
                worker.stop()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.process.pid, signal.SIGKILL)

    finished = TransferJob.objects.get(pk=job.pk)
    failures = list(finished.items.exclude(error="").values_list("server", "error")[:5])
    assert finished.status == TransferJob.Status.COMPLETED, (finished.error, failures)
    assert (finished.files_total, finished.files_done, finished.files_failed) == (TASKS * FRAMES, TASKS * FRAMES, 0)
    assert finished.items.values("server").distinct().count() == TASKS * FRAMES, "every frame exactly once"
    output = connector_for(account).area_root("output")
    after = _arrived(local)
    assert len(after) == TASKS * FRAMES
    for name in after:
        assert xxhash.xxh3_128((local / name).read_bytes()).digest() == xxhash.xxh3_128((output / name).read_bytes()).digest()
    assert {name: after[name] for name in before} == before, "a frame that had arrived was downloaded again"
    assert not [p for p in local.rglob("*") if PARTIAL_SUFFIX in p.name], "no partial file left"
    assert all(task.status == 25 for task in FarmTask.objects.filter(account=account))
