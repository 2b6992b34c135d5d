"""A split in a real worker killed mid-way: another worker's recovery round takes the work over once
its lease has lapsed, and the manifest ends cut into the right parts, each entry copied once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import ROOT, Service, _subprocess_env, wait_for
from transfers import locks, manifest_work, tasks
from transfers.models import Manifest, ManifestEntry, ManifestWork

pytestmark = pytest.mark.django_db(transaction=True)

ENTRIES, SIZE = 80_000, 8_000


def _worker(queue: str) -> Service:
    """A worker on a queue of this test's own (the session's worker must not take the work), with
    recovery every second; wait for it with _ready."""
    env = _subprocess_env() | {"RVWEB_QUEUE": queue, "RVWEB_RECOVER_EVERY": "1"}
    log = Path(settings.DATA_DIR) / "logs" / f"work-worker-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "wb")  # noqa: SIM115 - the child owns it
    args = [sys.executable, "-m", "celery", "-A", "rvweb", "worker", "-Q", queue, "-c", "1", "-l", "INFO",
            "--without-gossip", "--without-mingle", "--hostname", f"mw-{uuid.uuid4().hex[:6]}@%h"]  # fmt: skip
    # Its own process group: the kill below takes its pool process too, and none outlives the test.
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return Service(process=process, log=log)


def _ready(worker: Service) -> None:
    wait_for(lambda: "ready." in worker.log.read_text(errors="replace"), timeout=60, what="the worker to start")


def test_a_split_whose_worker_is_killed_mid_way_is_finished_by_another(
    monkeypatch: pytest.MonkeyPatch, make_account: Any
) -> None:
    account = make_account(name="farm")
    original = Manifest.objects.create(name="huge", account=account, state=Manifest.State.READY)
    ManifestEntry.objects.bulk_create(
        (
            ManifestEntry(manifest=original, number=n, local=f"/a/{n}.exr", server=f"/a/{n}.exr", size=1)
            for n in range(1, ENTRIES + 1)
        ),
        batch_size=10_000,
    )
    Manifest.objects.filter(pk=original.pk).update(entry_count=ENTRIES, entries_stored=ENTRIES, total_bytes=ENTRIES)
    original.refresh_from_db()
    queue = f"rvweb-mw-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(tasks.manifest_work, "delay", lambda work_id: tasks.manifest_work.apply_async((work_id,), queue=queue))
    # Both started at once: the first, on the queue the split is sent to, is killed; the second, on
    # another queue (its recovery round enqueues there), takes the work over once the lease lapses.
    first, second = _worker(queue), _worker(f"{queue}-2")
    try:
        _ready(first)
        _ready(second)
        work = manifest_work.manifest_split_begin(manifest=original, max_resources_number=SIZE, user=None)
        wait_for(
            lambda: Manifest.objects.filter(split_from=original, state=Manifest.State.READY).exists(),
            timeout=60,
            interval=0.02,
            what=f"a first part\n{first.log_tail()}",
        )
        os.killpg(first.process.pid, signal.SIGKILL)  # the whole worker: no chance to store or stop anything
        first.process.wait()
        killed_at = time.monotonic()
        work.refresh_from_db()
        assert work.state == ManifestWork.State.RUNNING, "killed mid-way (the split was too quick to interrupt)"
        parts_before = list(work.result["parts"])
        wait_for(
            lambda: ManifestWork.objects.get(pk=work.pk).state == ManifestWork.State.DONE,
            timeout=90,
            what=f"the work to be taken over\n{second.log_tail(60)}",
        )
        taken_over_in = time.monotonic() - killed_at
    finally:
        for worker in (first, second):
            worker.stop()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)

    work.refresh_from_db()
    made = list(Manifest.objects.filter(split_from=original).order_by("pk"))
    assert work.result["parts"] == parts_before == [m.pk for m in made], "no part made twice"
    assert [(m.entry_count, m.state) for m in made] == [(SIZE, "ready")] * (ENTRIES // SIZE)
    assert ManifestEntry.objects.filter(manifest__split_from=original).count() == ENTRIES, "each entry copied once"
    # The lease's lifetime and recovery's grace, plus the round's second.
    assert taken_over_in < locks.LEASE_SECONDS + tasks._UNHELD_GRACE + 10
