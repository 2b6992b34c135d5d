"""Job groups (thread_pool_upload): one group of upload_asset jobs, at most pool_size running, one control,
team-scoped like jobs; the API and the page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from transfers import groups, services, tasks
from transfers.models import AuditEvent, JobGroup, TransferJob

pytestmark = pytest.mark.django_db

S = TransferJob.Status


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(tasks.run_job, "delay", sent.append)
    return sent


@pytest.fixture
def account(team, make_account) -> Any:
    return make_account(team, name="farm")


@pytest.fixture
def member(team, make_user) -> Any:
    return make_user("member", team=team, role="member")


@pytest.fixture
def parts(account, make_manifest) -> list[Any]:
    return [make_manifest(account, files=2, name=f"upload_{n}.json") for n in range(1, 4)]


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def _group(parts: list[Any], user: Any, pool_size: int = 2, **options: Any) -> JobGroup:
    return groups.group_create(manifests=parts, pool_size=pool_size, options=options, user=user)


def _set(group: JobGroup, *statuses: str) -> list[TransferJob]:
    jobs = list(group.jobs.order_by("pk"))
    for job, status in zip(jobs, statuses, strict=True):
        TransferJob.objects.filter(pk=job.pk).update(status=status)
    return jobs


def test_post_groups_makes_one_upload_job_per_manifest_in_one_group(member, parts, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        body = {"manifests": [p.pk for p in parts], "pool_size": 2, "options": {"max_speed": 500}}
        response = _post(_client(member), "/api/groups/", body)

    assert response.status_code == 201, response.content
    body = response.json()
    jobs = TransferJob.objects.filter(group_id=body["id"]).order_by("pk")
    assert [job.manifest_id for job in jobs] == [p.pk for p in parts]
    assert {(job.kind, job.options["max_speed"]) for job in jobs} == {("upload_asset", 500)}
    assert (body["status"], body["pool_size"], body["files_total"], body["bytes_total"]) == ("queued", 2, 6, 9)
    assert [job["id"] for job in body["jobs"]] == [job.pk for job in jobs]
    assert AuditEvent.objects.filter(action="group.create", actor=member, target_id=str(body["id"])).exists()


def test_no_more_than_pool_size_jobs_of_a_group_start(member, parts, enqueued):
    group = _group(parts, member, pool_size=2)
    first, second, third = group.jobs.order_by("pk")

    assert services.job_start(job_id=first.pk) and services.job_start(job_id=second.pk)
    assert not services.job_start(job_id=third.pk)  # its turn has not come: it stays queued

    third.refresh_from_db()
    assert third.status == S.QUEUED


def test_a_job_that_ends_starts_the_next_of_its_group(member, parts, enqueued, django_capture_on_commit_callbacks):
    group = _group(parts, member, pool_size=2)
    first, _, third = _set(group, S.RUNNING, S.RUNNING, S.QUEUED)
    enqueued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.job_transition(job_id=first.pk, to=S.COMPLETED)

    assert enqueued == [third.pk]
    assert services.job_start(job_id=third.pk)


def test_a_job_of_no_group_is_not_held_back(account, member, make_manifest, enqueued):
    job = services.job_create_upload(manifest=make_manifest(account), user=member)

    assert services.job_start(job_id=job.pk)


def test_pause_holds_the_group_and_resume_releases_it(member, parts, enqueued, django_capture_on_commit_callbacks):
    group = _group(parts, member, pool_size=2)
    first, second, third = _set(group, S.RUNNING, S.RUNNING, S.QUEUED)
    client = _client(member)

    with django_capture_on_commit_callbacks(execute=True):
        paused = _post(client, f"/api/groups/{group.pk}/pause/")

    assert paused.status_code == 200, paused.content
    assert (paused.json()["status"], paused.json()["held"], paused.json()["actions"]) == ("paused", True, ["resume", "cancel"])
    assert list(group.jobs.order_by("pk").values_list("status", flat=True)) == [S.PAUSED, S.PAUSED, S.QUEUED]
    assert not services.job_start(job_id=third.pk)  # a held group starts nothing

    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        resumed = _post(client, f"/api/groups/{group.pk}/resume/")

    assert resumed.status_code == 200, resumed.content
    assert list(group.jobs.order_by("pk").values_list("status", flat=True)) == [S.QUEUED] * 3
    assert set(enqueued) >= {first.pk, second.pk}
    assert AuditEvent.objects.filter(action="group.resume", target_id=str(group.pk), after__jobs=2).exists()


def test_cancel_and_retry_apply_to_every_job_that_allows_them(member, parts, enqueued):
    group = _group(parts, member)
    _set(group, S.FAILED, S.COMPLETED, S.COMPLETED_WITH_ERRORS)
    client = _client(member)

    retried = _post(client, f"/api/groups/{group.pk}/retry/")

    assert retried.status_code == 200, retried.content
    assert list(group.jobs.order_by("pk").values_list("status", flat=True)) == [S.QUEUED, S.COMPLETED, S.QUEUED]
    cancelled = _post(client, f"/api/groups/{group.pk}/cancel/")
    assert cancelled.json()["status"] == "completed_with_errors"  # a completed part stays completed
    assert list(group.jobs.order_by("pk").values_list("status", flat=True)) == [S.CANCELLED, S.COMPLETED, S.CANCELLED]
    assert _post(client, f"/api/groups/{group.pk}/retry/").status_code == 409


def test_group_figures_are_the_sums_of_its_jobs(member, parts, enqueued):
    group = _group(parts, member)
    jobs = _set(group, S.COMPLETED, S.RUNNING, S.QUEUED)
    TransferJob.objects.filter(pk=jobs[0].pk).update(files_done=2, bytes_done=3)
    TransferJob.objects.filter(pk=jobs[1].pk).update(files_done=1, files_failed=1, bytes_done=1)

    body = _client(member).get(f"/api/groups/{group.pk}/").json()

    figures = [body[name] for name in ("files_total", "files_done", "files_failed", "bytes_done", "bytes_total")]
    assert figures == [6, 3, 1, 4, 9]
    assert (body["status"], body["percent"], body["is_terminal"]) == ("running", 44, False)


@pytest.mark.parametrize(
    ("statuses", "held", "expected"),
    [
        ([S.COMPLETED, S.COMPLETED], False, "completed"),
        ([S.COMPLETED, S.FAILED], False, "completed_with_errors"),
        ([S.FAILED, S.CANCELLED], False, "failed"),
        ([S.CANCELLED], False, "cancelled"),
        ([S.QUEUED, S.COMPLETED], False, "queued"),
        ([S.QUEUED, S.COMPLETED], True, "paused"),
        ([S.PAUSED, S.COMPLETED], False, "paused"),
        ([S.RUNNING, S.PAUSED], True, "running"),
    ],
)
def test_group_status_from_its_jobs(statuses, held, expected):
    assert groups.group_status(statuses, held=held) == expected


@pytest.mark.parametrize(
    ("pool_size", "message"), [(0, "greater than or equal to 1"), (65, "less than or equal to 64"), ("many", "valid integer")]
)
def test_a_bad_pool_size_is_a_400(member, parts, enqueued, pool_size, message):
    response = _post(_client(member), "/api/groups/", {"manifests": [parts[0].pk], "pool_size": pool_size})

    assert response.status_code == 400
    assert message in json.dumps(response.json())
    assert not JobGroup.objects.exists()


def test_another_teams_manifest_in_the_list_is_a_400_and_nothing_is_made(member, parts, make_account, make_manifest, enqueued):
    foreign = make_manifest(make_account(name="theirs"))

    response = _post(_client(member), "/api/groups/", {"manifests": [parts[0].pk, foreign.pk]})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"manifests": [f"no manifest {foreign.pk}"]}
    assert not JobGroup.objects.exists() and not TransferJob.objects.exists()


def test_manifests_of_two_accounts_of_the_team_are_a_400(team, member, parts, make_account, make_manifest, enqueued):
    other = make_manifest(make_account(team, name="second farm"))

    response = _post(_client(member), "/api/groups/", {"manifests": [parts[0].pk, other.pk]})

    assert response.status_code == 400
    assert "one farm account" in response.json()["error"]["message"]


def test_bad_options_refuse_the_whole_group(member, parts, enqueued):
    response = _post(_client(member), "/api/groups/", {"manifests": [p.pk for p in parts], "options": {"pool_size": 0}})

    assert response.status_code == 400
    assert "pool_size" in response.json()["error"]["message"]
    assert not JobGroup.objects.exists() and not TransferJob.objects.exists()


def test_another_teams_group_is_a_404_everywhere(member, make_account, make_manifest, make_user, enqueued):
    account = make_account(name="theirs")
    lead = make_user("their-lead", team=account.team, role="lead")
    group = _group([make_manifest(account)], lead)
    client = _client(member)

    assert client.get(f"/api/groups/{group.pk}/").status_code == 404
    assert _post(client, f"/api/groups/{group.pk}/cancel/").status_code == 404
    assert client.get(f"/groups/{group.pk}/").status_code == 404
    assert client.post(f"/groups/{group.pk}/cancel").status_code == 404
    assert client.get("/api/groups/").json()["results"] == []
    assert TransferJob.objects.get(group=group).status == S.QUEUED


def test_a_viewer_sees_a_group_but_may_not_make_or_control_one(team, make_user, member, parts, enqueued):
    viewer = make_user("viewer", team=team, role="viewer")
    group = _group(parts, member)
    client = _client(viewer)

    assert client.get(f"/api/groups/{group.pk}/").status_code == 200
    assert _post(client, f"/api/groups/{group.pk}/pause/").status_code == 403
    assert _post(client, "/api/groups/", {"manifests": [parts[0].pk]}).status_code == 403
    page = client.get(f"/groups/{group.pk}/").content.decode()
    assert 'id="group-actions"' not in page


def test_the_group_page_shows_its_parts_and_controls_and_the_job_page_links_to_it(member, parts, enqueued):
    group = _group(parts, member)
    job = group.jobs.order_by("pk").first()
    client = _client(member)

    page = client.get(f"/groups/{group.pk}/").content.decode()
    assert f'href="/jobs/{job.pk}/"' in page and 'data-action="pause"' in page and "at most 2" in page
    assert f'href="/groups/{group.pk}/"' in client.get(f"/jobs/{job.pk}/").content.decode()

    response = client.post(f"/groups/{group.pk}/pause", follow=True)
    assert "Pause: 0 of the group" in response.content.decode()
    assert JobGroup.objects.get(pk=group.pk).held


def test_a_jobs_failures_name_each_failed_file_and_why(member, parts, make_user, enqueued):
    from transfers.models import TransferItem

    job = services.job_create_upload(manifest=parts[0], user=member)
    TransferItem.objects.create(job=job, number=1, local="/a.bin", server="/a.bin", state="failed", error="local file not found")
    TransferItem.objects.create(job=job, number=2, local="/b.bin", server="/b.bin", state="done")

    body = _client(member).get(f"/api/jobs/{job.pk}/failures/").json()

    failed = {"number": 1, "local": "/a.bin", "server": "/a.bin", "error": "local file not found"}
    assert body == {"count": 1, "results": [failed]}
    assert _client(make_user("stranger")).get(f"/api/jobs/{job.pk}/failures/").status_code == 404


def test_a_broker_away_when_a_job_ends_costs_only_the_next_start(member, parts, monkeypatch, caplog):
    from kombu.exceptions import OperationalError

    group = _group(parts, member, pool_size=1)
    first, *_ = _set(group, S.COMPLETED, S.QUEUED, S.QUEUED)

    def away(job_id: int) -> None:
        raise OperationalError("broker away")

    monkeypatch.setattr(tasks.run_job, "delay", away)

    assert groups.group_advance(job_id=first.pk) == []
    assert groups.group_release(group_id=group.pk) == []
    assert "could not start" in caplog.text


# --- thread_pool_upload from a split manifest's page -------------------------------------------------------


@pytest.fixture
def split_manifest(account, parts) -> Any:
    whole = parts[0].__class__.objects.create(name="upload.json", account=account)
    parts[0].__class__.objects.filter(pk__in=[p.pk for p in parts]).update(split_from=whole)
    return whole


def test_the_manifest_page_uploads_its_parts_as_one_group(member, split_manifest, parts, enqueued):
    client = _client(member)

    page = client.get(f"/manifests/{split_manifest.pk}/")
    response = client.post(f"/manifests/{split_manifest.pk}/thread_pool_upload", {"pool_size": "2", "max_speed": "300"})

    assert 'id="thread-pool-upload"' in page.content.decode()
    group = JobGroup.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/groups/{group.pk}/"
    jobs = list(group.jobs.order_by("pk"))
    assert [job.manifest_id for job in jobs] == [p.pk for p in parts] and group.pool_size == 2
    assert {job.options["max_speed"] for job in jobs} == {300}


def test_parts_in_parallel_refused_for_a_viewer_bad_input_and_no_parts(
    team, make_user, split_manifest, parts, account, make_manifest
):
    viewer = _client(make_user("viewer", team=team, role="viewer"))
    lead = _client(make_user("lead", team=team, role="lead"))
    lonely = make_manifest(account, files=1, name="whole.json")

    assert 'id="thread-pool-upload"' not in viewer.get(f"/manifests/{split_manifest.pk}/").content.decode()
    refused = viewer.post(f"/manifests/{split_manifest.pk}/thread_pool_upload", {"pool_size": "2"}, follow=True)
    bad = lead.post(f"/manifests/{split_manifest.pk}/thread_pool_upload", {"pool_size": "0"}, follow=True)
    none = lead.post(f"/manifests/{lonely.pk}/thread_pool_upload", {"pool_size": "2"}, follow=True)

    assert "Not started" in refused.content.decode() and "Not started" in bad.content.decode()
    assert "no parts yet" in none.content.decode()
    assert not JobGroup.objects.exists()


def test_parts_in_parallel_of_another_teams_manifest_is_a_404(make_team, make_user, split_manifest):
    stranger = _client(make_user("stranger", team=make_team("Other"), role="lead"))

    assert stranger.post(f"/manifests/{split_manifest.pk}/thread_pool_upload", {"pool_size": "2"}).status_code == 404
    assert not JobGroup.objects.exists()
