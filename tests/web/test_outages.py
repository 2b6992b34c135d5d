"""Outages of Redis, the broker or the database interrupt a run; they never fail a job or kill a process."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockNotOwnedError

from tests.clock import FakeClock
from tests.conftest import wait_for
from transfers import execution, locks, progress, tasks
from transfers.models import FarmAccount, Team, TransferJob


def _job(status: str = TransferJob.Status.QUEUED) -> TransferJob:
    team, _ = Team.objects.get_or_create(name="Studio")
    account, _ = FarmAccount.objects.get_or_create(name="farm", defaults={"team": team})
    return TransferJob.objects.create(account=account, status=status, files_total=1)


# --- a run interrupted by infrastructure is recovered, not failed ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_run_that_lost_its_lease_leaves_the_job_running_not_failed(monkeypatch):
    job = _job()

    def lose_lease(job: TransferJob, lease: locks.Lease) -> None:
        raise execution.RunInterrupted("lost its lease")

    monkeypatch.setattr(execution, "_run", lose_lease)

    execution.job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == (TransferJob.Status.RUNNING, "", None)


@pytest.mark.django_db(transaction=True)
def test_a_database_gone_beyond_patience_leaves_the_job_running(monkeypatch):
    job = _job()

    def database_gone(job: TransferJob, lease: locks.Lease) -> None:
        raise OperationalError("unable to open database file")

    monkeypatch.setattr(execution, "_run", database_gone)

    execution.job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == TransferJob.Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_genuine_bug_still_fails_the_job(monkeypatch):
    job = _job()

    def bug(job: TransferJob, lease: locks.Lease) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(execution, "_run", bug)

    execution.job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == TransferJob.Status.FAILED
    assert "ValueError" in job.error


# --- the lease rides out a short Redis outage and is lost only when it must be --------------------


class FakeLock:
    name = "rvweb-test:job-run:1"

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    def reacquire(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)

    def release(self) -> None:
        pass


def test_a_lease_survives_redis_not_answering_for_a_moment(monkeypatch):
    monkeypatch.setattr(locks, "_RENEW_EVERY", 0.01)
    lock = FakeLock([RedisConnectionError("down"), RedisConnectionError("down")])
    lease = locks.Lease(lock)  # type: ignore[arg-type]

    wait_for(lambda: lock.calls >= 4, timeout=5, what="renewals")
    lease.release()

    assert not lease.lost.is_set()


def test_a_lease_redis_no_longer_holds_is_lost_at_once(monkeypatch):
    monkeypatch.setattr(locks, "_RENEW_EVERY", 0.01)
    lease = locks.Lease(FakeLock([LockNotOwnedError("gone")]))  # type: ignore[arg-type]

    assert lease.lost.wait(5)
    lease.release()


def test_a_lease_not_renewed_for_its_patience_is_lost(monkeypatch):
    monkeypatch.setattr(locks, "_RENEW_EVERY", 0.01)
    monkeypatch.setattr(locks, "_RENEW_PATIENCE", 0.05)
    lease = locks.Lease(FakeLock([RedisConnectionError("down")] * 1000))  # type: ignore[arg-type]

    assert lease.lost.wait(5)
    lease.release()


# --- recovery: what is re-enqueued, and when --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_recovery_reenqueues_a_running_job_no_run_holds_after_the_grace(monkeypatch):
    job = _job(TransferJob.Status.RUNNING)
    clock = FakeClock()
    recovery = tasks._Recovery(clock)

    first = recovery.due()
    clock.now += tasks._UNHELD_GRACE

    assert job.pk not in first
    assert job.pk in recovery.due()


@pytest.mark.django_db(transaction=True)
def test_recovery_leaves_a_running_job_whose_run_holds_its_lease():
    job = _job(TransferJob.Status.RUNNING)
    clock = FakeClock()
    recovery = tasks._Recovery(clock)

    with locks.job_lock(job.pk):
        recovery.due()
        clock.now += tasks._UNHELD_GRACE * 10
        due = recovery.due()

    assert job.pk not in due


@pytest.mark.django_db(transaction=True)
def test_recovery_reenqueues_queued_jobs_once_redis_came_back_empty(settings):
    job = _job(TransferJob.Status.QUEUED)
    recovery = tasks._Recovery(FakeClock())
    recovery.due()  # Redis is known now

    assert job.pk not in recovery.due()
    locks._client(settings.REDIS_URL).delete(f"{settings.KEY_PREFIX}:alive")  # what a restart does
    assert job.pk in recovery.due()


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_message_for_a_job_another_run_moves_is_dropped(monkeypatch):
    job = _job(TransferJob.Status.RUNNING)
    ran: list[int] = []
    monkeypatch.setattr(execution, "job_run", lambda *, job_id: ran.append(job_id))

    with locks.job_lock(job.pk):
        tasks.run_job.apply(args=(job.pk,))

    assert ran == []


# --- progress publishing never blocks a transfer -----------------------------------------------------


class HungLayer:
    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.sleep(3600)  # a Redis that accepts the connection and never answers


def test_publishing_to_a_hung_channel_layer_gives_up_within_its_timeout(monkeypatch):
    monkeypatch.setattr(progress, "get_channel_layer", lambda *alias: HungLayer())
    monkeypatch.setattr(progress, "_quiet_until", 0.0)
    started = time.monotonic()

    progress.publish_state(1, status="running")

    assert time.monotonic() - started < progress.SEND_TIMEOUT + 1.0


def test_after_a_failed_publish_messages_are_dropped_without_waiting(monkeypatch):
    monkeypatch.setattr(progress, "get_channel_layer", lambda *alias: HungLayer())
    monkeypatch.setattr(progress, "_quiet_until", 0.0)
    progress.publish_state(1, status="running")
    started = time.monotonic()

    for _ in range(10):
        progress.publish_state(1, status="running")

    assert time.monotonic() - started < 0.5


def test_a_watch_loop_keeps_its_pace_while_the_channel_layer_hangs(monkeypatch):
    monkeypatch.setattr(progress, "get_channel_layer", lambda *alias: HungLayer())
    monkeypatch.setattr(progress, "_quiet_until", 0.0)
    throttle = progress.ProgressThrottle(1, per_second=50)
    started = time.monotonic()

    for step in range(20):
        throttle.offer(progress.JobState(type="job.state", job=1, status=str(step)))  # type: ignore[arg-type]
        time.sleep(0.03)

    assert time.monotonic() - started < progress.SEND_TIMEOUT + 2.0


@pytest.mark.django_db(transaction=True)
def test_recovery_reenqueues_a_job_queued_for_long_once_per_grace():
    job = _job(TransferJob.Status.QUEUED)
    clock = FakeClock()
    recovery = tasks._Recovery(clock)
    recovery.due()  # Redis is known now

    clock.now += tasks._QUEUED_GRACE - 1
    early = recovery.due()
    clock.now += 1
    late = recovery.due()
    again = recovery.due()

    assert (job.pk in early, job.pk in late, job.pk in again) == (False, True, False)
