"""Notifications: a user's email and/or webhook when a job of their team ends or a watched farm task ends.

A job's end (services.job_audit_end) and a watcher seeing a task end (run_context.JobRun.note_watch) call
`notify_job_end` / `notify_tasks_end` once committed; these enqueue one Celery task per recipient and
channel (users of the job's team who chose the event), carrying ids only. The task calls `deliver`, one
attempt: it writes a NotificationDelivery row and, on failure, says when to try again (doubling), up to
NOTIFY_TRIES attempts.

Webhooks are user-supplied URLs: POSTed with a 5 s timeout, never following a redirect (a 3xx is a
failure), through no proxy; only the status code is kept, never the body. Each is signed:
`X-Rvweb-Signature: sha256=<hex HMAC-SHA256 of the body with the user's webhook secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from transfers.models import Membership, NotificationDelivery, NotificationSettings, TransferJob
from transfers.services import User, audit_record

logger = logging.getLogger(__name__)

Event = NotificationSettings.Event
JOB_EVENTS = {
    TransferJob.Status.COMPLETED: Event.JOB_COMPLETED,
    TransferJob.Status.COMPLETED_WITH_ERRORS: Event.JOB_FAILED,
    TransferJob.Status.FAILED: Event.JOB_FAILED,
    TransferJob.Status.CANCELLED: Event.JOB_FAILED,
}
SIGNATURE_HEADER = "X-Rvweb-Signature"


class SettingsInvalid(ValueError):
    """Notification settings that cannot be kept: {"webhook_url": "..."}."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def settings_of(user: Any) -> NotificationSettings:
    """The user's settings (a row with everything off when they never saved any)."""
    found, _ = NotificationSettings.objects.get_or_create(user=user)
    return found


def _url_checked(url: str) -> str:
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// address with a host")
    if parts.username or parts.password:
        raise ValueError("no user name or password in the address: the signature authenticates rvweb")
    if len(url) > 500:
        raise ValueError("at most 500 characters")
    return url


def settings_save(
    *,
    user: User,
    email: bool,
    webhook_url: str,
    events: list[str],
    new_secret: bool = False,
    request: HttpRequest | None = None,
) -> str:
    """Save the user's own settings; returns a webhook secret when one was made (a first webhook, or asked
    for), to be shown once. SettingsInvalid names what is wrong. Audited, the secret as "set"/"changed"."""
    errors: dict[str, str] = {}
    try:
        webhook_url = _url_checked(webhook_url)
    except ValueError as exc:
        errors["webhook_url"] = str(exc)
    unknown = [event for event in events if event not in Event.values]
    if unknown:
        errors["events"] = f"unknown event {unknown[0]!r}"
    if email and not getattr(user, "email", ""):
        errors["email"] = "your user has no email address: ask an admin to set one"
    if errors:
        raise SettingsInvalid(errors)
    with transaction.atomic():
        row = NotificationSettings.objects.select_for_update().get(pk=settings_of(user).pk)
        before = {"email": row.email, "webhook_url": row.webhook_url, "events": row.events}
        had_secret = bool(row.webhook_secret)
        secret = ""
        if webhook_url and (new_secret or not had_secret):
            secret = secrets.token_urlsafe(32)
            row.webhook_secret = secret
        row.email, row.webhook_url, row.events = email, webhook_url, [e for e in Event.values if e in events]
        row.save()
        after: dict[str, Any] = {"email": row.email, "webhook_url": row.webhook_url, "events": row.events}
        if secret:
            before["webhook_secret"], after["webhook_secret"] = (
                ("set" if had_secret else "not set"),
                ("changed" if had_secret else "set"),
            )
        audit_record(actor=user, action="notifications.change", target=row, request=request, before=before, after=after)
    return secret


# --- who is told --------------------------------------------------------------------------------------


def _recipients(job: TransferJob, wanted: list[str]) -> list[NotificationSettings]:
    """Settings of the active users of the job's team who chose one of `wanted`, with a channel on."""
    members = Membership.objects.filter(team_id=job.account.team_id, user__is_active=True).values("user_id")
    rows = NotificationSettings.objects.filter(user_id__in=members).select_related("user").defer("webhook_secret")
    return [row for row in rows if any(event in row.events for event in wanted) and (row.email or row.webhook_url)]


def _enqueue(row: NotificationSettings, event: str, job_id: int, task_id: int | None) -> None:
    from transfers.tasks import notify

    for channel in ("email", "webhook"):
        if (channel == "email" and row.email) or (channel == "webhook" and row.webhook_url):
            try:
                notify.delay(row.user_id, channel, event, job_id, task_id, 1)
            except Exception as exc:  # noqa: BLE001 - a broker away must never fail the job that ended
                logger.warning("notification %s/%s to user %s not enqueued: %s", channel, event, row.user_id, exc)


def notify_job_end(*, job_id: int, outcome: str) -> None:
    """A job ended with `outcome`: enqueue the notifications of those who want to hear it."""
    event = JOB_EVENTS.get(outcome)  # type: ignore[call-overload]
    job = TransferJob.objects.select_related("account").filter(pk=job_id).first()
    if event is None or job is None:
        return
    for row in _recipients(job, [event]):
        _enqueue(row, event, job_id, None)


def notify_tasks_end(*, job_id: int, ended: list[tuple[int, bool]]) -> None:
    """Farm tasks a job watches ended, as (task id, failed): each recipient is told once per task, as
    "failed" when it failed and they asked for that, else as "ended". Two queries for any number of tasks."""
    job = TransferJob.objects.select_related("account").filter(pk=job_id).first()
    if job is None or not ended:
        return
    for row in _recipients(job, [Event.TASK_ENDED, Event.TASK_FAILED]):
        for task_id, failed in ended:
            event = Event.TASK_FAILED if failed and Event.TASK_FAILED in row.events else Event.TASK_ENDED
            if event in row.events:
                _enqueue(row, event, job_id, task_id)


# --- one attempt ------------------------------------------------------------------------------------------


def payload(*, event: str, job_id: int, task_id: int | None) -> dict[str, Any]:
    """What a notification says (the webhook's JSON body, the email's text)."""
    job = TransferJob.objects.select_related("account", "account__team").defer("account__access_key").filter(pk=job_id).first()
    body: dict[str, Any] = {"event": event, "label": Event(event).label, "sent_at": timezone.now().isoformat(), "job": None}
    if job is not None:
        body["job"] = {
            "id": job.pk,
            "kind": job.kind,
            "status": job.status,
            "account": job.account.name,
            "team": job.account.team.name,
            "files_total": job.files_total,
            "files_done": job.files_done,
            "files_failed": job.files_failed,
            "bytes_done": job.bytes_done,
            "error": job.error,
            "path": f"/jobs/{job.pk}/",
        }
    body["task"] = {"task_id": task_id} if task_id is not None else None
    return body


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx answer stays an HTTPError: never followed


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def _post(url: str, secret: str, body: bytes) -> None:
    # The scheme was checked when saved (_url_checked): http or https only, never file: or another.
    request = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "rvweb-notify", SIGNATURE_HEADER: sign(secret, body)},
    )
    try:
        with _OPENER.open(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            status = response.status  # the body is never read, never stored
    except urllib.error.HTTPError as exc:
        exc.close()
        moved = " (redirects are not followed)" if 300 <= exc.code < 400 else ""
        raise OSError(f"the webhook answered HTTP {exc.code}{moved}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"the webhook could not be reached: {exc.reason}") from None
    if not 200 <= status < 300:
        raise OSError(f"the webhook answered HTTP {status}")


def _send_email(user: Any, body: dict[str, Any]) -> None:
    if not user.email:
        raise OSError("the user has no email address")
    job = body["job"] or {}
    subject = f"rvweb: {body['label']}" + (f" — job {job['id']} ({job['kind']}) {job['status']}" if job else "")
    lines = [body["label"] + "."]
    if job:
        lines.append(f"Job {job['id']} ({job['kind']}) on farm account {job['account']}, team {job['team']}: {job['status']}.")
        lines.append(f"Files: {job['files_done']} of {job['files_total']} done, {job['files_failed']} failed.")
        if job["error"]:
            lines.append(f"Error: {job['error']}")
        lines.append(f"See {job['path']} on rvweb.")
    if body["task"]:
        lines.append(f"Farm task: {body['task']['task_id']}.")
    send_mail(subject, "\n".join(lines), None, [user.email], fail_silently=False)


def deliver(*, user_id: int, channel: str, event: str, job_id: int, task_id: int | None, attempt: int) -> float | None:
    """One attempt at one notification, logged as a NotificationDelivery row; returns the seconds to wait
    before the next attempt, or None when it was sent or this was the last try (or nothing is left to send)."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    row = NotificationSettings.objects.filter(user_id=user_id).first()
    if user is None or row is None or (channel == "email" and not row.email) or (channel == "webhook" and not row.webhook_url):
        return None  # the user left, or turned this channel off since
    error = ""
    try:
        body = payload(event=event, job_id=job_id, task_id=task_id)
        if channel == "email":
            _send_email(user, body)
        else:
            _post(row.webhook_url, row.webhook_secret, json.dumps(body, sort_keys=True).encode())
    except Exception as exc:  # noqa: BLE001 - any failure of one attempt is logged and retried, never lost
        error = str(exc)[:500] or type(exc).__name__
    last = attempt >= settings.NOTIFY_TRIES
    status = NotificationDelivery.Status.SENT if not error else NotificationDelivery.Status.FAILED if last else "retrying"
    NotificationDelivery.objects.create(
        user_id=user_id,
        channel=channel,
        event=event,
        job_id=job_id if TransferJob.objects.filter(pk=job_id).exists() else None,
        task_id=task_id,
        attempt=attempt,
        status=status,
        error=error,
    )
    if not error:
        return None
    logger.warning("notification %s/%s to user %s, try %s: %s", channel, event, user_id, attempt, error)
    return None if last else float(settings.NOTIFY_BACKOFF_SECONDS * 2 ** (attempt - 1))
