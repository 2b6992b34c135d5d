"""Models and services: secrets at rest, the audit trail, job creation, transitions and who sees which job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from transfers import progress, selectors, services, tasks
from transfers.models import AuditEvent, FarmAccount, Manifest, TransferJob

pytestmark = pytest.mark.django_db

ACCESS_KEY = "AKIA-plain-access-key-7c1e"
REQUEST_ID = "req-0123456789abcdef"


def _raw_access_key(account: FarmAccount) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT access_key FROM {FarmAccount._meta.db_table} WHERE id = %s", [account.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def owner(team, make_user):
    return make_user("owner", team=team, role="lead")


@pytest.fixture
def other(make_team, make_user):
    """A lead of another team."""
    return make_user("other", team=make_team("other team"), role="lead")


@pytest.fixture
def staff():
    return get_user_model().objects.create_superuser("admin", password="pw-admin-123")


@pytest.fixture
def account(team, make_account) -> FarmAccount:
    return make_account(team, name="farm", access_id="id-1", access_key=ACCESS_KEY)


@pytest.fixture
def job(account, owner) -> TransferJob:
    return TransferJob.objects.create(account=account, created_by=owner)


@pytest.fixture
def manifest(account, owner, allowed_dir: Path) -> Manifest:
    files = []
    for number in range(3):
        path = allowed_dir / f"f{number}.bin"
        path.write_bytes(b"x" * (number + 1))
        files.append(path)
    data = json.dumps({"asset": [{"local": str(p), "server": str(p)} for p in files]}).encode()
    return services.manifest_import(name="shots", account=account, data=data, user=owner)


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    """Job ids handed to the worker queue (no worker runs in these tests)."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.run_job, "delay", ids.append)
    return ids


# --- EncryptedTextField ---------------------------------------------------------------------------


def test_the_access_key_is_stored_as_ciphertext(account):
    raw = _raw_access_key(account)

    assert ACCESS_KEY not in raw
    assert raw.startswith("gAAAA")  # a Fernet token


def test_the_access_key_reads_back_as_plaintext(account):
    assert FarmAccount.objects.get(pk=account.pk).access_key == ACCESS_KEY


def test_a_key_encrypted_under_an_old_key_reads_after_a_new_key_is_prepended(make_account):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(CREDENTIAL_KEYS=[old]):
        account = make_account(name="rotated", access_key=ACCESS_KEY)

    with override_settings(CREDENTIAL_KEYS=[new, old]):
        assert FarmAccount.objects.get(pk=account.pk).access_key == ACCESS_KEY


def test_saving_again_re_encrypts_under_the_newest_key(make_account):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(CREDENTIAL_KEYS=[old]):
        account = make_account(name="rotated", access_key=ACCESS_KEY)
    with override_settings(CREDENTIAL_KEYS=[new, old]):
        FarmAccount.objects.get(pk=account.pk).save()

    with override_settings(CREDENTIAL_KEYS=[new]):
        assert FarmAccount.objects.get(pk=account.pk).access_key == ACCESS_KEY


def test_a_key_no_configured_key_decrypts_fails_loudly(make_account):
    with override_settings(CREDENTIAL_KEYS=[Fernet.generate_key().decode()]):
        account = make_account(name="lost", access_key=ACCESS_KEY)

    with (
        override_settings(CREDENTIAL_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(ImproperlyConfigured, match="access_key"),
    ):
        FarmAccount.objects.get(pk=account.pk)


# --- the access key is never rendered back ------------------------------------------------------


def test_the_access_key_never_appears_in_the_account_list_api(client, owner, account):
    client.force_login(owner)

    response = client.get("/api/accounts/")

    assert response.status_code == 200
    assert ACCESS_KEY.encode() not in response.content
    assert _raw_access_key(account).encode() not in response.content
    assert response.json()["results"][0]["has_access_key"] is True


def test_the_access_key_never_appears_in_the_account_detail_api(client, owner, account):
    client.force_login(owner)

    response = client.get(f"/api/accounts/{account.pk}/")

    assert response.status_code == 200
    assert "access_key" not in response.json()
    assert ACCESS_KEY.encode() not in response.content


def test_creating_an_account_through_the_api_does_not_echo_the_key(client, staff, team):
    client.force_login(staff)

    response = client.post(
        "/api/accounts/", {"name": "new-farm", "team": team.pk, "access_key": ACCESS_KEY}, content_type="application/json"
    )

    assert response.status_code == 201
    assert ACCESS_KEY.encode() not in response.content
    assert FarmAccount.objects.get(name="new-farm").access_key == ACCESS_KEY


def test_the_access_key_never_appears_in_the_admin_change_page(client, staff, account):
    client.force_login(staff)

    response = client.get(reverse("admin:transfers_farmaccount_change", args=[account.pk]))

    assert response.status_code == 200
    assert ACCESS_KEY.encode() not in response.content
    assert _raw_access_key(account).encode() not in response.content


def test_saving_the_admin_form_with_an_empty_key_keeps_the_stored_key(client, staff, account):
    client.force_login(staff)
    form = {"name": "farm", "team": account.team_id, "kind": "local", "access_id": "id-2", "access_key": "", "domain": "d"}
    form["platform"] = "2"

    response = client.post(reverse("admin:transfers_farmaccount_change", args=[account.pk]), form)

    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.access_id, account.access_key) == ("id-2", ACCESS_KEY)


# --- the audit trail is append-only -------------------------------------------------------------


@pytest.fixture
def event(owner, account) -> AuditEvent:
    return services.audit_record(actor=owner, action="account.create", target=account)


def test_an_audit_event_refuses_a_second_save(event):
    event.outcome = "tampered"

    with pytest.raises(ValueError, match="append-only"):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).outcome == "ok"


def test_an_audit_event_refuses_delete(event):
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_audit_events_refuse_a_bulk_delete(event):
    # QuerySet.delete() never calls Model.delete(): the guard must sit on the queryset too.
    with pytest.raises(ValueError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


# --- job creation -------------------------------------------------------------------------------


def test_the_upload_button_records_job_create_with_the_request_id(client, owner, manifest, enqueued):
    client.force_login(owner)

    response = client.post(reverse("manifest-upload", args=[manifest.pk]), HTTP_X_REQUEST_ID=REQUEST_ID)

    job = TransferJob.objects.get(manifest=manifest)
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="job.create")
    assert (event.target_type, event.target_id, event.request_id, event.actor) == ("TransferJob", str(job.pk), REQUEST_ID, owner)


def test_the_upload_button_redirects_to_the_new_job(client, owner, manifest, enqueued):
    client.force_login(owner)

    response = client.post(reverse("manifest-upload", args=[manifest.pk]))

    assert response["Location"] == reverse("job-detail", args=[TransferJob.objects.get(manifest=manifest).pk])


def test_a_new_job_has_one_pending_item_per_manifest_entry_once_the_worker_prepared_it(owner, manifest, enqueued):
    job = services.job_create_upload(manifest=manifest, user=owner)
    assert not job.items.exists()  # the request only records the job; the worker makes its items

    assert services.job_prepare(job_id=job.pk) is True

    assert job.status == TransferJob.Status.QUEUED
    assert list(job.items.values_list("number", "state", "size")) == [(1, "pending", 1), (2, "pending", 2), (3, "pending", 3)]
    assert (job.files_total, job.bytes_total) == (3, 6)


def test_a_new_job_is_enqueued_by_id_only_after_commit(owner, manifest, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = services.job_create_upload(manifest=manifest, user=owner)
    assert enqueued == []

    for callback in callbacks:
        callback()

    assert enqueued == [job.pk]


# --- transitions --------------------------------------------------------------------------------


def test_a_transition_the_current_status_does_not_allow_returns_false_and_changes_nothing(job):
    changed = services.job_transition(job_id=job.pk, to=TransferJob.Status.COMPLETED, error="should not be written")

    job.refresh_from_db()
    assert changed is False
    assert (job.status, job.error) == (TransferJob.Status.QUEUED, "")


def test_an_allowed_transition_returns_true_and_moves_the_job(job):
    assert services.job_start(job_id=job.pk) is True

    job.refresh_from_db()
    assert job.status == TransferJob.Status.RUNNING
    assert job.started_at is not None


def test_a_second_identical_transition_returns_false(job, owner):
    services.job_start(job_id=job.pk)
    assert services.job_pause(job=job, user=owner) is True

    assert services.job_pause(job=job, user=owner) is False
    assert TransferJob.objects.get(pk=job.pk).status == TransferJob.Status.PAUSED


def test_a_restart_of_a_running_job_keeps_its_first_start_time(job):
    # Only the holder of the job's lease calls job_start; on a running job that means a takeover.
    services.job_start(job_id=job.pk)
    started_at = TransferJob.objects.get(pk=job.pk).started_at

    assert services.job_start(job_id=job.pk) is True
    assert TransferJob.objects.get(pk=job.pk).started_at == started_at


def test_a_terminal_job_cannot_be_moved(job):
    services.job_start(job_id=job.pk)
    services.job_transition(job_id=job.pk, to=TransferJob.Status.COMPLETED)

    assert services.job_transition(job_id=job.pk, to=TransferJob.Status.CANCELLED) is False
    assert TransferJob.objects.get(pk=job.pk).status == TransferJob.Status.COMPLETED


def test_a_transition_publishes_the_new_state_after_commit(job, monkeypatch, django_capture_on_commit_callbacks):
    published: list[tuple[int, str]] = []

    def publish_state(job_id, *, status, live=None, team_id=None):
        published.append((job_id, status))

    monkeypatch.setattr(progress, "publish_state", publish_state)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.job_start(job_id=job.pk)
    assert published == []

    for callback in callbacks:
        callback()

    assert published == [(job.pk, TransferJob.Status.RUNNING)]


def test_a_refused_transition_publishes_nothing(job, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        services.job_transition(job_id=job.pk, to=TransferJob.Status.FAILED)

    assert callbacks == []


# --- who sees which job -------------------------------------------------------------------------


@pytest.fixture
def jobs_of_two_users(account, owner, other, make_account) -> tuple[TransferJob, TransferJob]:
    """A job of the owner's team, and one of the other user's team."""
    other_account = make_account(other.memberships.get().team)
    return TransferJob.objects.create(account=account, created_by=owner), TransferJob.objects.create(
        account=other_account, created_by=other
    )


def test_staff_see_every_job(staff, jobs_of_two_users):
    assert set(selectors.jobs_for(staff)) == set(jobs_of_two_users)


def test_a_user_sees_only_their_teams_jobs(owner, jobs_of_two_users):
    assert list(selectors.jobs_for(owner)) == [jobs_of_two_users[0]]


def test_an_anonymous_visitor_sees_no_job(jobs_of_two_users):
    assert list(selectors.jobs_for(AnonymousUser())) == []


def test_the_job_page_is_404_for_another_teams_job(client, other, job):
    client.force_login(other)

    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 404


def test_the_job_page_shows_the_owner_their_job(client, owner, job):
    client.force_login(owner)

    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 200


def test_the_job_api_is_404_for_another_teams_job(client, other, job):
    client.force_login(other)

    assert client.get(f"/api/jobs/{job.pk}/").status_code == 404


def test_the_job_api_lists_only_the_users_teams_jobs(client, owner, jobs_of_two_users):
    client.force_login(owner)

    ids = [row["id"] for row in client.get("/api/jobs/").json()["results"]]

    assert ids == [jobs_of_two_users[0].pk]


# --- request ids --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login/", "/jobs/", "/no-such-page/", "/api/jobs/"])
def test_every_response_carries_a_request_id(client, path):
    response = client.get(path)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_a_sane_incoming_request_id_is_echoed_back(client):
    response = client.get("/login/", HTTP_X_REQUEST_ID=REQUEST_ID)

    assert response["X-Request-ID"] == REQUEST_ID


@pytest.mark.parametrize("incoming", ["short", "has spaces in it", "<script>alert(1)</script>", "x" * 65])
def test_an_odd_incoming_request_id_is_replaced(client, incoming):
    response = client.get("/login/", HTTP_X_REQUEST_ID=incoming)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
