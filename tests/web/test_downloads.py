"""Downloads of render outputs, run in this process: each output once, only when complete, verified and
renamed into place; the conflict policies; unknown tasks and bad paths refused; parent and child tasks;
a restarted run downloads nothing again; the watchers stop when their tasks end or when cancelled."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.conftest import wait_for
from transfers import execution, jobs, kinds, services
from transfers.farm import connector_for
from transfers.farm.simulate import render_run, render_start
from transfers.farm_events import Actor, farm_event_record
from transfers.models import FarmTask, TransferItem, TransferJob

# The engine's thread reads and writes items on its own connection: the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Actor(user=None)


@pytest.fixture
def lead(team, make_user) -> Any:
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def account(team, make_account, farm_root) -> Any:
    return make_account(team, name="farm")


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from transfers import tasks

    ids: list[int] = []
    monkeypatch.setattr(tasks.run_job, "delay", ids.append)
    return ids


@pytest.fixture
def local(allowed_dir: Path) -> Path:
    return allowed_dir / "frames"


def _render(account: Any, *, frames: int = 4, children: int = 0, scene: str = "shot", interval: float = 0.0) -> FarmTask:
    """A finished render (or one rendering in a thread when `interval` > 0: see _render_in_background)."""
    plan = render_start(account=account, scene=scene, frames=frames, children=children, actor=SYSTEM, interval=interval)
    render_run(plan, actor=SYSTEM, sleep=lambda seconds: None)
    return FarmTask.objects.get(account=account, task_id=plan.task_id)


def _output(account: Any) -> Path:
    return connector_for(account).area_root("output")


def _start(kind: str, account: Any, lead: Any, **options: Any) -> TransferJob:
    return jobs.job_create(kind=kind, account=account, user=lead, options=options)


def _run(job: TransferJob) -> TransferJob:
    execution.job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def _same(a: Path, b: Path) -> bool:
    return xxhash.xxh3_128(a.read_bytes()).digest() == xxhash.xxh3_128(b.read_bytes()).digest()


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- download (once) ---------------------------------------------------------------------------------


def test_download_brings_every_frame_of_a_task_byte_for_byte_into_its_task_folder(account, lead, local, enqueued):
    task = _render(account, frames=5)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_total, job.files_done) == (5, 5)
    for path in _files(_output(account)):
        assert _same(_output(account) / path, local / path)
    assert _files(local) == _files(_output(account)), "nothing else: no partial file left behind"
    assert all(name.startswith(f"{task.output_folder}/") for name in _files(local))


def test_download_filename_format_false_puts_the_frames_straight_into_the_local_folder(account, lead, local, enqueued):
    task = _render(account, frames=2)

    job = _run(
        _start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), download_filename_format="false")
    )

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _files(local) == ["shot.0001.exr", "shot.0002.exr"]


def test_download_of_a_server_path_takes_only_that_subtree(account, lead, local, enqueued):
    task = _render(account, frames=2, children=2)
    layer = f"{task.output_folder}/layer_2"

    job = _run(_start("download", account, lead, server_path=layer, local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _files(local) == [f"{layer}/shot.0001.exr", f"{layer}/shot.0002.exr"]


def test_a_parent_task_downloads_the_frames_of_every_child(account, lead, local, enqueued):
    parent = _render(account, frames=3, children=2)

    job = _run(_start("download", account, lead, task_id_list=[parent.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert len(_files(local)) == 6
    assert {name.split("/")[1] for name in _files(local)} == {"layer_1", "layer_2"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task_id_list": [987654]}, "task_id_list: farm account 'farm' has no task 987654"),
        (
            {"task_id_list": [1], "local_path": "/etc/rvweb-frames"},
            "local_path: '/etc/rvweb-frames' is not under an allowed local root",
        ),
        ({"task_id_list": [1], "local_path": "frames"}, "local_path: 'frames' is not absolute"),
        ({"server_path": "../../etc"}, "server_path[0]"),
        ({"server_path": ["ok", "/a/../../b"]}, "server_path[1]"),
    ],
)
def test_a_download_naming_what_cannot_be_is_refused_before_any_job_exists(account, lead, options, message):
    with pytest.raises(kinds.OptionsInvalid) as refused:
        _start("download", account, lead, **options)

    assert message in str(refused.value)
    assert not TransferJob.objects.exists()


def test_the_default_local_path_is_renderfarm_sdk_under_an_allowed_root(account, lead, enqueued, settings, allowed_dir):
    settings.ALLOWED_LOCAL_ROOTS = [allowed_dir]
    task = _render(account, frames=1)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id]))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (allowed_dir / "renderfarm_sdk" / task.output_folder / "shot.0001.exr").exists()


# --- what an existing local file means -------------------------------------------------------------------


def _existing(local: Path, task: FarmTask, data: bytes | None, account: Any) -> Path:
    path = local / task.output_folder / "shot.0001.exr"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else (_output(account) / task.output_folder / "shot.0001.exr").read_bytes())
    return path


def test_skip_identical_leaves_an_identical_local_file_alone_and_counts_it_skipped(account, lead, local, enqueued):
    task = _render(account, frames=2)
    path = _existing(local, task, None, account)
    inode = path.stat().st_ino

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_done, job.files_skipped) == (2, 1)
    assert path.stat().st_ino == inode, "not written again"


def test_skip_identical_replaces_a_local_file_that_differs(account, lead, local, enqueued):
    task = _render(account, frames=1)
    path = _existing(local, task, b"an older render", account)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _same(path, _output(account) / task.output_folder / "shot.0001.exr")


def test_keep_both_writes_beside_a_local_file_that_differs(account, lead, local, enqueued):
    task = _render(account, frames=1)
    path = _existing(local, task, b"an older render", account)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), conflict="keep_both"))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert path.read_bytes() == b"an older render"
    assert _same(path.with_name("shot.0001 (2).exr"), _output(account) / task.output_folder / "shot.0001.exr")


def test_overwrite_replaces_even_an_identical_file(account, lead, local, enqueued):
    task = _render(account, frames=1)
    path = _existing(local, task, None, account)
    inode = path.stat().st_ino

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), conflict="overwrite"))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_skipped, path.stat().st_ino != inode) == (0, True)


def test_a_restarted_run_downloads_nothing_that_already_arrived(account, lead, local, enqueued):
    task = _render(account, frames=4)
    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))
    inodes = {name: (local / name).stat().st_ino for name in _files(local)}
    # As if the worker died after the files were renamed into place but before their items were stored.
    job.items.update(state=TransferItem.State.PENDING, checksum="", bytes_done=0)
    TransferJob.objects.filter(pk=job.pk).update(status=TransferJob.Status.QUEUED, finished_at=None, bytes_sent=0)

    job = _run(job)

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_done, job.files_skipped, job.bytes_sent) == (4, 4, 0)
    assert {name: (local / name).stat().st_ino for name in _files(local)} == inodes


# --- frames still being written ------------------------------------------------------------------------


def test_a_frame_still_being_written_is_not_taken_and_one_that_settled_is_taken_once(
    account, lead, local, enqueued, make_farm_task
):
    task = make_farm_task(account, scene="wip", status=25, frames_expected=2)
    folder = _output(account) / task.output_folder
    folder.mkdir(parents=True)
    (folder / "wip.0001.exr").write_bytes(b"x" * 1000)  # written, never announced, not growing: settles
    growing = folder / "wip.0002.exr"
    growing.write_bytes(b"y" * 10)
    stop = threading.Event()

    def grow() -> None:
        while not stop.wait(0.05):
            with open(growing, "ab") as handle:
                handle.write(b"y" * 100)

    writer = threading.Thread(target=grow, daemon=True)
    writer.start()
    try:
        job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))
    finally:
        stop.set()
        writer.join()

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _files(local) == [f"{task.output_folder}/wip.0001.exr"], "the growing frame is left for a later listing"
    assert job.items.count() == 1


# --- auto download ---------------------------------------------------------------------------------------


def _render_in_background(
    account: Any, *, frames: int, children: int = 0, interval: float = 0.1
) -> tuple[FarmTask, threading.Thread]:
    plan = render_start(account=account, scene="live", frames=frames, children=children, actor=SYSTEM, interval=interval)

    def run() -> None:
        from django.db import connection

        try:
            render_run(plan, actor=SYSTEM)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return FarmTask.objects.get(account=account, task_id=plan.task_id), thread


def test_auto_download_takes_each_frame_once_as_it_is_rendered_and_ends_with_the_task(account, lead, local, enqueued):
    task, renderer = _render_in_background(account, frames=12, children=2, interval=0.1)

    job = _run(_start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.5))
    renderer.join()

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_total, job.files_done, job.files_skipped) == (24, 24, 0)
    assert job.items.values("server").distinct().count() == 24, "every frame exactly once"
    for name in _files(_output(account)):
        assert _same(_output(account) / name, local / name)
    assert _files(local) == _files(_output(account))
    assert job.watch is not None and job.watch["tasks"][0]["ended"] is True


def test_auto_download_that_overwrites_sends_each_frame_once_across_its_rounds(account, lead, local, enqueued):
    # A round must not take again what the previous round finished but had not stored yet.
    task, renderer = _render_in_background(account, frames=10, children=2, interval=0.1)

    job = _run(
        _start(
            "auto_download",
            account,
            lead,
            task_id_list=[task.task_id],
            local_path=str(local),
            sleep_time=0.3,
            conflict="overwrite",
        )
    )
    renderer.join()

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_total, job.files_done, job.files_skipped) == (20, 20, 0)
    assert job.bytes_sent == job.bytes_total == sum((_output(account) / name).stat().st_size for name in _files(local))


def test_auto_download_after_task_completed_waits_for_the_end_then_takes_everything(account, lead, local, enqueued):
    task, renderer = _render_in_background(account, frames=6, interval=0.1)
    job = _start(
        "auto_download_after_task_completed", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.3
    )
    runner = threading.Thread(target=execution.job_run, kwargs={"job_id": job.pk}, daemon=True)
    runner.start()

    renderer.join()
    assert not local.exists() or not _files(local) or FarmTask.objects.get(pk=task.pk).status == 25
    runner.join(60)

    job.refresh_from_db()
    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert len(_files(local)) == 6


def test_a_cancelled_watcher_stops_and_keeps_what_arrived(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="never", status=5, frames_expected=100)  # rendering, for ever
    job = _start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.3)
    runner = threading.Thread(target=execution.job_run, kwargs={"job_id": job.pk}, daemon=True)
    runner.start()
    wait_for(lambda: TransferJob.objects.get(pk=job.pk).watch, timeout=20, what="the watcher's first listing")

    assert services.job_cancel(job=job, user=lead)
    runner.join(20)

    assert not runner.is_alive(), "the watcher must stop when cancelled"
    assert TransferJob.objects.get(pk=job.pk).status == TransferJob.Status.CANCELLED


def test_a_task_that_disappears_mid_watch_fails_the_job_saying_which(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="gone", status=5)
    job = _start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.3)
    runner = threading.Thread(target=execution.job_run, kwargs={"job_id": job.pk}, daemon=True)
    runner.start()
    wait_for(lambda: TransferJob.objects.get(pk=job.pk).watch, timeout=20, what="the watcher's first listing")

    task.delete()
    runner.join(20)

    job.refresh_from_db()
    assert job.status == TransferJob.Status.FAILED
    assert f"has no task {task.task_id}" in job.error


@pytest.mark.parametrize("code", [15, 50, 100, 77])
def test_a_status_the_sdk_crashes_on_keeps_the_watcher_waiting_then_the_end_finishes_it(
    account, lead, local, enqueued, make_farm_task, code
):
    task = make_farm_task(account, scene="odd", status=code)
    job = _start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.3)
    runner = threading.Thread(target=execution.job_run, kwargs={"job_id": job.pk}, daemon=True)
    runner.start()
    wait_for(lambda: TransferJob.objects.get(pk=job.pk).watch, timeout=20, what="the watcher's first listing")
    ended = code == 15  # a user's stop: ended (the SDK does not know it)

    if not ended:
        assert runner.is_alive() or TransferJob.objects.get(pk=job.pk).status == TransferJob.Status.RUNNING
        farm_event_record(account=account, event={"type": "task_finished", "task_id": task.task_id, "status": 25}, actor=SYSTEM)
    runner.join(20)

    job.refresh_from_db()
    assert not runner.is_alive()
    assert job.status == TransferJob.Status.COMPLETED, job.error


def test_the_watcher_wakes_at_once_when_the_farm_announces_a_frame(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="ev", status=5, frames_expected=1)
    job = _start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=60)
    runner = threading.Thread(target=execution.job_run, kwargs={"job_id": job.pk}, daemon=True)
    runner.start()
    wait_for(lambda: TransferJob.objects.get(pk=job.pk).watch, timeout=20, what="the watcher's first listing")
    frame = _output(account) / task.output_folder / "ev.0001.exr"
    frame.parent.mkdir(parents=True, exist_ok=True)
    frame.write_bytes(os.urandom(5000))

    farm_event_record(
        account=account,
        event={"type": "frame_finished", "task_id": task.task_id, "path": f"{task.output_folder}/ev.0001.exr", "size": 5000},
        actor=SYSTEM,
    )

    arrived = local / task.output_folder / "ev.0001.exr"
    wait_for(arrived.exists, timeout=10, what="the frame to arrive well before the 60 s poll")
    services.job_cancel(job=job, user=lead)
    runner.join(20)
    assert _same(arrived, frame)


def test_a_polling_watcher_ends_when_unannounced_frames_settled_at_different_listings(
    account, lead, local, enqueued, make_farm_task
):
    task = make_farm_task(account, scene="quiet", status=5, frames_expected=3)
    folder = _output(account) / task.output_folder
    folder.mkdir(parents=True)
    job = _start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.2)
    runner = threading.Thread(target=execution.job_run, kwargs={"job_id": job.pk}, daemon=True)
    runner.start()

    def listing() -> str:
        return str((TransferJob.objects.get(pk=job.pk).watch or {}).get("next_poll_at", ""))

    try:
        # Never announced; one written after each listing, so each settles one listing after the one before
        # (settled at listings of alternating parity: what made the watcher see one "settling" for ever).
        for number in range(1, 4):
            seen = listing()
            wait_for(lambda seen=seen: listing() != seen, timeout=20, what="the watcher's next listing")
            (folder / f"quiet.{number:04d}.exr").write_bytes(os.urandom(3000))
        for number in range(1, 4):
            arrived = local / task.output_folder / f"quiet.{number:04d}.exr"
            wait_for(arrived.exists, timeout=20, what=f"frame {number} to settle and arrive")
        farm_event_record(account=account, event={"type": "task_finished", "task_id": task.task_id, "status": 25}, actor=SYSTEM)
        runner.join(20)
        assert not runner.is_alive(), "the watcher must end once its task ended and its frames settled"
    finally:
        if runner.is_alive():
            services.job_cancel(job=TransferJob.objects.get(pk=job.pk), user=lead)
            runner.join(20)

    job.refresh_from_db()
    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _files(local) == _files(_output(account))
    assert job.items.count() == 3


def test_an_auto_download_given_a_server_path_takes_only_what_lies_below_it(account, lead, local, enqueued):
    parent = _render(account, frames=2, children=2)
    layer = f"{parent.output_folder}/layer_2"

    job = _run(
        _start(
            "auto_download",
            account,
            lead,
            task_id_list=[parent.task_id],
            server_path=layer,
            local_path=str(local),
            sleep_time=0.2,
        )
    )

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _files(local) == [f"{layer}/shot.0001.exr", f"{layer}/shot.0002.exr"]


def test_a_download_of_announced_frames_does_not_wait_for_a_second_listing(account, lead, local, enqueued, monkeypatch):
    from transfers.kinds import download

    task = _render(account, frames=2)
    monkeypatch.setattr(download, "_STABLE_GAP", 30.0)  # a second listing would show as a 30 s wait

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert job.duration is not None and job.duration < 20
