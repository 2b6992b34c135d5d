"""The dashboard and kiosk websockets through the real ASGI app and the real Redis channel layer:
each viewer gets their teams' jobs and never another team's; a kiosk only with a live, genuine token."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.test import Client

from rvweb.asgi import application
from transfers import consumers, dashboard_hub, kiosks
from transfers.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from transfers.models import FarmAccount, Membership, Team, TransferJob
from transfers.progress import JobProgress, ProgressThrottle, publish_state

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
TIMEOUT = 5


@database_sync_to_async
def _user(username: str, *teams: Team, role: str = Membership.Role.VIEWER, staff: bool = False) -> Any:
    user = get_user_model().objects.create_user(username, is_staff=staff)
    for team in teams:
        Membership.objects.create(user=user, team=team, role=role)
    return user


@database_sync_to_async
def _team_with_job(name: str) -> tuple[Team, TransferJob]:
    team = Team.objects.create(name=name)
    account = FarmAccount.objects.create(name=f"farm-{name}", team=team)
    return team, TransferJob.objects.create(account=account, status=TransferJob.Status.RUNNING, files_total=3)


@database_sync_to_async
def _cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def _dashboard(user: Any = None) -> WebsocketCommunicator:
    headers = list(HEADERS) + ([(b"cookie", await _cookie(user))] if user is not None else [])
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


def _progress(job: TransferJob, bytes_done: int) -> JobProgress:
    return JobProgress(
        type="job.progress", job=job.pk, percent=0, files_total=3, files_done=1, files_skipped=0, files_failed=0,
        files_not_sent=2, bytes_total=300, bytes_done=bytes_done, bytes_sent=bytes_done, figures_at=None,
        speed=100.0, eta=2.0, active=[],
    )  # fmt: skip


async def _hub_listening() -> None:
    """Until the socket's screen has joined the hub and Redis counts the hub among the subscribers of
    every group it needs. A screen joins just after it is accepted (so `connect()` may return first), and
    a SUBSCRIBE is written but not confirmed: on a loaded Redis a PUBLISH read in the same turn can be
    served first, and pub/sub keeps nothing for a subscriber that was not there yet."""
    hub = dashboard_hub.hub()
    deadline = time.monotonic() + TIMEOUT
    while not hub.screens:
        assert time.monotonic() < deadline, "the screen never joined the hub"
        await asyncio.sleep(0.02)
    names = [hub.layer._get_layer()._get_group_channel_name(group) for group in hub.needed]
    client = aioredis.from_url(settings.REDIS_URL)
    try:
        while names:
            counts = dict(await client.pubsub_numsub(*names))
            if all(counts.get(name.encode(), 0) for name in names):
                return
            assert time.monotonic() < deadline, f"the hub never subscribed to {names}"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def _offer(job: TransferJob, bytes_done: int, *, listening: bool = True) -> None:
    """As a worker publishes (once the hub listens): a throttle of the job's team, from sync code in a thread."""
    if listening:
        await _hub_listening()
    throttle = ProgressThrottle(job.pk, team_id=job.account.team_id, per_second=4)
    await sync_to_async(throttle.offer)(_progress(job, bytes_done))


async def _messages(socket: WebsocketCommunicator, at_least: int = 0) -> list[dict[str, Any]]:
    """The messages of every batch received: at least `at_least` of them (waited for up to TIMEOUT, so a
    loaded machine's late batch is not missed), then every further one until the line goes quiet."""
    messages: list[dict[str, Any]] = []
    while len(messages) < at_least or not await socket.receive_nothing(timeout=0.5):
        frame = await socket.receive_json_from(timeout=TIMEOUT)
        assert frame["type"] == "dashboard.batch"
        messages += frame["messages"]
    return messages


async def _jobs_received(socket: WebsocketCommunicator, at_least: int = 0) -> list[int]:
    return [message["job"] for message in await _messages(socket, at_least)]


async def test_an_anonymous_visitor_is_refused_the_dashboard():
    socket = await _dashboard()

    assert await socket.connect(timeout=TIMEOUT) == (False, CLOSE_UNAUTHENTICATED)


async def test_a_viewer_gets_their_teams_jobs_and_never_another_teams():
    (ours, our_job), (_, their_job) = await _team_with_job("ours"), await _team_with_job("theirs")
    viewer = await _user("viewer", ours)
    socket = await _dashboard(viewer)
    assert (await socket.connect(timeout=TIMEOUT))[0] is True

    await _offer(their_job, 10)
    await sync_to_async(publish_state)(their_job.pk, status="failed", team_id=their_job.account.team_id)
    await _offer(our_job, 20)
    await sync_to_async(publish_state)(our_job.pk, status="completed", team_id=our_job.account.team_id)

    assert await _jobs_received(socket, 2) == [our_job.pk, our_job.pk]
    await socket.disconnect()


async def test_a_progress_message_says_when_it_was_sent():
    ours, job = await _team_with_job("ours")
    socket = await _dashboard(await _user("viewer", ours))
    await socket.connect(timeout=TIMEOUT)

    await _offer(job, 20)

    [message] = await _messages(socket, 1)
    assert message["bytes_done"] == 20 and isinstance(message["sent_at"], float) and message["team"] == ours.pk
    await socket.disconnect()


async def test_a_burst_comes_as_one_batch_states_in_order_and_the_latest_progress():
    ours, job = await _team_with_job("ours")
    socket = await _dashboard(await _user("viewer", ours))
    await socket.connect(timeout=TIMEOUT)

    def burst() -> None:
        throttle = ProgressThrottle(job.pk, team_id=ours.pk, per_second=50, dashboard_per_second=50)
        throttle.offer(_progress(job, 10))
        publish_state(job.pk, status="paused", team_id=ours.pk)
        publish_state(job.pk, status="queued", team_id=ours.pk)
        time.sleep(0.03)
        throttle.offer(_progress(job, 30))

    await _hub_listening()
    await sync_to_async(burst)()

    frame = await socket.receive_json_from(timeout=TIMEOUT)
    assert [(m["type"], m.get("status"), m.get("bytes_done")) for m in frame["messages"]] == [
        ("job.state", "paused", None),
        ("job.state", "queued", None),
        ("job.progress", None, 30),
    ]
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_a_member_of_two_teams_gets_both():
    (one, job_one), (two, job_two) = await _team_with_job("one"), await _team_with_job("two")
    socket = await _dashboard(await _user("both", one, two, role=Membership.Role.MEMBER))
    await socket.connect(timeout=TIMEOUT)

    await _offer(job_one, 1)
    await _offer(job_two, 2)

    assert sorted(await _jobs_received(socket, 2)) == sorted([job_one.pk, job_two.pk])
    await socket.disconnect()


async def test_a_user_of_no_team_gets_nothing():
    _, job = await _team_with_job("ours")
    socket = await _dashboard(await _user("loner"))
    assert (await socket.connect(timeout=TIMEOUT))[0] is True

    await _offer(job, 1)

    assert await _jobs_received(socket) == []
    await socket.disconnect()


async def test_staff_get_every_teams_jobs_once():
    (_, job_one), (_, job_two) = await _team_with_job("one"), await _team_with_job("two")
    socket = await _dashboard(await _user("operator", staff=True))
    await socket.connect(timeout=TIMEOUT)

    await _offer(job_one, 1)
    await _offer(job_two, 2)

    assert sorted(await _jobs_received(socket, 2)) == sorted([job_one.pk, job_two.pk])
    await socket.disconnect()


# --- kiosks ---------------------------------------------------------------------------------------------


@database_sync_to_async
def _kiosk(team: Team) -> tuple[Any, str]:
    lead = get_user_model().objects.create_user(f"lead-{team.name}")
    Membership.objects.create(user=lead, team=team, role=Membership.Role.LEAD)
    return kiosks.kiosk_create(team=team, name="wall", user=lead)


async def _kiosk_socket(token: object) -> tuple[WebsocketCommunicator, dict[str, Any] | int]:
    """A kiosk socket (no session) that sent its token: the socket and its first answer (a close code when refused)."""
    socket = WebsocketCommunicator(application, "/ws/kiosk/", headers=HEADERS)
    accepted, _ = await socket.connect(timeout=TIMEOUT)
    assert accepted
    await socket.send_json_to({"token": token})
    output = await socket.receive_output(timeout=TIMEOUT)
    if output["type"] == "websocket.close":
        return socket, output["code"]
    return socket, json.loads(output["text"])


async def test_a_kiosk_with_a_live_token_gets_its_teams_jobs_only():
    (ours, our_job), (_, their_job) = await _team_with_job("ours"), await _team_with_job("theirs")
    _, token = await _kiosk(ours)
    socket, ready = await _kiosk_socket(token)
    assert ready == {"type": "kiosk.ready", "team": "ours"}

    await _offer(their_job, 10)
    await _offer(our_job, 20)

    assert await _jobs_received(socket, 1) == [our_job.pk]
    await socket.disconnect()


async def test_a_revoked_kiosk_token_is_refused():
    ours, _ = await _team_with_job("ours")
    kiosk, token = await _kiosk(ours)
    await database_sync_to_async(kiosks.kiosk_revoke)(kiosk=kiosk, user=None)

    _, answer = await _kiosk_socket(token)

    assert answer == CLOSE_FORBIDDEN


async def test_revoking_a_kiosk_closes_its_open_screens():
    ours, _ = await _team_with_job("ours")
    kiosk, token = await _kiosk(ours)
    socket, _ = await _kiosk_socket(token)

    await database_sync_to_async(kiosks.kiosk_revoke)(kiosk=kiosk, user=None)

    assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


async def test_a_forged_kiosk_token_is_refused():
    ours, _ = await _team_with_job("ours")
    kiosk, token = await _kiosk(ours)
    forged_other_key = signing.dumps({"k": kiosk.pk, "n": "x"}, salt=kiosks.SALT, key="not-the-secret-key")
    other_salt = signing.dumps({"k": kiosk.pk, "n": "x"}, salt="another.salt")
    signed_but_not_issued = signing.dumps({"k": kiosk.pk, "n": "guess"}, salt=kiosks.SALT)  # no matching digest
    altered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")

    for bad in (forged_other_key, other_salt, signed_but_not_issued, altered, "", "garbage", 42):
        _, answer = await _kiosk_socket(bad)
        assert answer == CLOSE_FORBIDDEN, bad


async def test_a_kiosk_socket_that_sends_no_token_is_closed(monkeypatch):
    monkeypatch.setattr(consumers, "KIOSK_TOKEN_WAIT", 0.2)
    socket = WebsocketCommunicator(application, "/ws/kiosk/", headers=HEADERS)
    await socket.connect(timeout=TIMEOUT)

    assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


async def test_a_session_does_not_open_a_kiosk_socket_without_a_token():
    ours, job = await _team_with_job("ours")
    lead = await _user("lead", ours, role=Membership.Role.LEAD)
    socket = WebsocketCommunicator(application, "/ws/kiosk/", headers=[*HEADERS, (b"cookie", await _cookie(lead))])
    await socket.connect(timeout=TIMEOUT)

    await _offer(job, 5, listening=False)  # the socket never joins

    assert await _jobs_received(socket) == []
    await socket.disconnect()
