"""The job websocket through the real ASGI app (origin check, session auth) and the real Redis channel layer."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from rvweb.asgi import application
from transfers.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from transfers.models import FarmAccount, Membership, Team, TransferJob
from transfers.progress import JobProgress, ProgressThrottle, publish_state

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_ORIGIN = b"http://127.0.0.1"
TIMEOUT = 5


@database_sync_to_async
def _user(username: str, *, staff: bool = False) -> Any:
    return get_user_model().objects.create_user(username, password=f"pw-{username}-123", is_staff=staff)


@database_sync_to_async
def _job(owner: Any) -> TransferJob:
    """A running job of the owner's team (the owner a member of it)."""
    team, _ = Team.objects.get_or_create(name="studio")
    Membership.objects.get_or_create(user=owner, team=team, defaults={"role": Membership.Role.MEMBER})
    account, _ = FarmAccount.objects.get_or_create(name="farm", defaults={"team": team})
    return TransferJob.objects.create(account=account, created_by=owner, status=TransferJob.Status.RUNNING, files_total=3)


@database_sync_to_async
def _session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def _socket(job_id: int, *, user: Any = None, origin: bytes = ALLOWED_ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await _session_cookie(user)))
    return WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=headers)


async def _connect(job_id: int, **kwargs: Any) -> tuple[bool, int | None]:
    """Connect and hang up again: (accepted, close code when refused)."""
    socket = await _socket(job_id, **kwargs)
    accepted, code = await socket.connect(timeout=TIMEOUT)
    await socket.disconnect()
    return accepted, None if accepted else code


def _progress(job_id: int, bytes_done: int) -> JobProgress:
    return JobProgress(
        type="job.progress", job=job_id, status="running", files_total=3, files_done=1, files_failed=0,
        bytes_total=300, bytes_done=bytes_done, speed=100.0, eta=2.0,
    )  # fmt: skip


async def test_the_owner_may_connect():
    owner = await _user("owner")
    job = await _job(owner)

    assert await _connect(job.pk, user=owner) == (True, None)


async def test_an_anonymous_visitor_is_refused_as_unauthenticated():
    job = await _job(await _user("owner"))

    assert await _connect(job.pk) == (False, CLOSE_UNAUTHENTICATED)


async def test_a_user_of_no_team_is_refused_the_teams_job():
    job = await _job(await _user("owner"))
    intruder = await _user("intruder")

    assert await _connect(job.pk, user=intruder) == (False, CLOSE_FORBIDDEN)


async def test_a_job_that_does_not_exist_is_refused_like_another_users():
    user = await _user("owner")

    assert await _connect(999_999, user=user) == (False, CLOSE_FORBIDDEN)


async def test_a_foreign_origin_is_refused_even_for_the_owner():
    owner = await _user("owner")
    job = await _job(owner)

    accepted, _ = await _connect(job.pk, user=owner, origin=b"http://evil.example.com")

    assert accepted is False


async def test_the_owner_receives_throttled_progress():
    owner = await _user("owner")
    job = await _job(owner)
    socket = await _socket(job.pk, user=owner)
    await socket.connect(timeout=TIMEOUT)

    # Workers publish from sync code; sync_to_async runs offer() in a thread, as a worker would.
    await sync_to_async(ProgressThrottle(job.pk, per_second=4).offer)(_progress(job.pk, 100))

    received = await socket.receive_json_from(timeout=TIMEOUT)
    assert received.pop("sent_at") > 0
    assert received == _progress(job.pk, 100)
    await socket.disconnect()


async def test_the_owner_receives_state_changes():
    owner = await _user("owner")
    job = await _job(owner)
    socket = await _socket(job.pk, user=owner)
    await socket.connect(timeout=TIMEOUT)

    await sync_to_async(publish_state)(job.pk, status=TransferJob.Status.COMPLETED)

    received = await socket.receive_json_from(timeout=TIMEOUT)
    assert received.pop("sent_at") > 0
    assert received == {"type": "job.state", "job": job.pk, "status": "completed"}
    await socket.disconnect()


async def test_the_owner_receives_nothing_about_other_jobs():
    owner = await _user("owner")
    job, other_job = await _job(owner), await _job(owner)
    socket = await _socket(job.pk, user=owner)
    await socket.connect(timeout=TIMEOUT)

    await sync_to_async(publish_state)(other_job.pk, status="failed")
    await sync_to_async(publish_state)(job.pk, status="completed")

    assert (await socket.receive_json_from(timeout=TIMEOUT))["job"] == job.pk
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_staff_may_watch_any_job():
    job = await _job(await _user("owner"))
    staff = await _user("operator", staff=True)
    socket = await _socket(job.pk, user=staff)
    accepted, _ = await socket.connect(timeout=TIMEOUT)

    await sync_to_async(ProgressThrottle(job.pk, per_second=4).offer)(_progress(job.pk, 200))

    assert accepted is True
    assert (await socket.receive_json_from(timeout=TIMEOUT))["bytes_done"] == 200
    await socket.disconnect()


async def test_messages_sent_by_the_client_are_ignored():
    owner = await _user("owner")
    job = await _job(owner)
    socket = await _socket(job.pk, user=owner)
    await socket.connect(timeout=TIMEOUT)

    await socket.send_json_to({"type": "job.state", "job": job.pk, "status": "cancelled"})

    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()
