"""The download kinds attacked: other teams through every door, local paths and farm outputs that try to
escape, names that collide, inputs of the wrong type or size, a full disk, a lost broker. Each test is a
behaviour that must hold; each one that did not hold when written is named in the branch's report."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.web.test_downloads import _files, _output, _render, _run, _same, _start, account, enqueued, lead, local
from transfers import execution, kinds, progress, services
from transfers.engine.paths import PARTIAL_SUFFIX
from transfers.farm_events import Actor, farm_event_record
from transfers.models import FarmFrame, TransferItem, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["account", "enqueued", "lead", "local"]  # fixtures shared with test_downloads

SYSTEM = Actor(user=None)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the allowed roots and the farm (the farm lives in tmp_path/farm)."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


# --- names that collide --------------------------------------------------------------------------------


def test_filename_format_false_with_two_tasks_of_one_scene_loses_no_frame(account, lead, local, enqueued):
    first = _render(account, frames=2, scene="shot")
    second = _render(account, frames=2, scene="shot")

    job = _run(
        _start(
            "download",
            account,
            lead,
            task_id_list=[first.task_id, second.task_id],
            local_path=str(local),
            download_filename_format="false",
        )
    )

    assert job.status == TransferJob.Status.COMPLETED, job.error
    arrived = sorted((local / name).read_bytes() for name in _files(local))
    sent = sorted((_output(account) / name).read_bytes() for name in _files(_output(account)))
    assert arrived == sent, "every frame of both tasks is kept locally, none written over by the other task's"


# --- other teams, through every door ---------------------------------------------------------------------


def test_no_door_starts_a_download_on_another_team_s_account_or_task(account, lead, make_team, make_user, make_account):
    other_team = make_team("Other")
    theirs = make_account(other_team, name="theirs")
    their_task = _render(theirs, frames=1, scene="secret")
    outsider = make_user("outsider", team=other_team, role="lead")
    body = {"task_id_list": [their_task.task_id]}

    by_jobs = _post(_client(lead), "/api/jobs/", {"kind": "download", "account": theirs.pk, "options": body})
    by_url = _post(_client(lead), f"/api/accounts/{theirs.pk}/download/", body)
    by_page = _client(lead).post(f"/farm/{theirs.pk}/download", {"kind": "download", "task_id_list": [their_task.task_id]})
    # Their task id named on our own account: the farm of our account has no such task.
    on_ours = _post(_client(lead), f"/api/accounts/{account.pk}/download/", body)
    # And the other way round: their lead cannot name our account.
    reverse = _post(_client(outsider), f"/api/accounts/{account.pk}/auto_download/", {"task_id_list": [1]})

    assert by_jobs.status_code == 400 and "account" in by_jobs.json()["error"]["fields"], by_jobs.content
    assert (by_url.status_code, by_page.status_code, reverse.status_code) == (404, 404, 404)
    assert on_ours.status_code == 400 and f"has no task {their_task.task_id}" in on_ours.json()["error"]["message"]
    assert not TransferJob.objects.exists()


def test_another_team_s_download_job_is_invisible_and_uncontrollable(account, lead, local, make_team, make_user, enqueued):
    task = _render(account, frames=1)
    job = _start("download", account, lead, task_id_list=[task.task_id], local_path=str(local))
    outsider = _client(make_user("outsider", team=make_team("Other"), role="lead"))

    assert outsider.get(f"/api/jobs/{job.pk}/").status_code == 404
    assert outsider.get(f"/jobs/{job.pk}/").status_code == 404
    assert outsider.post(f"/api/jobs/{job.pk}/cancel/").status_code == 404
    assert str(local) not in outsider.get("/api/jobs/").content.decode()


# --- options of the wrong type, through each door ----------------------------------------------------------

BAD_OPTIONS = [
    ({"task_id_list": "5"}, "task_id_list"),
    ({"task_id_list": [True]}, "task_id_list[0]"),
    ({"task_id_list": [1.5]}, "task_id_list[0]"),
    ({"task_id_list": [1], "sleep_time": "nan"}, "sleep_time"),
    ({"task_id_list": [1], "sleep_time": "1e999"}, "sleep_time"),
    ({"task_id_list": [1], "sleep_time": 0.1}, "sleep_time"),
    ({"task_id_list": [1], "sleep_time": 3601}, "sleep_time"),
    ({"task_id_list": [1], "is_test_stop": "maybe"}, "is_test_stop"),
    ({"task_id_list": [1], "download_filename_format": True}, "download_filename_format"),
    ({"task_id_list": [1], "server_path": {"a": 1}}, "server_path"),
    ({"task_id_list": [1], "local_path": "/tmp/a\x00b"}, "local_path"),
    ({"task_id_list": [1], "local_path": ["/tmp"]}, "local_path"),
    ({"task_id_list": [1], "max_speed": -1}, "max_speed"),
    ({"task_id_list": [1], "conflict": "delete_theirs"}, "conflict"),
    ({"task_id_list": []}, "task_id_list"),
    ({"task_id_list": list(range(1, 1002))}, "task_id_list"),
]


@pytest.mark.parametrize(("options", "named"), BAD_OPTIONS)
def test_auto_download_options_of_the_wrong_type_are_a_400_naming_the_option(account, lead, options, named):
    _render(account, frames=1)

    by_jobs = _post(_client(lead), "/api/jobs/", {"kind": "auto_download", "account": account.pk, "options": options})
    by_url = _post(_client(lead), f"/api/accounts/{account.pk}/auto_download/", options)

    for response in (by_jobs, by_url):
        assert response.status_code == 400, response.content
        assert named in response.json()["error"]["message"]
    assert not TransferJob.objects.exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--sleep_time", "nan"], "sleep_time"),
        (["--sleep_time", "0"], "sleep_time"),
        (["--is_test_stop", "maybe"], "is_test_stop"),
        (["--local_path", "/tmp/a\x00b"], "local_path"),
        (["--task_id_list", "x"], "task_id_list"),
    ],
)
def test_the_auto_download_command_says_which_option_is_wrong(account, flags, named):
    task = _render(account, frames=1)
    base = ["--account", account.name, "--task_id_list", str(task.task_id)]

    with pytest.raises(CommandError) as refused:
        call_command("auto_download", *(base if flags[0] != "--task_id_list" else base[:2]), *flags)

    assert named in str(refused.value)
    assert not TransferJob.objects.exists()


def test_the_farm_page_form_refuses_a_sleep_time_out_of_range_on_the_page(account, lead):
    task = _render(account, frames=1)

    for sleep_time in ("nan", "0.01", "1e999", "-5"):
        response = _client(lead).post(
            f"/farm/{account.pk}/download",
            {"kind": "auto_download", "task_id_list": [task.task_id], "sleep_time": sleep_time, "conflict": "skip_identical"},
        )
        assert response.status_code == 200, sleep_time
    assert not TransferJob.objects.exists()


def test_a_thousand_task_ids_make_one_job_in_a_few_queries(account, lead, local, make_farm_task):
    """The request only records the job: its queries do not grow with the tasks named (how long it takes is bench 7's)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ids = [make_farm_task(account, scene=f"s{n}", status=25).task_id for n in range(1000)]
    client = _client(lead)

    with CaptureQueriesContext(connection) as queries:
        response = _post(client, f"/api/accounts/{account.pk}/download/", {"task_id_list": ids, "local_path": str(local)})

    assert response.status_code == 201, response.content[:300]
    assert len(queries) < 40, [q["sql"][:120] for q in queries.captured_queries]


# --- local paths that try to escape --------------------------------------------------------------------------


def test_a_local_path_through_a_symlink_out_of_the_allowed_roots_is_refused(account, lead, allowed_dir, outside):
    task = _render(account, frames=1)
    (allowed_dir / "out").symlink_to(outside)

    climbing = Path(f"{allowed_dir}/../../../../../../etc")
    for path in (allowed_dir / "out", allowed_dir / "out" / "deeper", allowed_dir / "x" / ".." / "out", climbing):
        with pytest.raises(kinds.OptionsInvalid, match="not under an allowed local root"):
            _start("download", account, lead, task_id_list=[task.task_id], local_path=str(path))
    assert not TransferJob.objects.exists()


def test_a_local_path_swapped_for_a_symlink_after_the_job_was_made_writes_nothing_outside(
    account, lead, local, outside, enqueued
):
    task = _render(account, frames=2)
    local.mkdir()
    job = _start("download", account, lead, task_id_list=[task.task_id], local_path=str(local))
    local.rmdir()
    local.symlink_to(outside)

    job = _run(job)

    assert job.status == TransferJob.Status.FAILED
    assert "local_path" in job.error and "not under an allowed local root" in job.error
    assert list(outside.iterdir()) == []


def test_a_task_folder_inside_the_local_path_that_is_a_symlink_out_is_never_written_through(
    account, lead, local, outside, enqueued
):
    task = _render(account, frames=2)
    local.mkdir()
    (local / task.output_folder).symlink_to(outside)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert list(outside.iterdir()) == [], "nothing written through the symlink"
    assert job.status != TransferJob.Status.COMPLETED
    assert job.files_failed == 2 or "symlink" in job.error


def test_a_local_file_that_is_a_symlink_out_is_replaced_not_written_through(account, lead, local, outside, enqueued):
    task = _render(account, frames=1)
    precious = outside / "precious"
    precious.write_bytes(b"keep me")
    (local / task.output_folder).mkdir(parents=True)
    (local / task.output_folder / "shot.0001.exr").symlink_to(precious)

    for conflict in ("skip_identical", "overwrite", "keep_both"):
        _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), conflict=conflict))
        assert precious.read_bytes() == b"keep me", conflict


# --- farm outputs that try to escape -------------------------------------------------------------------------


def test_a_symlinked_task_folder_in_the_farm_output_area_lists_and_reads_nothing_outside(
    account, lead, local, outside, enqueued, make_farm_task
):
    secret = outside / "secret"
    secret.mkdir()
    (secret / "passwords.txt").write_bytes(b"hunter2")
    task = make_farm_task(account, scene="evil", status=25, frames_expected=1)
    output = _output(account)
    output.mkdir(parents=True, exist_ok=True)
    (output / task.output_folder).symlink_to(secret)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert not local.exists() or _files(local) == []
    assert "passwords.txt" not in json.dumps(list(job.items.values_list("server", "local", "error")))


def test_symlinks_fifos_and_dot_names_planted_among_the_farm_outputs_are_never_read(
    account, lead, local, outside, enqueued, make_farm_task
):
    task = make_farm_task(account, scene="mix", status=25, frames_expected=1)
    folder = _output(account) / task.output_folder
    folder.mkdir(parents=True)
    (folder / "mix.0001.exr").write_bytes(b"frame")
    (outside / "secret").write_bytes(b"hunter2")
    (folder / "link.exr").symlink_to(outside / "secret")
    os.mkfifo(folder / "pipe.exr")

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _files(local) == [f"{task.output_folder}/mix.0001.exr"]


# --- frames announced but not what was announced ----------------------------------------------------------


def _announce(account: Any, task: Any, name: str, data: bytes) -> Path:
    frame = _output(account) / task.output_folder / name
    frame.parent.mkdir(parents=True, exist_ok=True)
    frame.write_bytes(data)
    farm_event_record(
        account=account,
        event={"type": "frame_finished", "task_id": task.task_id, "path": f"{task.output_folder}/{name}", "size": len(data)},
        actor=SYSTEM,
    )
    return frame


def test_a_frame_cut_short_after_it_was_announced_is_never_called_done(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="cut", status=25, frames_expected=1)
    frame = _announce(account, task, "cut.0001.exr", os.urandom(5000))
    os.truncate(frame, 2000)  # the render manager rewrites it, or a disk hiccup cut it

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    done = list(job.items.filter(state=TransferItem.State.DONE).values_list("server", "size"))
    assert (f"{task.output_folder}/cut.0001.exr", 2000) not in done, "2000 of the 5000 announced bytes is not the frame"
    assert job.status != TransferJob.Status.COMPLETED or job.files_done == 0


def test_a_frame_announced_then_removed_fails_its_item_saying_which(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="gone", status=25, frames_expected=2)
    kept = _announce(account, task, "gone.0001.exr", os.urandom(3000))
    _announce(account, task, "gone.0002.exr", os.urandom(3000)).unlink()

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert _same(kept, local / task.output_folder / "gone.0001.exr")
    missing = job.items.get(server=f"{task.output_folder}/gone.0002.exr")
    assert missing.state == TransferItem.State.FAILED and missing.error
    assert job.status != TransferJob.Status.COMPLETED


# --- what is already at a frame's local name ---------------------------------------------------------------


def test_a_local_folder_where_a_frame_should_go_fails_that_frame_alone_with_a_clear_reason(account, lead, local, enqueued):
    task = _render(account, frames=3)
    (local / task.output_folder / "shot.0002.exr" / "inside").mkdir(parents=True)

    for conflict in ("skip_identical", "overwrite"):
        job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), conflict=conflict))
        blocked = job.items.get(server=f"{task.output_folder}/shot.0002.exr")
        assert blocked.state == TransferItem.State.FAILED, conflict
        assert "folder" in blocked.error.lower() or "directory" in blocked.error.lower(), blocked.error
        assert job.files_done == 2 and (local / task.output_folder / "shot.0002.exr" / "inside").is_dir()


def test_keep_both_writes_beside_a_local_folder_of_the_frame_s_name(account, lead, local, enqueued):
    task = _render(account, frames=1)
    (local / task.output_folder / "shot.0001.exr").mkdir(parents=True)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), conflict="keep_both"))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _same(local / task.output_folder / "shot.0001 (2).exr", _output(account) / task.output_folder / "shot.0001.exr")


def test_keep_both_never_takes_the_name_of_another_output_of_the_same_task(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="k", status=25, frames_expected=2)
    folder = _output(account) / task.output_folder
    folder.mkdir(parents=True)
    (folder / "k.exr").write_bytes(b"new k")
    (folder / "k (2).exr").write_bytes(b"new k (2)")
    (local / task.output_folder).mkdir(parents=True)
    (local / task.output_folder / "k.exr").write_bytes(b"old k")

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), conflict="keep_both"))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    held = sorted((local / name).read_bytes() for name in _files(local))
    assert held == [b"new k", b"new k (2)", b"old k"]


# --- a full destination disk ----------------------------------------------------------------------------------


def test_a_download_onto_a_full_disk_ends_saying_so_keeps_its_finished_frames_and_resumes(
    account, lead, local, enqueued, make_farm_task, monkeypatch
):
    from tests.engine.disks import limited_disk

    mib = 1 << 20
    task = make_farm_task(account, scene="big", status=25, frames_expected=6)
    folder = _output(account) / task.output_folder
    folder.mkdir(parents=True)
    for number in range(1, 7):
        (folder / f"big.{number:04d}.exr").write_bytes(os.urandom(mib))

    # Emulated: a real tmpfs at the local path would be another filesystem, which the walk refuses.
    with limited_disk(local, int(3.5 * mib), monkeypatch, emulated=True):
        job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local), pool_size=2))

        assert job.status != TransferJob.Status.COMPLETED
        assert "destination full" in job.error, job.error
        assert "local folder" in job.error and str(local) in job.error, "names the folder, path unmangled"
        kept = [name for name in _files(local) if PARTIAL_SUFFIX not in name]  # a partial is kept for the resume
        assert 1 <= len(kept) <= 3 and job.files_done == len(kept)
        for name in kept:
            assert _same(local / name, _output(account) / name), "what arrived is whole"
        assert job.items.filter(state=TransferItem.State.DONE).count() == len(kept)

        moved = local.parent / "moved"
        (local / task.output_folder).rename(moved)  # the user frees the room; a retry brings the rest
        assert services.job_retry(job=job, user=lead)
        job = _run(job)

    assert job.status == TransferJob.Status.COMPLETED, job.error
    moved_away = [f"{task.output_folder}/{p.name}" for p in moved.iterdir() if PARTIAL_SUFFIX not in p.name]
    assert sorted(_files(local) + moved_away) == _files(_output(account))


def test_a_local_folder_swapped_for_a_symlink_between_its_check_and_its_open_fails_the_job_saying_why(
    account, lead, local, allowed_dir, enqueued, monkeypatch
):
    from transfers import downloads, run_context

    task = _render(account, frames=1)
    local.mkdir()
    elsewhere = allowed_dir / "elsewhere"  # inside the allowed root: only the swap itself is wrong
    elsewhere.mkdir()
    checked = downloads.local_root

    def check_then_swap(*args: Any, create: bool = False, **kwargs: Any) -> Path:
        found = checked(*args, create=create, **kwargs)
        if create:  # the worker's check, just before it opens the folder
            local.rmdir()
            local.symlink_to(elsewhere)
        return found

    monkeypatch.setattr(run_context.downloads, "local_root", check_then_swap)

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.FAILED
    assert "internal error" not in job.error and "symlink" in job.error, job.error
    assert list(elsewhere.iterdir()) == []


# --- the broker or the channel layer gone while a watcher waits ------------------------------------------


def test_a_watcher_keeps_downloading_while_the_channel_layer_is_down(account, lead, local, enqueued, monkeypatch):
    class Down:
        async def group_send(self, group: str, message: Any) -> None:
            raise ConnectionError("Redis is gone")

    monkeypatch.setattr(progress, "get_channel_layer", lambda *alias: Down())
    task = _render(account, frames=4)

    job = _run(_start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.2))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert len(_files(local)) == 4


# --- secrets ---------------------------------------------------------------------------------------------------


def test_the_account_s_access_key_is_in_no_download_job_option_answer_or_page(account, lead, local, enqueued, make_user, team):
    account.access_key = "AKIA-SECRET-DO-NOT-SHOW"
    account.save()
    task = _render(account, frames=1)
    client = _client(lead)
    started = _post(client, f"/api/accounts/{account.pk}/download/", {"task_id_list": [task.task_id], "local_path": str(local)})
    job = _run(TransferJob.objects.get(pk=started.json()["id"]))

    seen = [
        started.content.decode(),
        json.dumps(job.options),
        json.dumps(job.watch),
        client.get(f"/api/jobs/{job.pk}/").content.decode(),
        client.get(f"/jobs/{job.pk}/").content.decode(),
        client.get(f"/farm/{account.pk}/").content.decode(),
        client.get("/api/jobs/").content.decode(),
    ]
    assert not [text for text in seen if "AKIA-SECRET" in text]


# --- sizes: many paths, long strings, many outputs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"server_path": ["x"] * 1001}, "server_path"),
        ({"server_path": "x" * 5000}, "server_path"),
        ({"server_path": ["x" * 5000]}, "server_path"),
        ({"server_ip": "1" * 5000}, "server_ip"),
        ({"engine_type": "e" * 5000}, "engine_type"),
    ],
)
def test_lists_and_strings_in_download_options_are_bounded(account, lead, options, named):
    task = _render(account, frames=1)
    options = {"task_id_list": [task.task_id], **options}

    response = _post(_client(lead), f"/api/accounts/{account.pk}/download/", options)

    assert response.status_code == 400, response.content[:200]
    assert named in response.json()["error"]["message"]
    assert not TransferJob.objects.exists()


def test_a_task_with_thousands_of_outputs_downloads_each_once(account, lead, local, enqueued, make_farm_task):
    import time

    task = make_farm_task(account, scene="many", status=25, frames_expected=3000)
    folder = _output(account) / task.output_folder
    for layer in range(3):
        (folder / f"l{layer}").mkdir(parents=True)
        for number in range(1000):
            (folder / f"l{layer}" / f"many.{number:04d}.exr").write_bytes(b"%d" % number)

    started = time.monotonic()
    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_total, job.files_done, job.items.values("server").distinct().count()) == (3000, 3000, 3000)
    assert len(_files(local)) == 3000
    assert time.monotonic() - started < 120


def test_an_auto_download_of_a_thousand_ended_tasks_ends_in_reasonable_time(account, lead, local, enqueued, make_farm_task):
    import time

    ids = [make_farm_task(account, scene=f"s{n}", status=25, frames_expected=0).task_id for n in range(1000)]
    job = _start("auto_download", account, lead, task_id_list=ids, local_path=str(local), sleep_time=0.2)

    started = time.monotonic()
    job = _run(job)

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert len(job.watch["tasks"]) == 1000 and all(task["ended"] for task in job.watch["tasks"])
    assert time.monotonic() - started < 60  # 13 s here, one listing: each poll costs ~10 ms a task


def _run_in_thread(job: TransferJob, seconds: float) -> TransferJob:
    def run() -> None:
        from django.db import connection

        try:
            execution.job_run(job_id=job.pk)
        finally:
            connection.close()  # this thread's own connection: PostgreSQL drops the test database after

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(seconds)
    if runner.is_alive():
        services.job_cancel(job=job, user=job.created_by)
        runner.join(20)
    job.refresh_from_db()
    return job


def test_an_auto_download_of_an_ended_task_with_an_empty_output_file_ends(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="empty", status=25, frames_expected=2)
    folder = _output(account) / task.output_folder
    folder.mkdir(parents=True)
    (folder / "empty.0001.exr").write_bytes(b"frame")
    (folder / "render.log").write_bytes(b"")  # an empty file the renderer left: complete, and empty

    job = _run_in_thread(
        _start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.2), 15
    )

    assert job.status == TransferJob.Status.COMPLETED, f"the watcher must end with its task: {job.status} {job.watch}"
    assert _files(local) == [f"{task.output_folder}/empty.0001.exr", f"{task.output_folder}/render.log"]


def test_an_auto_download_of_an_ended_task_with_a_frame_cut_short_after_its_announcement_fails_saying_which(
    account, lead, local, enqueued, make_farm_task
):
    task = make_farm_task(account, scene="cut", status=25, frames_expected=1)
    frame = _announce(account, task, "cut.0001.exr", os.urandom(5000))
    os.truncate(frame, 2000)

    job = _run_in_thread(
        _start("auto_download", account, lead, task_id_list=[task.task_id], local_path=str(local), sleep_time=0.2), 10
    )

    assert not job.items.filter(state=TransferItem.State.DONE).exists()
    assert job.status == TransferJob.Status.FAILED, "ended on its own, not waiting for ever"
    assert f"{task.output_folder}/cut.0001.exr was announced finished at 5000 bytes and now holds 2000" in job.error


def test_farm_events_cannot_announce_a_frame_outside_its_task_folder(account, make_farm_task):
    from transfers.farm_events import EventInvalid

    task = make_farm_task(account, scene="ev", status=5, frames_expected=1)
    for path in ("../../../etc/passwd", "/etc/passwd", f"{task.output_folder}/../other/x.exr", "other_task/x.exr"):
        with pytest.raises(EventInvalid):
            farm_event_record(
                account=account, event={"type": "frame_finished", "task_id": task.task_id, "path": path, "size": 1}, actor=SYSTEM
            )
    assert not FarmFrame.objects.exists()


def test_a_local_path_inside_the_farm_s_own_storage_is_refused_even_under_an_allowed_root(
    account, lead, make_account, make_team, settings, farm_root
):
    task = _render(account, frames=1)
    theirs = make_account(make_team("Other"), name="theirs")
    settings.ALLOWED_LOCAL_ROOTS = [farm_root.parent]  # an allowed root that holds the farm's folders
    from transfers.farm import connector_for

    for target in (connector_for(theirs).area_root("input"), connector_for(account).area_root("output") / "x", farm_root):
        with pytest.raises(kinds.OptionsInvalid, match="farm"):
            _start("download", account, lead, task_id_list=[task.task_id], local_path=str(target))
    assert not TransferJob.objects.exists()


def test_a_download_of_an_ended_task_brings_its_empty_output_files_too(account, lead, local, enqueued, make_farm_task):
    task = make_farm_task(account, scene="empty", status=25, frames_expected=1)
    folder = _output(account) / task.output_folder
    folder.mkdir(parents=True)
    (folder / "empty.0001.exr").write_bytes(b"frame")
    (folder / "render.log").write_bytes(b"")

    job = _run(_start("download", account, lead, task_id_list=[task.task_id], local_path=str(local)))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert _files(local) == [f"{task.output_folder}/empty.0001.exr", f"{task.output_folder}/render.log"]


def test_auto_download_refuses_a_server_path_that_escapes_the_output_area(account, lead, local):
    task = _render(account, frames=1)

    for kind in ("auto_download", "auto_download_after_task_completed"):
        with pytest.raises(kinds.OptionsInvalid, match=r"server_path\[0\]"):
            _start(kind, account, lead, task_id_list=[task.task_id], server_path="../../../etc", local_path=str(local))
    assert not TransferJob.objects.exists()
