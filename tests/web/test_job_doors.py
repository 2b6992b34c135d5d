"""Every door to a job kind: POST /api/jobs/, the SDK-named URLs, the SDK-named commands and the farm
page's Download form — each checks the kind's options the same way and refuses what it must."""

from __future__ import annotations

import html
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from transfers import tasks
from transfers.models import AuditEvent, TransferJob

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def not_enqueued(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.run_job, "delay", lambda job_id: None)


@pytest.fixture
def account(team, make_account, farm_root) -> Any:
    return make_account(team, name="farm")


@pytest.fixture
def task(account, make_farm_task) -> Any:
    return make_farm_task(account, task_id=4242, scene="shot", status=25, frames_expected=3)


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


def test_post_jobs_starts_any_kind_by_its_sdk_name(team, make_user, account, task, allowed_dir):
    member = make_user("member", team=team, role="member")
    options = {"task_id_list": [task.task_id], "local_path": str(allowed_dir / "out"), "sleep_time": 2}

    response = _post(_client(member), "/api/jobs/", {"kind": "auto_download", "account": account.pk, "options": options})

    assert response.status_code == 201, response.content
    job = TransferJob.objects.get(pk=response.json()["id"])
    assert (job.kind, job.options["sleep_time"], job.options["conflict"]) == ("auto_download", 2.0, "skip_identical")
    assert AuditEvent.objects.filter(action="job.create", actor=member, after__kind="auto_download").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "download", "options": {"task_id_list": [4242], "pool_size": 0}}, "pool_size: expected `int` >= 1"),
        ({"kind": "download", "options": {"task_id_list": [99]}}, "has no task 99"),
        ({"kind": "download", "options": {"task_id_list": [4242], "local_path": "/etc"}}, "not under an allowed local root"),
        ({"kind": "download", "options": {"server_path": "../x"}}, "server_path[0]"),
        ({"kind": "download", "options": {"task_id_list": [4242], "max_sped": 5}}, "unknown option `max_sped`"),
        ({"kind": "upload_config", "options": {"task_id": 1, "config_file_list": ["/nowhere/task.json"]}}, "config_file_list[0]"),
    ],
)
def test_post_jobs_refuses_bad_options_with_a_400_naming_them(team, make_user, account, task, body, message):
    lead = make_user("lead", team=team, role="lead")

    response = _post(_client(lead), "/api/jobs/", {**body, "account": account.pk})

    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]
    assert not TransferJob.objects.exists()


def test_post_jobs_refuses_an_unknown_kind_and_a_missing_account(team, make_user, account):
    client = _client(make_user("lead", team=team, role="lead"))

    assert _post(client, "/api/jobs/", {"kind": "teleport", "account": account.pk}).status_code == 400
    assert _post(client, "/api/jobs/", {"kind": "download", "options": {"task_id_list": [1]}}).status_code == 400
    assert _post(client, "/api/jobs/", {"kind": "download", "account": account.pk, "options": "all"}).status_code == 400


def test_a_viewer_may_not_start_a_download_and_another_team_cannot_name_the_account(team, make_user, make_team, account, task):
    viewer = make_user("viewer", team=team, role="viewer")
    stranger = make_user("stranger", team=make_team("Other"), role="lead")
    body = {"kind": "download", "account": account.pk, "options": {"task_id_list": [task.task_id]}}

    assert _post(_client(viewer), "/api/jobs/", body).status_code == 403
    assert _post(_client(stranger), "/api/jobs/", body).status_code == 400  # not a choice: as if it did not exist
    assert not TransferJob.objects.exists()


def test_the_sdk_named_urls_start_their_kind(team, make_user, account, task, allowed_dir):
    client = _client(make_user("lead", team=team, role="lead"))

    response = _post(client, f"/api/accounts/{account.pk}/download/", {"task_id_list": [task.task_id]})
    refused = _post(client, f"/api/accounts/{account.pk}/auto_download/", {"server_path": "a"})

    assert response.status_code == 201, response.content
    assert TransferJob.objects.get().kind == "download"
    assert refused.status_code == 400 and "task_id_list" in refused.json()["error"]["message"]


def test_the_sdk_named_commands_start_their_kind_and_say_what_is_wrong(account, task, allowed_dir):
    out = StringIO()

    call_command(
        "download", "--account", "farm", "--task_id_list", str(task.task_id), "--local_path", str(allowed_dir / "x"), stdout=out
    )

    assert "download queued" in out.getvalue()
    job = TransferJob.objects.get()
    assert (job.options["task_id_list"], job.options["local_path"]) == ([task.task_id], str(allowed_dir / "x"))
    with pytest.raises(CommandError, match="has no task 7"):
        call_command("auto_download", "--account", str(account.pk), "--task_id_list", "7")
    with pytest.raises(CommandError, match="no farm account 'nope'"):
        call_command("download", "--account", "nope", "--task_id_list", "1")


def test_the_farm_page_download_form_starts_a_download_and_shows_a_refusal_on_the_page(
    team, make_user, account, task, allowed_dir
):
    client = _client(make_user("member", team=team, role="member"))
    form = {"kind": "auto_download", "task_id_list": [str(task.task_id)], "conflict": "skip_identical", "sleep_time": "5"}

    refused = client.post(f"/farm/{account.pk}/download", {**form, "local_path": "/etc/frames"})
    started = client.post(
        f"/farm/{account.pk}/download", {**form, "local_path": str(allowed_dir / "f"), "download_filename_format": "on"}
    )

    assert refused.status_code == 200
    assert "not under an allowed local root" in refused.content.decode()
    job = TransferJob.objects.get()
    assert started.status_code == 302 and started["Location"] == f"/jobs/{job.pk}/"
    assert (job.kind, job.options["download_filename_format"], job.options["sleep_time"]) == ("auto_download", "true", 5.0)


def test_a_viewer_sees_no_download_form_and_cannot_post_one(team, make_user, account, task):
    client = _client(make_user("viewer", team=team, role="viewer"))

    page = client.get(f"/farm/{account.pk}/").content.decode()
    response = client.post(
        f"/farm/{account.pk}/download", {"kind": "download", "task_id_list": [str(task.task_id)], "conflict": "overwrite"}
    )

    assert 'id="download-form"' not in page
    assert response.status_code == 200 and "you may not run" in response.content.decode()
    assert not TransferJob.objects.exists()


def test_a_download_job_page_says_what_it_moves(team, make_user, account, task, allowed_dir):
    lead = make_user("lead", team=team, role="lead")
    client = _client(lead)
    response = _post(
        client,
        "/api/jobs/",
        {
            "kind": "download",
            "account": account.pk,
            "options": {"task_id_list": [task.task_id], "local_path": str(allowed_dir / "d")},
        },
    )

    page = html.unescape(client.get(f"/jobs/{response.json()['id']}/").content.decode())

    assert f'the outputs of task {task.task_id}, from the output storage of farm account "farm" into {allowed_dir / "d"}' in page
    assert Path(allowed_dir).exists()
