"""Job controls through the REST API: the same services as the pages, with conflicts as 409."""

from __future__ import annotations

from unittest import mock

import pytest

from transfers.models import AuditEvent, TransferJob


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def api(client, lead):
    client.force_login(lead)
    return client


@pytest.fixture
def new_job(team, make_account, make_job):
    def make(lead, status: str, *, in_team=None) -> TransferJob:
        return make_job(account=make_account(in_team or team, name=f"farm-{status}"), created_by=lead, status=status)

    return make


def test_pause_of_a_running_job_answers_the_paused_job(api, lead, new_job):
    job = new_job(lead, "running")

    response = api.post(f"/api/jobs/{job.pk}/pause/")

    assert (response.status_code, response.json()["status"]) == (200, "paused")
    assert AuditEvent.objects.filter(action="job.pause", target_id=str(job.pk)).exists()


def test_resume_enqueues_the_job_after_commit(api, lead, new_job, django_capture_on_commit_callbacks):
    job = new_job(lead, "paused")

    with mock.patch("transfers.tasks.run_job.delay") as delay, django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/jobs/{job.pk}/resume/")

    assert response.json()["status"] == "queued"
    delay.assert_called_once_with(job.pk)


def test_cancel_of_a_finished_job_is_a_conflict(api, lead, new_job):
    job = new_job(lead, "completed")

    response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 409
    assert "completed" in response.json()["error"]["message"]


def test_max_speed_refuses_a_string(api, lead, new_job):
    job = new_job(lead, "running")

    response = api.post(f"/api/jobs/{job.pk}/max_speed/", {"max_speed": "fast"}, content_type="application/json")

    assert response.status_code == 400


def test_max_speed_sets_the_limit_in_kb_per_second(api, lead, new_job):
    job = new_job(lead, "running")

    api.post(f"/api/jobs/{job.pk}/max_speed/", {"max_speed": 2048}, content_type="application/json")

    job.refresh_from_db()
    assert job.options["max_speed"] == 2048


def test_another_teams_job_cannot_be_cancelled(api, lead, new_job, make_team, make_user):
    other_team = make_team()
    other = make_user("other", team=other_team, role="lead")
    job = new_job(other, "running", in_team=other_team)

    response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 404
    job.refresh_from_db()
    assert job.status == "running"


def test_max_speed_refuses_a_body_that_is_not_an_object(api, lead, new_job):
    job = new_job(lead, "running")

    response = api.post(f"/api/jobs/{job.pk}/max_speed/", [None, None], content_type="application/json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()["error"]["fields"]


def test_max_speed_refuses_a_number_beyond_the_kinds_bound(api, lead, new_job):
    job = new_job(lead, "running")

    response = api.post(f"/api/jobs/{job.pk}/max_speed/", {"max_speed": 10**30}, content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["max_speed"]
