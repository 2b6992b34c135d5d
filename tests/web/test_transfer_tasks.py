"""transfers.transfer_tasks: the SDK's Raysync start_transfer / get_task_status / get_task_list_status over
rvweb's jobs — each mapping, the code table, another team's tasks never seen, and waits that never stop
or fail a transfer (reference/sdk-spec.md §5.3, §8 #4-#6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfers import jobs, kinds, services, tasks, transfer_tasks
from transfers.models import AuditEvent, Manifest, TransferJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(team, make_account):
    return make_account(team, name="farm")


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def member(team, make_user):
    return make_user("member", team=team, role="member")


def _file(folder: Path, name: str = "scene.ma", data: bytes = b"scene") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _job(result: transfer_tasks.TransferTaskResult) -> TransferJob:
    assert result.code == 0, result.message
    assert result.task_id is not None
    return TransferJob.objects.get(pk=result.task_id)


def _servers(job: TransferJob) -> list[str]:
    assert job.manifest is not None
    return sorted(job.manifest.entries.values_list("server", flat=True))


# --- the tables -----------------------------------------------------------------------------------------


def test_every_job_status_has_one_task_state():
    assert set(transfer_tasks.STATES) == set(TransferJob.Status.values)


def test_every_job_kind_has_a_task_type():
    assert {kind for kind, _ in transfer_tasks.TASK_TYPES} == set(TransferJob.Kind.values)


def test_the_response_table_is_the_sdks():
    assert transfer_tasks.RESPONSE == {
        "successful": 0, "ready": 100, "start": 101, "stopped": 102, "auth-failed": 201, "proxy-closed": 202,
        "ip-locked": 205, "account-locked": 209, "idle": 300, "stop-by-server": 301, "no-permission": 405, "failed": 500,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", "ready"),
        ("running", "start"),
        ("paused", "stopped"),
        ("completed", "successful"),
        ("completed_with_errors", "failed"),
        ("failed", "failed"),
        ("cancelled", "stopped"),
    ],
)
def test_a_jobs_status_reads_as_its_raysync_state(status, state, account, lead, make_job):
    job = make_job(account=account, kind="download", status=status)

    answer = transfer_tasks.get_task_status(user=lead, task_id=job.pk)

    assert answer["code"] == 0
    assert [(row["task-id"], row["task-type"], row["task-state"]) for row in answer["task-list"]] == [(job.pk, "download", state)]


def test_a_task_row_carries_rvwebs_figures(account, lead, make_job):
    job = make_job(account=account, kind="download", files_total=4, files_done=1, bytes_total=400, bytes_done=100, error="x")

    (row,) = transfer_tasks.get_task_status(user=lead, task_id=job.pk)["task-list"]

    assert row == {
        "task-id": job.pk, "task-type": "download", "task-state": "start", "kind": "download", "percent": 25,
        "files-done": 1, "files-total": 4, "bytes-done": 100, "bytes-total": 400, "error": "x",
    }  # fmt: skip


# --- start_transfer: each task type -------------------------------------------------------------------


def test_an_upload_of_a_file_goes_into_server_path_under_its_name(account, lead, allowed_dir):
    local = _file(allowed_dir)

    job = _job(
        transfer_tasks.start_transfer(
            user=lead, account=account, task_type="upload", local_path=str(local), server_path="/shots/a"
        )
    )

    assert job.kind == "upload_asset" and job.status == "queued" and job.created_by == lead
    assert _servers(job) == ["/shots/a/scene.ma"]


def test_an_upload_of_a_folder_keeps_the_folders_name_under_server_path(account, lead, allowed_dir):
    folder = allowed_dir / "tex"
    _file(folder, "a.png")
    _file(folder, "sub/b.png")

    job = _job(
        transfer_tasks.start_transfer(user=lead, account=account, task_type="upload", local_path=str(folder), server_path="maps")
    )

    assert _servers(job) == ["/maps/tex/a.png", "/maps/tex/sub/b.png"]
    assert job.files_total == 2


def test_an_upload_without_server_path_goes_where_the_sdks_rule_puts_it(account, lead, allowed_dir):
    local = _file(allowed_dir)

    job = _job(transfer_tasks.start_transfer(user=lead, account=account, task_type="upload", local_path=str(local)))

    assert _servers(job) == [str(local)]


def test_an_upload_passes_the_line_options_to_the_job(account, lead, allowed_dir):
    local = _file(allowed_dir)

    job = _job(
        transfer_tasks.start_transfer(
            user=lead, account=account, task_type="upload", local_path=str(local), max_speed=512, network_mode=1,
            server_ip="127.0.0.1", server_port="7300", enable_hash=True, upload_num=5, storage_id="10201",
        )
    )  # fmt: skip

    assert (job.options["max_speed"], job.options["network_mode"], job.options["server_ip"], job.options["server_port"]) == (
        512,
        1,
        "127.0.0.1",
        7300,
    )


def test_a_json_upload_is_an_upload_config_of_the_render_task(account, member, allowed_dir):
    local = _file(allowed_dir, "task.json", b"{}")

    job = _job(
        transfer_tasks.start_transfer(
            user=member, account=account, task_type="upload", file_type="json", local_path=str(local), task_id=77
        )
    )

    assert job.kind == "upload_config"
    assert (job.options["task_id"], job.options["config_file_list"]) == (77, [str(local)])


def test_a_json_upload_without_task_id_is_refused_with_a_reason(account, lead, allowed_dir):
    local = _file(allowed_dir, "task.json", b"{}")

    result = transfer_tasks.start_transfer(
        user=lead, account=account, task_type="upload", file_type="json", local_path=str(local)
    )

    assert (result.code, result.task_id) == (400, None)
    assert "task_id" in result.message


def test_an_upload_list_of_an_upload_json_uploads_its_entries(account, lead, allowed_dir):
    files = [_file(allowed_dir, f"f{n}.bin") for n in range(3)]
    listing = allowed_dir / "upload.json"
    listing.write_text(json.dumps({"asset": [{"local": str(p), "server": f"/in/{p.name}"} for p in files]}))

    job = _job(transfer_tasks.start_transfer(user=lead, account=account, task_type="upload-list", local_path=str(listing)))

    assert job.kind == "upload_asset" and job.manifest.transmit_type == Manifest.TransmitType.UPLOAD_JSON
    assert _servers(job) == ["/in/f0.bin", "/in/f1.bin", "/in/f2.bin"]
    assert transfer_tasks.get_task_status(user=lead, task_id=job.pk)["task-list"][0]["task-type"] == "upload"


def test_an_upload_list_of_paths_reads_back_as_an_upload_list_task(account, lead, allowed_dir):
    files = [_file(allowed_dir, f"f{n}.bin") for n in range(2)]
    listing = allowed_dir / "upload_list.txt"
    listing.write_text("\n".join(str(p) for p in files) + "\n")

    job = _job(transfer_tasks.start_transfer(user=lead, account=account, task_type="upload-list", local_path=str(listing)))

    assert job.manifest.transmit_type == Manifest.TransmitType.UPLOAD_LIST and job.files_total == 2
    assert transfer_tasks.get_task_status(user=lead, task_id=job.pk)["task-list"][0]["task-type"] == "upload-list"


def test_a_download_takes_server_path_into_the_local_folder(account, member, allowed_dir):
    job = _job(
        transfer_tasks.start_transfer(
            user=member, account=account, task_type="download", local_path=str(allowed_dir), server_path="77_shot/"
        )
    )

    assert job.kind == "download"
    assert (job.options["server_path"], job.options["local_path"]) == ("77_shot/", str(allowed_dir))


def test_a_download_from_the_input_storage_is_refused(account, member, allowed_dir):
    result = transfer_tasks.start_transfer(
        user=member, account=account, task_type="download", local_path=str(allowed_dir), server_path="a", trans_storage="input"
    )

    assert result.code == 400 and "trans_storage" in result.message


def test_a_download_without_server_path_is_refused(account, member, allowed_dir):
    result = transfer_tasks.start_transfer(user=member, account=account, task_type="download", local_path=str(allowed_dir))

    assert result.code == 400 and "server_path" in result.message


# --- refusals: codes and reasons, nothing recorded ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"task_type": "sync"}, "task_type"),
        ({"task_type": "download", "file_type": "json", "task_id": 3}, "file_type"),
        ({"file_type": "xml"}, "file_type"),
        ({"max_speed": 0}, "max_speed"),
        ({"network_mode": 3}, "network_mode"),
        ({"server_port": "http"}, "server_port"),
        ({"upload_num": 11}, "upload_num"),
        ({"storage_id": "abc"}, "storage_id"),
        ({"proxy_ip": "10.0.0.1", "proxy_port": 8080}, "proxy_ip"),
        ({"server_path": "../up"}, "server_path"),
    ],
)
def test_bad_arguments_answer_400_naming_the_argument(fields, named, account, lead, allowed_dir):
    local = _file(allowed_dir)
    arguments = {"task_type": "upload", "local_path": str(local), **fields}

    result = transfer_tasks.start_transfer(user=lead, account=account, **arguments)

    assert (result.code, result.task_id) == (400, None)
    assert named in result.message
    assert not TransferJob.objects.exists() and not Manifest.objects.exists()


def test_a_path_outside_the_allowed_roots_answers_400(account, lead):
    result = transfer_tasks.start_transfer(user=lead, account=account, task_type="upload", local_path="/etc/hostname")

    assert result.code == 400 and "outside the allowed roots" in result.message
    assert not Manifest.objects.exists()


def test_an_upload_list_outside_the_allowed_roots_answers_400(account, lead):
    result = transfer_tasks.start_transfer(user=lead, account=account, task_type="upload-list", local_path="/etc/hostname")

    assert result.code == 400 and not Manifest.objects.exists()


def test_an_upload_list_naming_a_missing_file_is_refused_with_the_manifests_problem(account, lead, allowed_dir):
    listing = allowed_dir / "upload.json"
    listing.write_text(json.dumps({"asset": [{"local": "/etc/hostname", "server": "/x"}]}))

    result = transfer_tasks.start_transfer(user=lead, account=account, task_type="upload-list", local_path=str(listing))

    assert result.code == 400 and "outside the allowed roots" in result.message
    assert not Manifest.objects.exists()


def test_a_viewer_cannot_start(account, team, make_user, allowed_dir):
    viewer = make_user("viewer", team=team, role="viewer")

    result = transfer_tasks.start_transfer(
        user=viewer, account=account, task_type="download", local_path=str(allowed_dir), server_path="a"
    )

    assert result.code == 405 and not TransferJob.objects.exists()


def test_a_member_cannot_upload_a_local_path_which_imports_a_manifest(account, member, allowed_dir):
    result = transfer_tasks.start_transfer(user=member, account=account, task_type="upload", local_path=str(_file(allowed_dir)))

    assert result.code == 405 and "lead" in result.message
    assert not Manifest.objects.exists()


def test_another_teams_account_answers_as_a_missing_one(lead, make_account, make_team, allowed_dir):
    theirs = make_account(make_team("Other"), name="theirs")
    missing = theirs.pk + 1000

    seen = [
        transfer_tasks.start_transfer(user=lead, account=pk, task_type="download", local_path=str(allowed_dir), server_path="a")
        for pk in (theirs.pk, missing)
    ]

    assert [result.code for result in seen] == [404, 404]
    assert seen[0].message.replace(str(theirs.pk), "N") == seen[1].message.replace(str(missing), "N")
    assert not TransferJob.objects.exists()


def test_a_start_is_audited_with_its_actor(account, member, allowed_dir):
    job = _job(
        transfer_tasks.start_transfer(
            user=member, account=account, task_type="download", local_path=str(allowed_dir), server_path="a"
        )
    )

    event = AuditEvent.objects.get(action="job.create", target_id=str(job.pk))
    assert event.actor == member and event.after["kind"] == "download"


def test_a_start_stops_no_other_transfer(account, member, make_job, make_account, make_team, allowed_dir):
    ours = make_job(account=account, kind="download", status="running")
    theirs = make_job(account=make_account(make_team("Other")), kind="download", status="running")

    _job(
        transfer_tasks.start_transfer(
            user=member, account=account, task_type="download", local_path=str(allowed_dir), server_path="a"
        )
    )

    assert set(TransferJob.objects.filter(pk__in=[ours.pk, theirs.pk]).values_list("status", flat=True)) == {"running"}


def test_a_start_refused_after_its_manifest_was_made_leaves_no_manifest(account, lead, allowed_dir, monkeypatch):
    def refuse(**kwargs):
        raise kinds.OptionsInvalid("max_speed: refused late")

    monkeypatch.setattr(jobs, "job_create", refuse)

    result = transfer_tasks.start_transfer(user=lead, account=account, task_type="upload", local_path=str(_file(allowed_dir)))

    assert (result.code, result.message) == (400, "max_speed: refused late")
    assert not Manifest.objects.exists()


def test_a_new_start_never_restarts_an_older_failed_task(account, member, make_job, allowed_dir):
    failed = make_job(account=account, kind="upload_config", status="failed", options={"task_id": 77})
    local = _file(allowed_dir, "task.json", b"{}")

    result = transfer_tasks.start_transfer(
        user=member, account=account, task_type="upload", file_type="json", local_path=str(local), task_id=77
    )

    assert result.code == 0 and result.task_id != failed.pk
    failed.refresh_from_db()
    assert failed.status == "failed"


# --- get_task_status / get_task_list_status: only one's own teams' jobs -----------------------------------


def test_another_teams_task_answers_exactly_as_a_missing_one(lead, make_account, make_team, make_job):
    theirs = make_job(account=make_account(make_team("Other")), kind="download")

    hidden = transfer_tasks.get_task_status(user=lead, task_id=theirs.pk)
    missing = transfer_tasks.get_task_status(user=lead, task_id=theirs.pk + 1000)

    assert hidden["code"] == missing["code"] == 404
    assert hidden["task-list"] == missing["task-list"] == []
    assert hidden["message"].replace(str(theirs.pk), "N") == missing["message"].replace(str(theirs.pk + 1000), "N")


def test_the_task_list_holds_only_the_users_teams_jobs(account, lead, make_account, make_team, make_job):
    mine = make_job(account=account, kind="download")
    make_job(account=make_account(make_team("Other")), kind="download")

    answer = transfer_tasks.get_task_list_status(user=lead)

    assert answer["code"] == 0
    assert [row["task-id"] for row in answer["task-list"]] == [mine.pk]


@pytest.mark.parametrize(
    ("group", "expected"), [("all", {"queued", "paused", "failed"}), ("active", {"queued", "paused"}), ("ended", {"failed"})]
)
def test_a_task_group_narrows_the_list(group, expected, account, lead, make_job):
    jobs = {status: make_job(account=account, kind="download", status=status).pk for status in ("queued", "paused", "failed")}

    answer = transfer_tasks.get_task_list_status(user=lead, task_group=group)

    assert {row["task-id"] for row in answer["task-list"]} == {jobs[status] for status in expected}


def test_an_unknown_task_group_answers_400_and_no_list(lead):
    assert transfer_tasks.get_task_list_status(user=lead, task_group="mine") == {
        "code": 400,
        "message": "task_group: one of all, active, ended",
        "task-list": [],
    }


def test_the_task_list_is_the_latest_jobs_up_to_its_bound(account, lead, make_job, monkeypatch):
    monkeypatch.setattr(transfer_tasks.status, "MAX_TASKS", 2)
    ids = [make_job(account=account, kind="download").pk for _ in range(3)]

    answer = transfer_tasks.get_task_list_status(user=lead)

    assert [row["task-id"] for row in answer["task-list"]] == [ids[2], ids[1]]


# --- wait=True ----------------------------------------------------------------------------------------


def _download(user, account, folder: Path, **extra):
    return transfer_tasks.start_transfer(
        user=user, account=account, task_type="download", local_path=str(folder), server_path="a", wait=True, **extra
    )


@pytest.fixture
def no_worker(monkeypatch):
    """Jobs stay queued (nothing is sent to a worker), whatever the test's transaction does."""
    monkeypatch.setattr(tasks.run_job, "delay", lambda *args: None)


@pytest.mark.django_db(transaction=True)
def test_a_wait_that_times_out_answers_the_current_code_and_leaves_the_task_running(no_worker, account, member, allowed_dir):
    result = _download(member, account, allowed_dir, max_timeout=0)

    assert (result.code, result.state) == (100, "ready")
    assert "goes on" in result.message
    assert TransferJob.objects.get(pk=result.task_id).status == "queued"


@pytest.mark.parametrize(
    ("status", "code"), [("paused", 102), ("cancelled", 102), ("failed", 500), ("completed_with_errors", 500)]
)
@pytest.mark.django_db(transaction=True)
def test_a_wait_ends_with_the_code_of_the_state_the_job_reaches(
    status, code, no_worker, account, member, allowed_dir, monkeypatch
):
    monkeypatch.setattr(transfer_tasks.start.time, "sleep", lambda seconds: TransferJob.objects.update(status=status))

    result = _download(member, account, allowed_dir, poll_interval=0.01)

    assert (result.code, TransferJob.objects.get(pk=result.task_id).status) == (code, status)


def test_a_wait_inside_a_transaction_is_refused_rather_than_waiting_for_ever(account, member, allowed_dir):
    result = _download(member, account, allowed_dir)  # the test runs in a transaction

    assert (result.code, result.task_id) == (400, None) and "transaction" in result.message
    assert not TransferJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_waited_upload_through_the_real_worker_answers_0_once_the_file_arrived(
    celery_worker, make_account, make_user, allowed_dir
):
    account = make_account(name="farm-tapi")
    lead = make_user("lead-tapi", team=account.team, role="lead")
    local = _file(allowed_dir, "scene.ma", b"a scene" * 1000)

    result = transfer_tasks.start_transfer(
        user=lead, account=account, task_type="upload", local_path=str(local), server_path="/shots", wait=True, max_timeout=120,
        poll_interval=0.2,
    )  # fmt: skip

    assert result.code == 0, f"{result.message}\n{celery_worker.log_tail()}"
    inbox = services.farm_storage(account=account).area_root("input")
    assert (inbox / "shots" / "scene.ma").read_bytes() == local.read_bytes()
    answer = transfer_tasks.get_task_status(user=lead, task_id=result.task_id)
    assert answer["task-list"][0]["task-state"] == "successful"


@pytest.mark.django_db(transaction=True)
def test_a_waited_download_through_the_real_worker_answers_0_with_the_file_there(
    celery_worker, make_account, make_user, allowed_dir
):
    account = make_account(name="farm-tapi-2")
    member = make_user("member-tapi", team=account.team, role="member")
    output = services.farm_storage(account=account).area_root("output")
    _file(output / "77_shot", "f0001.exr", b"frame" * 100)

    result = transfer_tasks.start_transfer(
        user=member, account=account, task_type="download", local_path=str(allowed_dir), server_path="77_shot", wait=True,
        max_timeout=120, poll_interval=0.2,
    )  # fmt: skip

    assert result.code == 0, f"{result.message}\n{celery_worker.log_tail()}"
    assert (allowed_dir / "77_shot" / "f0001.exr").read_bytes() == b"frame" * 100
