"""rvweb_client against a live rvweb (daphne and a Celery worker, real broker and database), as a studio's
SDK script uses it: the seed's examples with only the imports and the connection line changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from rvweb_client import (
    RayvisionAPI,
    RayvisionDownload,
    RayvisionError,
    RayvisionUpload,
    UploadFailed,
    append_to_upload,
    cutting_upload,
)

from tests.conftest import ROOT
from transfers import services
from transfers.api_tokens import api_token_create
from transfers.farm.simulate import render_run, render_start
from transfers.farm_events import Actor
from transfers.models import JobGroup, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def farm(make_account) -> Any:
    return make_account(name=f"fox-{uuid.uuid4().hex[:6]}", access_id="AKID-STUDIO", platform="2")


@pytest.fixture
def api(daphne_server, celery_worker, farm, make_user) -> RayvisionAPI:
    """The seed's connection line, with rvweb's address and a token added."""
    lead = make_user("pipeline", team=farm.team, role="lead")
    key = api_token_create(user=lead, name="pipeline script")[1]
    return RayvisionAPI(
        access_id="AKID-STUDIO",
        access_key="never sent",
        domain="task.foxrenderfarm.com",
        platform="2",
        url=daphne_server.url,
        token=key,
        poll_interval=0.2,
    )


def _files(folder: Path, count: int) -> list[Path]:
    paths = []
    for number in range(count):
        path = folder / f"d{number % 3}" / f"f{number:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 + number * 37))
        paths.append(path)
    return paths


def _arrived(farm: Any, paths: list[Path]) -> bool:
    inbox = services.farm_storage(account=farm).area_root("input")
    return all((inbox / str(p).lstrip("/")).read_bytes() == p.read_bytes() for p in paths)


def test_append_to_upload_then_upload_asset_as_in_the_seed(api, farm, allowed_dir):
    files = _files(allowed_dir / "scene", 12)
    upload_json = allowed_dir / "upload.json"
    upload_json.write_text('{"asset": []}')

    append_to_upload(str(allowed_dir / "scene"), str(upload_json))
    assert RayvisionUpload(api).upload_asset(str(upload_json)) is True

    assert _arrived(farm, files)
    job = TransferJob.objects.get(account=farm)
    assert (job.kind, job.status, job.files_done, job.options["is_db"]) == ("upload_asset", "completed", 12, True)


def test_cutting_upload_then_thread_pool_upload_runs_the_parts_as_one_group(api, farm, allowed_dir):
    files = _files(allowed_dir / "scene", 25)
    upload_json = allowed_dir / "upload.json"
    upload_json.write_text(json.dumps({"asset": [{"local": str(p), "server": str(p)} for p in files]}))

    upload_pool = cutting_upload(str(upload_json), max_resources_number=5, after_cutting_position=str(allowed_dir / "parts"))
    assert RayvisionUpload(api).thread_pool_upload(upload_pool, pool_size=2, max_speed=100_000) is True

    assert _arrived(farm, files)
    group = JobGroup.objects.get(account=farm)
    jobs = list(group.jobs.order_by("pk"))
    assert (len(jobs), {job.status for job in jobs}, group.pool_size) == (5, {"completed"}, 2)
    assert {job.options["max_speed"] for job in jobs} == {100_000}
    # Never more than pool_size parts ran at once.
    moments = sorted([(job.started_at, 1) for job in jobs] + [(job.finished_at, -1) for job in jobs], key=lambda m: (m[0], m[1]))
    running = [sum(step for _, step in moments[: n + 1]) for n in range(len(moments))]
    assert max(running) <= 2


def test_a_part_that_fails_is_raised_with_its_files_not_lost(api, farm, allowed_dir):
    files = _files(allowed_dir / "scene", 4)
    missing = allowed_dir / "scene" / "gone.bin"
    parts = []
    for number, entries in enumerate([files[:2], [*files[2:], missing]], start=1):
        part = allowed_dir / f"upload_{number}.json"
        part.write_text(json.dumps({"asset": [{"local": str(p), "server": str(p)} for p in entries]}))
        parts.append(str(part))

    with pytest.raises(UploadFailed) as failed:
        RayvisionUpload(api).thread_pool_upload(parts, pool_size=2)

    assert [f["local"] for f in failed.value.failures] == [str(missing)]
    assert "completed_with_errors" in str(failed.value) and f"{missing} (local file not found" in str(failed.value)
    assert _arrived(farm, files)


def test_upload_config_sends_the_task_files_and_refuses_a_missing_one(api, farm, allowed_dir):
    config = [allowed_dir / name for name in ("tips.json", "task.json", "asset.json", "upload.json")]
    for path in config:
        path.write_text("{}")
    upload = RayvisionUpload(api)

    assert upload.upload_config("5165465", [str(p) for p in config]) is True

    cfg = services.farm_storage(account=farm).area_root("config") / "5165465" / "cfg"
    assert sorted(p.name for p in cfg.iterdir()) == ["asset.json", "task.json", "tips.json", "upload.json"]
    with pytest.raises(RayvisionError, match=r"config_file_list\[0\]") as refused:
        upload.upload_config("5165465", [str(allowed_dir / "nope.json")])
    assert refused.value.error_code == 400


def test_upload_sends_the_configuration_then_the_assets_in_one_job(api, farm, allowed_dir):
    files = _files(allowed_dir / "scene", 3)
    paths = {name: allowed_dir / f"{name}.json" for name in ("task", "tips", "asset")}
    for path in paths.values():
        path.write_text("{}")
    upload_json = allowed_dir / "upload.json"
    upload_json.write_text(json.dumps({"asset": [{"local": str(p), "server": str(p)} for p in files]}))

    done = RayvisionUpload(api).upload(
        "5165466",
        task_json_path=str(paths["task"]),
        tips_json_path=str(paths["tips"]),
        asset_json_path=str(paths["asset"]),
        upload_json_path=str(upload_json),
    )

    assert done is True and _arrived(farm, files)
    cfg = services.farm_storage(account=farm).area_root("config") / "5165466" / "cfg"
    assert sorted(p.name for p in cfg.iterdir()) == ["asset.json", "task.json", "tips.json", "upload.json"]
    assert TransferJob.objects.get(account=farm).files_done == 7


def test_download_and_auto_download_bring_a_finished_render(api, farm, allowed_dir):
    plan = render_start(account=farm, scene=f"shot_{uuid.uuid4().hex[:6]}", frames=4, actor=Actor(user=None), interval=0)
    render_run(plan, actor=Actor(user=None))
    download = RayvisionDownload(api)
    frames = allowed_dir / "frames"
    task_list = [plan.task_id]

    assert download.download(task_list, local_path=str(frames), download_filename_format="false", print_log=False) is True
    assert download.auto_download(task_list, local_path=str(allowed_dir / "auto"), sleep_time=0.5) is True
    after = download.auto_download_after_task_completed(task_list, local_path=str(allowed_dir / "after"), sleep_time=0.5)

    assert after is True
    for folder in (frames, allowed_dir / "auto", allowed_dir / "after"):
        assert len([p for p in folder.rglob("*") if p.is_file()]) == 4, folder
    assert task_list == [plan.task_id]


def test_a_wrong_token_or_an_unknown_access_id_is_a_clear_error(api, daphne_server):
    with pytest.raises(RayvisionError) as refused:
        RayvisionAPI(url=daphne_server.url, token="not-a-token", account=1).account  # noqa: B018
    assert refused.value.error_code == 401

    stranger = RayvisionAPI(url=daphne_server.url, token=api.token, access_id="AKID-OTHER")
    with pytest.raises(RayvisionError, match="no farm account with access id 'AKID-OTHER'"):
        stranger.account  # noqa: B018


def test_the_client_installs_from_its_folder_offline_with_pip(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("__pycache__"))  # the build writes nothing here
    target = tmp_path / "target"

    subprocess.run(
        [sys.executable, "-m", "pip", "install", str(source), "--target", str(target), "--no-deps", "--no-index",
         "--quiet", "--disable-pip-version-check"],
        check=True, cwd=tmp_path,
    )  # fmt: skip

    probe = "import rvweb_client, json; print(json.dumps([rvweb_client.__file__, rvweb_client.__all__]))"
    env = {**os.environ, "PYTHONPATH": str(target)}
    found = subprocess.run([sys.executable, "-c", probe], check=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    where, names = json.loads(found.stdout)
    assert Path(where).is_relative_to(target)
    assert {"RayvisionAPI", "RayvisionUpload", "RayvisionDownload", "cutting_upload", "append_to_upload"} <= set(names)
