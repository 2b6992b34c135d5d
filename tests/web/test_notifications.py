"""Notifications: the settings page (a user's own only, the webhook secret shown once), who is told of a
job's end and of a watched task's end, an email in the outbox, a webhook to a small HTTP server on
127.0.0.1 whose signature verifies, a redirect not followed, a closed port retried with a doubling wait
then logged as failed, and a job's end reaching a webhook through the real worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from tests.conftest import wait_for
from transfers import notifications, services
from transfers.downloads import TaskWatch
from transfers.models import AuditEvent, NotificationDelivery, NotificationSettings, TransferJob
from transfers.run_context import JobRun

EVENTS = ["job_completed", "job_failed", "task_ended", "task_failed"]


class Hook:
    """A tiny webhook receiver on 127.0.0.1: records each request; answers `status` (a 302 with a Location)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 204
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(hook.status)
                if hook.status == 302:
                    self.send_header("Location", "/moved")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, count: int, timeout: float = 30) -> None:
        wait_for(lambda: len(self.requests) >= count, timeout=timeout, what=f"{count} webhook request(s)")


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


def _settings(user: Any, **fields: Any) -> NotificationSettings:
    row = notifications.settings_of(user)
    for name, value in {"events": EVENTS, **fields}.items():
        setattr(row, name, value)
    row.save()
    return row


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- the settings page --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_saving_a_webhook_shows_its_secret_once_and_audits_it_as_set(make_user):
    user = make_user("ann")
    client = _client(user)

    response = client.post(
        "/settings/notifications/", {"webhook_url": "https://hooks.example.com/rvweb", "events": ["job_completed", "job_failed"]}
    )

    row = NotificationSettings.objects.get(user=user)
    page = response.content.decode()
    assert response.status_code == 200 and row.webhook_secret and row.webhook_secret in page
    assert response["Cache-Control"] == "no-store"
    assert row.events == ["job_completed", "job_failed"] and row.webhook_url == "https://hooks.example.com/rvweb"
    again = client.get("/settings/notifications/").content.decode()
    assert row.webhook_secret not in again and 'id="secret-state">set<' in again
    audit = AuditEvent.objects.get(action="notifications.change")
    assert audit.after["webhook_secret"] == "set" and row.webhook_secret not in json.dumps([audit.before, audit.after])


@pytest.mark.django_db
def test_saving_again_keeps_the_secret_unless_a_new_one_is_asked_for(make_user):
    user = make_user()
    client = _client(user)
    client.post("/settings/notifications/", {"webhook_url": "http://127.0.0.1:9/x"})
    first = NotificationSettings.objects.get(user=user).webhook_secret

    kept = client.post("/settings/notifications/", {"webhook_url": "http://127.0.0.1:9/y"})
    renewed = client.post("/settings/notifications/", {"webhook_url": "http://127.0.0.1:9/y", "new_secret": "on"})

    assert kept.status_code == 302
    second = NotificationSettings.objects.get(user=user).webhook_secret
    assert second != first and second in renewed.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"webhook_url": "ftp://example.com/x"}, "http:// or https://"),
        ({"webhook_url": "javascript:alert(1)"}, "http:// or https://"),
        ({"webhook_url": "https://user:pw@example.com/"}, "no user name or password"),
        ({"events": ["job_exploded"]}, "not one of the available choices"),
        ({"email": "on"}, "no email address"),
    ],
)
def test_bad_settings_are_form_errors(make_user, data, says):
    user = make_user()

    response = _client(user).post("/settings/notifications/", data)

    assert response.status_code == 400 and says in response.content.decode()
    assert not NotificationSettings.objects.filter(user=user).exclude(webhook_url="").exists()


@pytest.mark.django_db
def test_another_users_settings_and_deliveries_are_not_visible(make_user):
    ann, bob = make_user("ann"), make_user("bob", staff=True)
    _settings(ann, webhook_url="http://127.0.0.1:9/ann-only-path", webhook_secret="s")
    NotificationDelivery.objects.create(user=ann, channel="webhook", event="job_failed", status="failed", error="ann-error-1")

    page = _client(bob).get("/settings/notifications/").content.decode()

    assert "ann-only-path" not in page and "ann-error-1" not in page and "No notification sent yet." in page
    assert "ann-error-1" in _client(ann).get("/settings/notifications/").content.decode()


@pytest.mark.django_db
def test_the_page_needs_a_login(client):
    assert client.get("/settings/notifications/").status_code == 302


# --- one delivery ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_email_goes_to_the_users_address(make_user, make_account, make_job):
    user = make_user()
    user.email = "ann@studio.example"
    user.save()
    _settings(user, email=True)
    job = make_job(account=make_account(name="Mail farm"), status=TransferJob.Status.COMPLETED, kind="download")

    wait = notifications.deliver(user_id=user.pk, channel="email", event="job_completed", job_id=job.pk, task_id=None, attempt=1)

    assert wait is None
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ann@studio.example"]
    assert f"job {job.pk}" in mail.outbox[0].subject and "Mail farm" in mail.outbox[0].body
    assert NotificationDelivery.objects.get().status == "sent"


@pytest.mark.django_db
def test_a_webhook_is_signed_with_hmac_sha256(make_user, make_account, make_job, hook):
    user = make_user()
    row = _settings(user, webhook_url=hook.url, webhook_secret="shh-0123456789")
    job = make_job(account=make_account(), status=TransferJob.Status.FAILED, error="disk full")

    wait = notifications.deliver(user_id=user.pk, channel="webhook", event="job_failed", job_id=job.pk, task_id=None, attempt=1)

    assert wait is None
    request = hook.requests[0]
    expected = "sha256=" + hmac.new(row.webhook_secret.encode(), request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Rvweb-Signature"] == expected
    body = json.loads(request["body"])
    assert (body["event"], body["job"]["id"], body["job"]["status"], body["job"]["error"]) == (
        "job_failed",
        job.pk,
        "failed",
        "disk full",
    )
    assert "shh-0123456789" not in request["body"].decode()
    assert NotificationDelivery.objects.get().status == "sent"


@pytest.mark.django_db
def test_a_redirect_is_not_followed(make_user, make_account, make_job, hook, settings):
    settings.NOTIFY_TRIES = 1
    user = make_user()
    _settings(user, webhook_url=hook.url, webhook_secret="s")
    job = make_job(account=make_account(), status=TransferJob.Status.COMPLETED)

    notifications.deliver(user_id=user.pk, channel="webhook", event="job_completed", job_id=job.pk, task_id=None, attempt=1)
    hook.status = 302
    notifications.deliver(user_id=user.pk, channel="webhook", event="job_completed", job_id=job.pk, task_id=None, attempt=1)

    assert [r["path"] for r in hook.requests] == ["/hook", "/hook"]  # never /moved
    rows = list(NotificationDelivery.objects.order_by("pk"))
    assert [r.status for r in rows] == ["sent", "failed"] and "HTTP 302 (redirects are not followed)" in rows[1].error


@pytest.mark.django_db
def test_a_closed_port_is_retried_with_a_doubling_wait_then_logged_failed(make_user, make_account, make_job, settings):
    settings.NOTIFY_BACKOFF_SECONDS, settings.NOTIFY_TRIES = 3, 5
    user = make_user()
    _settings(user, webhook_url=f"http://127.0.0.1:{_closed_port()}/hook", webhook_secret="s")
    job = make_job(account=make_account(), status=TransferJob.Status.FAILED)

    waits = [
        notifications.deliver(user_id=user.pk, channel="webhook", event="job_failed", job_id=job.pk, task_id=None, attempt=n)
        for n in range(1, 6)
    ]

    assert waits == [3.0, 6.0, 12.0, 24.0, None]
    rows = list(NotificationDelivery.objects.order_by("pk"))
    assert [(r.attempt, r.status) for r in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "retrying"),
        (4, "retrying"),
        (5, "failed"),
    ]
    assert all("could not be reached" in r.error for r in rows)
    page = _client(user).get("/settings/notifications/").content.decode()
    assert "Failed (no more tries)" in page and "could not be reached" in page


# --- who is told ----------------------------------------------------------------------------------------


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple[Any, ...]]:
    from transfers import tasks

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.notify, "delay", lambda *args: calls.append(args))
    return calls


@pytest.mark.django_db
def test_a_jobs_end_is_told_to_its_teams_users_who_chose_the_event(make_team, make_user, make_account, make_job, enqueued):
    team, other = make_team("Blue"), make_team("Red")
    job = make_job(account=make_account(team), status=TransferJob.Status.COMPLETED)
    lead = make_user("lea", team=team, role="lead")
    viewer = make_user("vic", team=team, role="viewer")
    picky = make_user("pia", team=team, role="member")
    outsider = make_user("otto", team=other, role="lead")
    _settings(lead, webhook_url="http://127.0.0.1:9/", webhook_secret="s", email=True)
    _settings(viewer, email=True)
    _settings(picky, email=True, events=["job_failed"])
    _settings(outsider, email=True)

    notifications.notify_job_end(job_id=job.pk, outcome="completed")
    notifications.notify_job_end(job_id=job.pk, outcome="paused")  # not an end anyone is told of

    assert sorted(enqueued) == sorted(
        [
            (lead.pk, "email", "job_completed", job.pk, None, 1),
            (lead.pk, "webhook", "job_completed", job.pk, None, 1),
            (viewer.pk, "email", "job_completed", job.pk, None, 1),
        ]
    )
    assert all(isinstance(arg, (int, str, type(None))) for call in enqueued for arg in call)  # ids only, no secret


@pytest.mark.django_db
def test_a_watched_task_end_is_told_once_as_failed_or_ended(make_team, make_user, make_account, make_job, enqueued):
    team = make_team()
    job = make_job(account=make_account(team), kind="auto_download", status=TransferJob.Status.RUNNING)
    both = make_user(team=team)
    ended_only = make_user(team=team)
    _settings(both, email=True)
    _settings(ended_only, email=True, events=["task_ended"])
    run = JobRun(job, None, None, None)  # type: ignore[arg-type]
    watches = [TaskWatch(1001), TaskWatch(1002)]

    run.note_watch(watches, next_poll=1)
    watches[0].ended, watches[0].failed = True, True
    run.note_watch(watches, next_poll=1)
    run.note_watch(watches, next_poll=1)  # told once
    JobRun(job, None, None, None).note_watch(watches, next_poll=1)  # type: ignore[arg-type]  # a run taking over: not again

    assert sorted(enqueued) == sorted(
        [(both.pk, "email", "task_failed", job.pk, 1001, 1), (ended_only.pk, "email", "task_ended", job.pk, 1001, 1)]
    )


# --- through the real worker ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_jobs_end_reaches_the_webhook_through_the_worker(celery_worker, make_user, make_account, make_job, hook):
    account = make_account()
    user = make_user(team=account.team, role="member")
    row = _settings(user, webhook_url=hook.url, webhook_secret="worker-secret-42")
    job = make_job(account=account, status=TransferJob.Status.COMPLETED)

    services.job_audit_end(job_id=job.pk, outcome=TransferJob.Status.COMPLETED)

    hook.wait(1)
    request = hook.requests[0]
    assert request["headers"]["X-Rvweb-Signature"] == notifications.sign(row.webhook_secret, request["body"])
    assert json.loads(request["body"])["job"]["id"] == job.pk
    wait_for(lambda: NotificationDelivery.objects.filter(user=user, status="sent").exists(), timeout=10, what="a sent delivery")
    assert NotificationDelivery.objects.filter(user=user, status="sent", job=job).count() == 1
