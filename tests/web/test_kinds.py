"""Job kinds: one registry for every kind the model names, typed options checked once, and the
configuration uploads (upload_config, upload) from the request to the farm's config area."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from transfers import execution, jobs, kinds, services
from transfers.kinds import options as kind_options
from transfers.kinds.upload_config import config_server_path
from transfers.models import AuditEvent, TransferItem, TransferJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(team, make_user) -> Any:
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def account(team, make_account) -> Any:
    return make_account(team, name="farm")


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from transfers import tasks

    ids: list[int] = []
    monkeypatch.setattr(tasks.run_job, "delay", ids.append)
    return ids


@pytest.fixture
def config_files(allowed_dir: Path) -> list[str]:
    paths = []
    for name in ("task.json", "tips.json", "asset.json", "upload.json"):
        path = allowed_dir / "cfg" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"name": name}))
        paths.append(str(path))
    return paths


def _run(job: TransferJob) -> TransferJob:
    execution.job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_every_kind_the_model_names_is_registered():
    assert sorted(kinds.names()) == sorted(TransferJob.Kind.values)


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(kinds.UnknownKind, match="unknown job kind 'upload_everything'"):
        kinds.get("upload_everything")


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("upload_asset", {"pool_size": 0}, "pool_size: expected `int` >= 1"),
        ("upload_asset", {"pool_size": 65}, "pool_size: expected `int` <= 64"),
        ("upload_asset", {"max_speed": -5}, "max_speed: expected `int` >= 1"),
        ("upload_asset", {"upload_num": "many"}, "upload_num: expected `int`"),
        ("upload_asset", {"server_port": 70000}, "server_port: expected `int` <= 65535"),
        ("upload_asset", {"network_mode": 3}, "network_mode"),
        ("upload_asset", {"speed": 5}, "unknown option `speed`"),
        ("upload_config", {}, "task_id"),
        ("upload_config", {"task_id": 5, "config_file_list": []}, "config_file_list: expected `array` of length >= 1"),
        ("upload_config", {"task_id": "five", "config_file_list": ["/a"]}, "task_id: expected `int`"),
        ("download", {}, "give task_id_list or server_path"),
        ("download", {"task_id_list": [1], "download_filename_format": "yes"}, "download_filename_format"),
        ("download", {"task_id_list": [1], "conflict": "ask"}, "conflict"),
        ("auto_download", {"server_path": "a"}, "task_id_list: an auto download follows render tasks"),
        ("auto_download", {"task_id_list": [1], "sleep_time": 0}, "sleep_time: expected `float` >= 0.2"),
    ],
)
def test_bad_options_are_refused_naming_the_option(kind, raw, message):
    with pytest.raises(kinds.OptionsInvalid) as refused:
        kinds.get(kind).parse(raw)

    assert message in str(refused.value)


def test_stored_options_come_back_typed_with_every_default():
    kind = kinds.get("auto_download")
    stored = kind_options.dump(kind.parse({"task_id_list": ["12", 13], "max_speed": "2048"}))  # a form's strings

    options = kind.options(TransferJob(kind="auto_download", options=stored))

    assert options.task_id_list == [12, 13]
    assert (options.max_speed, options.pool_size, options.sleep_time, options.download_filename_format) == (2048, 4, 10.0, "true")


@pytest.mark.parametrize(
    ("local", "server"),
    [("C:\\workspace\\work\\task.json", "/5165465/cfg/task.json"), ("/mnt/work/tips.json", "/5165465/cfg/tips.json")],
)
def test_config_files_go_to_the_task_s_cfg_folder_whatever_the_path_style(local, server):
    assert config_server_path(5165465, local) == server


@pytest.mark.django_db(transaction=True)  # the engine's thread reads the items on its own connection
def test_upload_config_sends_each_file_to_its_task_s_cfg_folder_in_the_config_area(account, lead, config_files, enqueued):
    job = jobs.job_create(
        kind="upload_config", account=account, user=lead, options={"task_id": 77, "config_file_list": config_files}
    )

    assert (job.files_total, job.prepared, enqueued) == (4, False, [job.pk])
    job = _run(job)

    assert job.status == TransferJob.Status.COMPLETED, job.error
    config = services.farm_storage(account=account).area_root("config")
    for local in config_files:
        assert (config / "77" / "cfg" / Path(local).name).read_bytes() == Path(local).read_bytes()
    assert set(job.items.values_list("area", flat=True)) == {"config"}
    assert AuditEvent.objects.filter(action="job.create", after__kind="upload_config").exists()


@pytest.mark.django_db(transaction=True)  # the engine's thread reads the items on its own connection
def test_upload_sends_the_configuration_then_the_assets_in_one_job(account, lead, config_files, allowed_dir, enqueued):
    asset = allowed_dir / "scene" / "a.exr"
    asset.parent.mkdir()
    asset.write_bytes(b"pixels" * 100)
    data = json.dumps({"asset": [{"local": str(asset), "server": "/D/scene/a.exr"}]}).encode()
    manifest = services.manifest_import(name="m", account=account, data=data, user=lead)
    options = {"task_id": 9, "task_json_path": config_files[0], "upload_json_path": config_files[3], "is_db": False}

    job = _run(jobs.job_create(kind="upload", account=account, manifest=manifest, user=lead, options=options))

    assert job.status == TransferJob.Status.COMPLETED, job.error
    assert (job.files_total, job.files_done) == (3, 3)
    farm = services.farm_storage(account=account)
    assert (farm.area_root("config") / "9" / "cfg" / "upload.json").exists()
    assert (farm.area_root("input") / "D" / "scene" / "a.exr").read_bytes() == asset.read_bytes()
    assert sorted(job.items.values_list("number", "area")) == [(1, "config"), (2, "config"), (3, "input")]


def test_a_config_file_outside_the_allowed_roots_is_refused_before_any_job_exists(account, lead, tmp_path, config_files):
    outside = tmp_path / "elsewhere" / "task.json"
    outside.parent.mkdir()
    outside.write_text("{}")

    with pytest.raises(kinds.OptionsInvalid, match=r"config_file_list\[1\]"):
        jobs.job_create(
            kind="upload_config",
            account=account,
            user=lead,
            options={"task_id": 1, "config_file_list": [config_files[0], str(outside)]},
        )
    assert not TransferJob.objects.exists()


def test_a_missing_config_file_is_refused_by_name_not_skipped(account, lead, allowed_dir):
    with pytest.raises(kinds.OptionsInvalid, match=r"config_file_list\[0\]"):
        jobs.job_create(
            kind="upload_config",
            account=account,
            user=lead,
            options={"task_id": 1, "config_file_list": [str(allowed_dir / "gone.json")]},
        )


@pytest.mark.django_db(transaction=True)  # the engine's thread reads the items on its own connection
def test_a_config_file_that_vanished_before_the_run_fails_its_item_alone(account, lead, config_files, enqueued):
    job = jobs.job_create(
        kind="upload_config", account=account, user=lead, options={"task_id": 3, "config_file_list": config_files}
    )
    Path(config_files[1]).unlink()

    job = _run(job)

    assert job.status == TransferJob.Status.COMPLETED_WITH_ERRORS, job.error
    failed = job.items.get(state=TransferItem.State.FAILED)
    assert failed.local == config_files[1] and failed.error


def test_a_viewer_may_not_start_a_job_on_the_team_s_account(account, team, make_user, config_files):
    viewer = make_user("viewer", team=team, role="viewer")

    with pytest.raises(PermissionDenied):
        jobs.job_create(
            kind="upload_config", account=account, user=viewer, options={"task_id": 1, "config_file_list": config_files}
        )


@pytest.mark.django_db(transaction=True)  # the engine's thread reads the items on its own connection
def test_a_stored_job_whose_options_no_longer_fit_fails_saying_why(account, lead, config_files, enqueued):
    job = jobs.job_create(
        kind="upload_config", account=account, user=lead, options={"task_id": 3, "config_file_list": config_files}
    )
    TransferJob.objects.filter(pk=job.pk).update(options={"task_id": 3, "config_file_list": config_files, "colour": "red"})

    job = _run(job)

    assert job.status == TransferJob.Status.FAILED
    assert job.error == "this job cannot go on: unknown option `colour`"
