"""Job groups: the parts of a split manifest uploaded in parallel as one (the SDK's thread_pool_upload).

A group's jobs are ordinary upload_asset jobs (made through transfers.jobs.job_create), each with the
group's options. At most `pool_size` of them run at once: `group_turn` is asked before a queued job of
a group starts (services.job_start), and when a job of a group stops running (services.job_transition)
`group_advance` enqueues the next ones. A job whose turn has not come stays queued; a duplicate or a
recovered message for it changes nothing. Unlike the SDK (sdk-spec §8 #3), a failure is never lost:
the group's status and figures are its jobs', and the client raises with the failed files.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from django.db import DatabaseError, transaction
from django.db.models import F
from django.http import HttpRequest
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from transfers.models import JobGroup, Manifest, TransferJob
from transfers.services import User, _require, audit_record

logger = logging.getLogger(__name__)

GroupAction = Literal["pause", "resume", "cancel", "retry"]
ACTIONS: tuple[GroupAction, ...] = ("pause", "resume", "cancel", "retry")
MAX_POOL_SIZE = 64
MAX_MANIFESTS = 1000

_S = TransferJob.Status


class GroupInvalid(ValueError):
    """A group that cannot be made as asked; the message says why."""


def group_create(
    *,
    manifests: list[Manifest],
    pool_size: Any,
    options: dict[str, Any] | None,
    user: User | None,
    request: HttpRequest | None = None,
) -> JobGroup:
    """Record one upload_asset job per manifest, as one group of at most `pool_size` running at once.

    All or nothing: a manifest not ready, options that do not fit, a role that may not run one of them
    refuse the whole group (the caller's exception, from job_create) and nothing is kept."""
    from transfers.jobs import job_create

    if not isinstance(pool_size, int) or isinstance(pool_size, bool) or not 1 <= pool_size <= MAX_POOL_SIZE:
        raise GroupInvalid(f"pool_size: a whole number from 1 to {MAX_POOL_SIZE}, got {pool_size!r}")
    if not manifests:
        raise GroupInvalid("manifests: give at least one manifest")
    if len(manifests) > MAX_MANIFESTS:
        raise GroupInvalid(f"manifests: at most {MAX_MANIFESTS} in one group")
    if len({m.pk for m in manifests}) != len(manifests):
        raise GroupInvalid("manifests: a manifest is named twice")
    accounts = {m.account_id for m in manifests}
    if len(accounts) != 1:
        raise GroupInvalid("manifests: the parts of a group belong to one farm account")
    with transaction.atomic():
        group = JobGroup.objects.create(
            account=manifests[0].account,
            pool_size=pool_size,
            options=dict(options or {}),
            created_by=user if user is not None and user.is_authenticated else None,
        )
        for manifest in manifests:
            # Each job is enqueued on commit; group_turn lets only pool_size of them start.
            job_create(
                kind=TransferJob.Kind.UPLOAD_ASSET,
                account=manifest.account,
                manifest=manifest,
                user=user,
                options=options,
                request=request,
                group=group,
            )
        after = {"manifests": [m.pk for m in manifests], "pool_size": pool_size}
        audit_record(actor=user, action="group.create", target=group, request=request, after=after)
    return group


def group_turn(*, job_id: int) -> bool:
    """Whether a job may start now: always for a job of no group (or one taken over while running);
    for a queued job of a group, while the group is not held and fewer than pool_size of its jobs run.
    Call inside the transaction that starts the job."""
    row = TransferJob.objects.filter(pk=job_id).values_list("group_id", "status").first()
    if row is None or row[0] is None or row[1] == _S.RUNNING:
        return True
    # A no-op UPDATE takes the group row's write lock (PostgreSQL, and SQLite's database lock) before
    # counting: two workers starting two jobs of one group cannot both take the last place.
    if not JobGroup.objects.filter(pk=row[0], held=False).update(held=F("held")):
        return False
    pool_size = JobGroup.objects.filter(pk=row[0]).values_list("pool_size", flat=True).get()
    return TransferJob.objects.filter(group_id=row[0], status=_S.RUNNING).count() < pool_size


def group_advance(*, job_id: int) -> list[int]:
    """A job stopped running: enqueue the group's next queued jobs, as many as places are free.
    Returns their ids (none for a job of no group, or a held one)."""
    from transfers.tasks import run_job

    try:
        group_id = TransferJob.objects.filter(pk=job_id).values_list("group_id", flat=True).first()
        if group_id is None:
            return []
        return _enqueue_next(group_id, run_job.delay)
    except (DatabaseError, BrokerError, RedisError):
        # Best effort, after the job's own change committed: recovery enqueues a part left queued too long.
        logger.warning("job %s: could not start the next jobs of its group", job_id, exc_info=True)
        return []


def _enqueue_next(group_id: int, enqueue: Any) -> list[int]:
    group = JobGroup.objects.filter(pk=group_id, held=False).first()
    if group is None:
        return []
    jobs = TransferJob.objects.filter(group_id=group_id)
    free = group.pool_size - jobs.filter(status=_S.RUNNING).count()
    if free <= 0:
        return []
    # A message may already be on its way for some of them: a duplicate is dropped by job_start.
    following = list(jobs.filter(status=_S.QUEUED).order_by("pk").values_list("pk", flat=True)[:free])
    for pk in following:
        enqueue(pk)
    return following


def group_status(statuses: list[str], *, held: bool) -> str:
    """The group's status from its jobs' (the most urgent wins): running while one runs; paused when
    held or while only paused ones wait; queued; once all ended, completed only when all completed."""
    present = set(statuses)
    if _S.RUNNING in present:
        return str(_S.RUNNING)
    if present & {_S.QUEUED, _S.PAUSED}:
        return str(_S.PAUSED) if held or _S.QUEUED not in present else str(_S.QUEUED)
    if not present or present == {_S.COMPLETED}:
        return str(_S.COMPLETED)
    if present == {_S.CANCELLED}:
        return str(_S.CANCELLED)
    if present <= {_S.FAILED, _S.CANCELLED}:
        return str(_S.FAILED)
    return str(_S.COMPLETED_WITH_ERRORS)


def group_actions(statuses: list[str], *, held: bool) -> list[str]:
    """What the group's one control may do now (each applies to the jobs that allow it)."""
    present = set(statuses)
    allowed = {
        "pause": not held and bool(present & {_S.RUNNING, _S.QUEUED}),
        "resume": (held and bool(present & {_S.QUEUED, _S.PAUSED})) or _S.PAUSED in present,
        "cancel": any("cancel" in TransferJob.actions_in(status) for status in present),
        "retry": any("retry" in TransferJob.actions_in(status) for status in present),
    }
    return [action for action in ACTIONS if allowed[action]]


def group_act(*, group: JobGroup, action: GroupAction, user: User, request: HttpRequest | None = None) -> int:
    """Apply the group's control to each of its jobs that allows it; returns how many jobs changed.

    Pause also holds the group (its queued jobs wait); resume, cancel and retry release it."""
    from transfers import services

    _require(user, "control", group)
    per_job = {
        "pause": services.job_pause,
        "resume": services.job_resume,
        "cancel": services.job_cancel,
        "retry": services.job_retry,
    }[action]
    held = action == "pause"
    changed = 0
    with transaction.atomic():
        JobGroup.objects.filter(pk=group.pk).update(held=held)
        for job in TransferJob.objects.filter(group=group).order_by("pk"):
            if job.can(action) and per_job(job=job, user=user, request=request):
                changed += 1
        audit_record(actor=user, action=f"group.{action}", target=group, request=request, after={"jobs": changed})
        if not held:
            transaction.on_commit(lambda: group_release(group_id=group.pk))
    group.held = held
    return changed


def group_release(*, group_id: int) -> list[int]:
    """Enqueue the jobs a released group may start now."""
    from transfers.tasks import run_job

    try:
        return _enqueue_next(group_id, run_job.delay)
    except (DatabaseError, BrokerError, RedisError):
        logger.warning("group %s: could not start its next jobs; recovery will", group_id, exc_info=True)
        return []
