"""Job controls through the REST API: the same services as the pages, with conflicts as 409."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import get_user_model

from transfers.models import AuditEvent, FarmAccount, TransferJob


@pytest.fixture
def lead(db):
    return get_user_model().objects.create_user("lead", password="pw-lead-123")


@pytest.fixture
def api(client, lead):
    client.force_login(lead)
    return client


def _job(lead, status: str) -> TransferJob:
    return TransferJob.objects.create(account=FarmAccount.objects.create(name=f"farm-{status}"), created_by=lead, status=status)


def test_pause_of_a_running_job_answers_the_paused_job(api, lead):
    job = _job(lead, "running")

    response = api.post(f"/api/jobs/{job.pk}/pause/")

    assert (response.status_code, response.json()["status"]) == (200, "paused")
    assert AuditEvent.objects.filter(action="job.pause", target_id=str(job.pk)).exists()


def test_resume_enqueues_the_job_after_commit(api, lead, django_capture_on_commit_callbacks):
    job = _job(lead, "paused")

    with mock.patch("transfers.tasks.run_job.delay") as delay, django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/jobs/{job.pk}/resume/")

    assert response.json()["status"] == "queued"
    delay.assert_called_once_with(job.pk)


def test_cancel_of_a_finished_job_is_a_conflict(api, lead):
    job = _job(lead, "completed")

    response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 409
    assert "completed" in response.json()["detail"]


def test_max_speed_refuses_a_string(api, lead):
    job = _job(lead, "running")

    response = api.post(f"/api/jobs/{job.pk}/max_speed/", {"max_speed": "fast"}, content_type="application/json")

    assert response.status_code == 400


def test_max_speed_sets_the_limit_in_kb_per_second(api, lead):
    job = _job(lead, "running")

    api.post(f"/api/jobs/{job.pk}/max_speed/", {"max_speed": 2048}, content_type="application/json")

    job.refresh_from_db()
    assert job.options["max_speed"] == 2048


def test_another_users_job_cannot_be_cancelled(api, lead):
    other = get_user_model().objects.create_user("other", password="pw-other-123")
    job = _job(other, "running")

    response = api.post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 404
    job.refresh_from_db()
    assert job.status == "running"
