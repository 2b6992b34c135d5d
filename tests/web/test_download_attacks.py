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

from tests.conftest import wait_for
from tests.web.test_downloads import _files, _output, _render, _run, _same, _start, account, enqueued, lead, local
from transfers import execution, kinds, progress, services
from transfers.farm_events import Actor, farm_event_record
from transfers.models import FarmFrame, TransferItem, TransferJob

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["account", "enqueued", "lead", "local"]  # fixtures shared with test_downloads

SYSTEM = Actor(user=None)


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

    assert by_jobs.status_code == 400 and "account" in by_jobs.json(), by_jobs.content
    assert (by_url.status_code, by_page.status_code, reverse.status_code) == (404, 404, 404)
    assert on_ours.status_code == 400 and f"has no task {their_task.task_id}" in on_ours.json()["detail"]
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
        assert named in response.json()["detail"]
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


def test_a_thousand_task_ids_make_one_job_quickly(account, lead, local, make_farm_task):
    import time

    ids = [make_farm_task(account, scene=f"s{n}", status=25).task_id for n in range(1000)]

    started = time.monotonic()
    response = _post(_client(lead), f"/api/accounts/{account.pk}/download/", {"task_id_list": ids, "local_path": str(local)})

    assert response.status_code == 201, response.content[:300]
    assert time.monotonic() - started < 5, "the request only records the job"
