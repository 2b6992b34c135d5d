"""A Fox Renderfarm account end to end in the real worker: the fake farm API (tests/fox_farm.py) signs
and answers; the fake transmitter (tests/fake_transmitter), first on the worker's PATH, moves the
files in the same storage folder and prints what the real one prints. No byte leaves 127.0.0.1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.conftest import wait_for
from tests.fox_farm import task_info
from transfers import jobs, services
from transfers.models import FarmAccount, TransferItem, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)


def _knobs(fox_farm: Any, **knobs: object) -> None:
    """How the fake transmitter behaves in this test (read by each of its runs)."""
    (fox_farm.storage_root / "knobs.json").write_text(json.dumps(knobs))


def _runs(fox_farm: Any) -> list[dict[str, Any]]:
    log = fox_farm.storage_root / "runs.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _ended(job: TransferJob) -> TransferJob | None:
    job.refresh_from_db()
    return job if job.is_terminal else None


def _wait_end(job: TransferJob, worker: Any, timeout: float = 90) -> TransferJob:
    wait_for(lambda: _ended(job), timeout=timeout, what=f"job {job.pk} to end\n{worker.log_tail()}")
    return job


def _why(job: TransferJob) -> str:
    """The job's error and its first items' (an assertion's message)."""
    return f"{job.error!r}; items: {list(job.items.exclude(error='').values_list('error', flat=True)[:3])}"


def _files(folder: Path, count: int, size: int = 20_000) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for number in range(count):
        path = folder / f"shot_{number:03d}.exr"
        path.write_bytes(os.urandom(size + number))
        paths.append(path)
    return paths


def _upload(account: FarmAccount, paths: list[Path], user: Any, **options: Any) -> TransferJob:
    data = json.dumps({"asset": [{"local": str(p), "server": f"/project/{p.name}"} for p in paths]}).encode()
    manifest = services.manifest_import(name="fox", account=account, data=data, user=user)
    return jobs.job_create(kind="upload_asset", account=account, manifest=manifest, user=user, options=options)


def test_an_upload_goes_through_the_transmitter_on_the_quickest_line_and_is_verified(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port, closed_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True), ("CTCC", closed_port, False)])
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    paths = _files(allowed_dir / "up", 5)

    job = _wait_end(_upload(account, paths, lead), celery_worker)

    assert (job.status, job.files_done, job.files_failed) == (TransferJob.Status.COMPLETED, 5, 0), _why(job)
    inbox = fox_farm.input_dir()
    for path in paths:
        assert (inbox / "project" / path.name).read_bytes() == path.read_bytes()
    checksums = dict(job.items.values_list("local", "checksum"))
    assert checksums[str(paths[0])] == "xxh3-128:" + xxhash.xxh3_128(paths[0].read_bytes()).hexdigest()
    route = job.route
    assert (route["transport"], route["line"], route["engine"], route["port"]) == (
        "transmitter",
        "HKCT",
        "aspera",
        listening_port,
    )
    assert route["measured"]["CTCC"] is None and route["measured"]["HKCT"] is not None and route["version"] == "1.1.5"
    assert "quickest" in route["reason"]
    runs = _runs(fox_farm)
    assert len(runs) == 2, "5 files in runs of RVWEB_TRANSMITTER_BATCH=4 (tests/conftest.py): two runs"
    for run in runs:
        argv = run["argv"]
        assert [_flag(argv, f) for f in ("-E", "-H", "-P", "-S", "-U", "-T", "-R")] == [
            "aspera", "127.0.0.1", str(listening_port), "10201", "100001", "upload_json", "/",
        ]  # fmt: skip
        assert fox_farm.main.access_key not in json.dumps(run), "the access key never reaches the transmitter"


def test_uploading_the_same_files_again_sends_nothing(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    paths = _files(allowed_dir / "again", 3)
    _wait_end(_upload(account, paths, lead), celery_worker)

    again = _wait_end(_upload(account, paths, lead), celery_worker)

    assert (again.status, again.files_skipped, again.bytes_sent) == (TransferJob.Status.COMPLETED, 3, 0)
    assert len(_runs(fox_farm)) == 1, "the second upload did not start the transmitter"


def test_a_sharing_sub_account_uploads_into_its_main_accounts_input(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    account = fox_account("sub")
    lead = make_user("lead", team=account.team, role="lead")
    [path] = _files(allowed_dir / "sub", 1)

    job = _wait_end(_upload(account, [path], lead), celery_worker)

    assert job.status == TransferJob.Status.COMPLETED, _why(job)
    assert (fox_farm.storage_root / "input" / "10201-100001" / "project" / path.name).read_bytes() == path.read_bytes()
    [run] = _runs(fox_farm)
    assert (_flag(run["argv"], "-S"), _flag(run["argv"], "-U")) == ("10201", "100001")


def test_a_download_brings_a_tasks_frames_through_the_transmitter(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    frames = {f"1001_done_shot/frame_{n:04d}.exr": os.urandom(10_000 + n) for n in range(4)}
    for path, data in frames.items():
        fox_farm.add_output(path, data)
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    local = allowed_dir / "frames"

    job = jobs.job_create(kind="download", account=account, user=lead, options={"task_id_list": [1001], "local_path": str(local)})
    _wait_end(job, celery_worker)

    assert (job.status, job.files_done) == (TransferJob.Status.COMPLETED, 4), _why(job)
    for path, data in frames.items():
        assert (local / path).read_bytes() == data
    assert not [p for p in local.rglob("*") if p.is_dir() and "staging" in p.name], "the staging folder is gone"
    [run] = _runs(fox_farm)
    assert (_flag(run["argv"], "-T"), _flag(run["argv"], "-S")) == ("download_list", "20201")


def test_an_auto_download_follows_a_task_until_it_ends(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    fox_farm.main.tasks[5001] = task_info(5001, 5, "live")  # rendering
    fox_farm.add_output("5001_live/frame_0001.exr", b"first")
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    local = allowed_dir / "live"
    options = {"task_id_list": [5001], "local_path": str(local), "sleep_time": 0.5}

    job = jobs.job_create(kind="auto_download", account=account, user=lead, options=options)
    wait_for(
        lambda: (local / "5001_live/frame_0001.exr").exists(), timeout=60, what=f"the first frame\n{celery_worker.log_tail()}"
    )
    fox_farm.add_output("5001_live/frame_0002.exr", b"second")
    fox_farm.main.tasks[5001] = task_info(5001, 25, "live")  # done
    _wait_end(job, celery_worker)

    assert (job.status, job.files_done) == (TransferJob.Status.COMPLETED, 2), _why(job)
    assert (local / "5001_live/frame_0002.exr").read_bytes() == b"second"
    assert len(_runs(fox_farm)) == 2, "one transmitter run per round with a new frame, none for the empty rounds"
    assert len(fox_farm.calls("/api/render/transfer/getConfig")) == 1, "the line is chosen once for the run"


def test_a_line_that_does_not_answer_ends_the_job_naming_it(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, closed_port
):
    fox_farm.set_lines("Aspera", [("HKCT", closed_port, True)])
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    paths = _files(allowed_dir / "nowhere", 2)

    job = _wait_end(_upload(account, paths, lead, upload_num=2), celery_worker)

    assert job.status == TransferJob.Status.FAILED
    assert f"line 'HKCT' (127.0.0.1:{closed_port}) cannot be reached" in job.error and "tried 2 times" in job.error
    assert _runs(fox_farm) == [], "the transmitter is not started on a line that does not answer"


def test_a_transmitter_that_says_retry_is_run_again_for_the_files_left(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    _knobs(fox_farm, FAKE_XMIT_MODE="retry", FAKE_XMIT_MARKER=str(fox_farm.storage_root / "retried"))
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    paths = _files(allowed_dir / "retry", 3)

    job = _wait_end(_upload(account, paths, lead), celery_worker)

    assert (job.status, job.files_done) == (TransferJob.Status.COMPLETED, 3), _why(job)
    assert len(_runs(fox_farm)) == 2, "one run said retry after one file; the second sent the rest"
    assert sorted(p.name for p in (fox_farm.input_dir() / "project").iterdir()) == sorted(p.name for p in paths)


def test_a_fatal_transmitter_fails_the_files_with_its_message(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    _knobs(fox_farm, FAKE_XMIT_MODE="fatal")
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    paths = _files(allowed_dir / "fatal", 2)

    job = _wait_end(_upload(account, paths, lead), celery_worker)

    assert (job.status, job.files_failed) == (TransferJob.Status.FAILED, 2)
    errors = set(job.items.values_list("error", flat=True))
    assert all("fatal" in error for error in errors), errors
    assert len(_runs(fox_farm)) == 1, "a fatal exit is not retried (SDK §8 #1)"


def test_pausing_stops_the_transmitter_and_resuming_finishes_the_files_left(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    _knobs(fox_farm, FAKE_XMIT_MODE="slow", FAKE_XMIT_SECONDS="1.5")
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    paths = _files(allowed_dir / "pause", 4, size=4_000)
    job = _upload(account, paths, lead)
    wait_for(
        lambda: job.items.filter(state=TransferItem.State.DONE).exists(),
        timeout=60,
        what=f"a first file\n{celery_worker.log_tail()}",
    )

    assert services.job_pause(job=job, user=lead)
    wait_for(lambda: job.refresh_from_db() or job.status == TransferJob.Status.PAUSED, timeout=30, what="the pause")
    [run] = _runs(fox_farm)
    wait_for(lambda: not _alive(run["pid"]), timeout=15, what="the transmitter to be stopped")
    done_at_pause = job.items.filter(state=TransferItem.State.DONE).count()
    assert done_at_pause < 4
    _knobs(fox_farm)  # quick again
    assert services.job_resume(job=job, user=lead)
    _wait_end(job, celery_worker)

    assert (job.status, job.files_done) == (TransferJob.Status.COMPLETED, 4), _why(job)
    for path in paths:
        assert (fox_farm.input_dir() / "project" / path.name).read_bytes() == path.read_bytes()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for its parent is gone too
        return stat.read().split()[2] != "Z"


def test_an_auto_download_rides_out_the_farm_api_going_away(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    fox_farm.main.tasks[5002] = task_info(5002, 5, "outage")
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    local = allowed_dir / "outage"
    logged_before = celery_worker.log.stat().st_size  # the session's worker: earlier tests' lines are not this one's
    job = jobs.job_create(
        kind="auto_download",
        account=account,
        user=lead,
        options={"task_id_list": [5002], "local_path": str(local), "sleep_time": 0.5},
    )
    wait_for(
        lambda: job.refresh_from_db() or job.watch, timeout=60, what=f"the watcher's first round\n{celery_worker.log_tail()}"
    )

    fox_farm.fail_next(http_status=502, times=12)  # more than one call's retries: a whole round fails
    wait_for(lambda: not fox_farm.failures, timeout=60, what="the failed calls")
    fox_farm.add_output("5002_outage/frame_0001.exr", b"after the outage")
    fox_farm.main.tasks[5002] = task_info(5002, 25, "outage")
    _wait_end(job, celery_worker)

    assert (job.status, job.files_done) == (TransferJob.Status.COMPLETED, 1), _why(job)
    assert (local / "5002_outage/frame_0001.exr").read_bytes() == b"after the outage"
    with open(celery_worker.log, "rb") as log:
        log.seek(logged_before)
        assert f"job {job.pk}: the farm did not answer".encode() in log.read(), "a whole round failed, and was ridden out"


def test_discarding_a_cancelled_fox_uploads_partials_touches_nothing_on_the_farm(fox_account, make_user, make_job):
    from transfers import execution

    account = fox_account()
    job = make_job(account=account, status=TransferJob.Status.CANCELLED)
    TransferItem.objects.create(job=job, number=1, local="/nowhere/a.exr", server="project/a.exr", area="input")

    execution.job_discard_partials(job_id=job.pk)  # the transmitter keeps its own partials: nothing to do, no error

    assert job.items.get().state == TransferItem.State.PENDING


def test_keep_both_puts_a_fox_frame_beside_a_local_file_of_its_name(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    fox_farm.add_output("1001_done_shot/frame_0001.exr", b"the frame")
    local = allowed_dir / "both"
    (local / "1001_done_shot").mkdir(parents=True)
    (local / "1001_done_shot/frame_0001.exr").write_bytes(b"the artist's own file")
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    options = {"task_id_list": [1001], "local_path": str(local), "conflict": "keep_both"}

    job = _wait_end(jobs.job_create(kind="download", account=account, user=lead, options=options), celery_worker)

    assert job.status == TransferJob.Status.COMPLETED, _why(job)
    assert (local / "1001_done_shot/frame_0001.exr").read_bytes() == b"the artist's own file"
    assert (local / "1001_done_shot/frame_0001 (2).exr").read_bytes() == b"the frame"


def test_an_upload_waits_out_a_farm_api_that_does_not_answer_at_its_start(
    celery_worker, fox_farm, fox_account, make_user, allowed_dir, listening_port
):
    fox_farm.set_lines("Aspera", [("HKCT", listening_port, True)])
    account = fox_account()
    lead = make_user("lead", team=account.team, role="lead")
    paths = _files(allowed_dir / "patient", 2)
    fox_farm.fail_next(http_status=502, times=6)  # more than one call's own retries: the leg asks again later

    job = _wait_end(_upload(account, paths, lead), celery_worker)

    assert (job.status, job.files_done) == (TransferJob.Status.COMPLETED, 2), _why(job)
    assert not fox_farm.failures, "every injected failure was met"
