"""/api/transfer-tasks/: the SDK's start_transfer, get_task_list_status and get_task_status as REST, with
the SDK's JSON keys; refusals and unknown tasks in the API's one error shape (never a 500)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from transfers.api_tokens import api_token_create
from transfers.models import AuditEvent, TransferJob

pytestmark = pytest.mark.django_db

URL = "/api/transfer-tasks/"


@pytest.fixture
def account(team, make_account):
    return make_account(team, name="farm")


@pytest.fixture
def member(team, make_user):
    return make_user("member", team=team, role="member")


def _as(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def _download(account, folder, **extra):
    return {"account": account.pk, "task_type": "download", "local_path": str(folder), "server_path": "77_shot", **extra}


def _error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_a_start_answers_201_with_the_sdks_keys(account, member, allowed_dir):
    response = _as(member).post(URL, _download(account, allowed_dir), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"code", "message", "task-id"} and body["code"] == 0
    assert TransferJob.objects.get(pk=body["task-id"]).kind == "download"


def test_a_started_task_reads_back_by_its_id(account, member, allowed_dir):
    api = _as(member)
    task_id = api.post(URL, _download(account, allowed_dir), format="json").json()["task-id"]

    body = api.get(f"{URL}{task_id}/").json()

    assert body["code"] == 0
    assert [(row["task-id"], row["task-type"], row["task-state"]) for row in body["task-list"]] == [
        (task_id, "download", "ready")
    ]


def test_a_start_through_a_token_is_audited_with_its_user_and_request_id(account, member, allowed_dir):
    key = api_token_create(user=member, name="pipeline")[1]

    response = APIClient().post(URL, _download(account, allowed_dir), format="json", HTTP_AUTHORIZATION=f"Token {key}")

    event = AuditEvent.objects.get(action="job.create", target_id=str(response.json()["task-id"]))
    assert event.actor == member and event.request_id


def test_the_list_holds_only_the_users_teams_tasks(account, member, make_job, make_account, make_team):
    mine = make_job(account=account, kind="download", status="paused")
    make_job(account=make_account(make_team("Other")), kind="download")

    body = _as(member).get(URL).json()

    assert body["code"] == 0
    assert [(row["task-id"], row["task-state"]) for row in body["task-list"]] == [(mine.pk, "stopped")]


def test_the_list_takes_a_task_group(account, member, make_job):
    make_job(account=account, kind="download", status="running")
    ended = make_job(account=account, kind="download", status="completed")

    body = _as(member).get(URL, {"task_group": "ended"}).json()

    assert [row["task-id"] for row in body["task-list"]] == [ended.pk]


def test_an_unknown_task_group_is_a_400_naming_it(member):
    error = _error(_as(member).get(URL, {"task_group": "mine"}), 400, "invalid")

    assert "task_group" in error["fields"]


def test_another_teams_task_is_a_404_like_a_missing_one(member, make_job, make_account, make_team):
    theirs = make_job(account=make_account(make_team("Other")), kind="download")
    api = _as(member)

    hidden = _error(api.get(f"{URL}{theirs.pk}/"), 404, "not_found")
    missing = _error(api.get(f"{URL}{theirs.pk + 1000}/"), 404, "not_found")

    assert hidden["message"].replace(str(theirs.pk), "N") == missing["message"].replace(str(theirs.pk + 1000), "N")


def test_another_teams_account_is_a_404_like_a_missing_one(member, make_account, make_team, allowed_dir):
    theirs = make_account(make_team("Other"), name="theirs")
    api = _as(member)

    _error(api.post(URL, _download(theirs, allowed_dir), format="json"), 404, "not_found")
    assert not TransferJob.objects.exists()


def test_a_viewer_cannot_start(account, team, make_user, allowed_dir):
    viewer = make_user("viewer", team=team, role="viewer")

    _error(_as(viewer).post(URL, _download(account, allowed_dir), format="json"), 403, "permission_denied")
    assert not TransferJob.objects.exists()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"task_type": "sync"}, "task_type"),
        ({"task_type": "upload", "file_type": "json"}, "task_id"),
        ({"task_type": "upload", "local_path": "/etc/hostname"}, "outside the allowed roots"),
        ({"task_type": "download", "local_path": "/etc"}, "local_path"),
        ({"max_speed": "fast"}, "max_speed"),
        ({"colour": "red"}, "colour"),
        ({"account": "one"}, "account"),
    ],
)
def test_bad_input_is_a_400_saying_what(body, named, account, team, make_user, allowed_dir):
    lead = make_user("lead", team=team, role="lead")
    (allowed_dir / "task.json").write_text("{}")
    sent = {**_download(account, allowed_dir), "local_path": str(allowed_dir / "task.json"), **body}

    error = _error(_as(lead).post(URL, sent, format="json"), 400, "invalid")

    assert named in error["message"]
    assert not TransferJob.objects.exists()


def test_a_form_post_starts_too(account, member, allowed_dir):
    response = _as(member).post(URL, _download(account, allowed_dir, max_speed="512"))

    assert response.status_code == 201, response.content
    assert TransferJob.objects.get(pk=response.json()["task-id"]).options["max_speed"] == 512


def test_a_body_that_is_not_an_object_is_a_400(member):
    _error(_as(member).post(URL, [1, 2], format="json"), 400, "invalid")


def test_wait_is_refused_here_with_where_to_poll(account, member, allowed_dir):
    error = _error(_as(member).post(URL, _download(account, allowed_dir, wait=True), format="json"), 400, "invalid")

    assert "poll" in error["fields"]["wait"][0]
    assert not TransferJob.objects.exists()


def test_anonymous_callers_get_a_401():
    _error(APIClient().get(URL), 401, "not_authenticated")


def test_the_schema_documents_the_three_operations(member):
    schema = _as(member).get("/api/schema/?format=json").json()

    operations = {
        schema["paths"][URL]["get"]["operationId"],
        schema["paths"][URL]["post"]["operationId"],
        schema["paths"][URL + "{id}/"]["get"]["operationId"],
    }
    assert operations == {"transfer_tasks_list", "transfer_tasks_start", "transfer_tasks_retrieve"}
    body = schema["paths"][URL]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"account", "task_type", "local_path", "server_path", "file_type", "task_id", "trans_storage"} <= set(
        body["properties"]
    )
