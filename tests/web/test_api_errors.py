"""One error shape for the API: {"error": {"code", "message", "fields" (validation only)}} for every 4xx."""

from __future__ import annotations

import pytest


@pytest.fixture
def lead(team, make_user):
    return make_user("lead", team=team, role="lead")


@pytest.fixture
def api(client, lead):
    client.force_login(lead)
    return client


@pytest.fixture
def job(team, make_account, make_job, lead):
    return make_job(account=make_account(team), created_by=lead, status="running")


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert list(body) == ["error"] and body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_401_without_credentials(client):
    error = _error(client.get("/api/jobs/"), 401, "not_authenticated")

    assert "fields" not in error


def test_401_with_a_wrong_token(client, db):
    _error(client.get("/api/jobs/", HTTP_AUTHORIZATION="Token rvt_nope"), 401, "authentication_failed")


def test_403_for_a_viewer_pausing(client, team, make_user, job):
    client.force_login(make_user("viewer", team=team, role="viewer"))

    _error(client.post(f"/api/jobs/{job.pk}/pause/"), 403, "permission_denied")


def test_404_for_another_teams_job(api, make_account, make_job):
    hidden = make_job(account=make_account(name="hidden"))

    _error(api.get(f"/api/jobs/{hidden.pk}/"), 404, "not_found")


def test_404_for_an_unknown_api_url(api):
    _error(api.get("/api/no-such-thing/"), 404, "not_found")


def test_an_unknown_page_url_keeps_the_html_404(api):
    response = api.get("/no-such-page/")

    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_405_for_a_wrong_method(api, job):
    _error(api.get(f"/api/jobs/{job.pk}/pause/"), 405, "method_not_allowed")


def test_409_for_a_state_that_does_not_allow_it(api, job):
    job.status = "completed"
    job.save()

    error = _error(api.post(f"/api/jobs/{job.pk}/pause/"), 409, "conflict")

    assert "completed" in error["message"] and "fields" not in error


def test_400_validation_names_each_field(api, job):
    response = api.post(f"/api/jobs/{job.pk}/max_speed/", {"max_speed": "fast"}, content_type="application/json")

    error = _error(response, 400, "invalid")

    assert list(error["fields"]) == ["max_speed"]
    assert "max_speed" in error["message"]


def test_400_for_a_serializer_names_its_fields(api):
    error = _error(api.post("/api/jobs/", {"kind": "teleport"}, content_type="application/json"), 400, "invalid")

    assert "kind" in error["fields"] and all(isinstance(m, str) for m in error["fields"]["kind"])


def test_400_for_a_refused_option_is_one_message(api, team, make_account):
    account = make_account(team)

    response = api.post(f"/api/accounts/{account.pk}/download/", {"pool_size": 0}, content_type="application/json")

    error = _error(response, 400, "invalid")

    assert "pool_size" in error["message"] or "task_id_list" in error["message"]


def test_400_for_a_body_that_is_not_json(api):
    _error(api.post("/api/jobs/", "{nope", content_type="application/json"), 400, "parse_error")


def test_415_for_an_unknown_media_type(api):
    _error(api.post("/api/jobs/", "x", content_type="text/x-unknown"), 415, "unsupported_media_type")


def test_farm_events_errors_have_the_same_shape(client, make_account):
    account = make_account()

    _error(client.post(f"/api/farm/{account.pk}/events/", b"{}", content_type="application/json"), 401, "not_authenticated")
    wrong = _error(client.get(f"/api/farm/{account.pk}/events/"), 405, "method_not_allowed")

    assert "POST" in wrong["message"]


def test_400_for_a_form_body_with_too_many_fields(api, settings, team, make_account, make_manifest):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    manifest = make_manifest(make_account(team))

    response = api.post(f"/api/manifests/{manifest.pk}/append/", {"paths": [f"/p{n}" for n in range(11)]})

    assert "too many fields" in _error(response, 400, "too_large")["message"]


def test_400_for_a_bad_entries_filter_names_the_parameter(api, team, make_account, make_manifest):
    manifest = make_manifest(make_account(team))

    error = _error(
        api.get(f"/api/manifests/{manifest.pk}/entries/", {"size_min": "-1", "after": "1", "before": "2"}), 400, "invalid"
    )

    assert "size_min" in error["fields"] and error["fields"]["non_field_errors"] == [
        "Page after an entry or before one, not both."
    ]


def test_409_for_the_entries_of_a_manifest_not_ready(api, team, make_account, make_manifest):
    manifest = make_manifest(make_account(team))
    manifest.state = manifest.State.IMPORTING
    manifest.save()

    _error(api.get(f"/api/manifests/{manifest.pk}/entries/"), 409, "conflict")


def test_400_for_a_picker_path_outside_the_roots(api):
    assert "absolute" in _error(api.get("/api/manifests/folders/", {"path": "relative"}), 400, "invalid")["message"]
