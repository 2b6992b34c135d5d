"""Multi-step workflows: importing manifests, creating jobs, moving them between states, auditing.

Services are keyword-only `<noun>_<verb>` functions; views, API, commands and tasks all call these.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, Now
from django.http import HttpRequest
from django.utils import timezone

from transfers import progress, selectors
from transfers.engine.manifest import ManifestInvalid, check_entries, expand_upload_list, read_upload_json, read_upload_list
from transfers.engine.paths import PathMap
from transfers.farm import FarmConnector, connector_for
from transfers.farm import UnsupportedAccount as UnsupportedAccount  # for the callers of job_create_upload
from transfers.models import AuditEvent, FarmAccount, Manifest, ManifestEntry, TransferItem, TransferJob

User = AuthUser | AnonymousUser


_BATCH = 2000


def audit_record(
    *,
    actor: User | None,
    action: str,
    target: Any,
    request: HttpRequest | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: str = "ok",
) -> AuditEvent:
    """Append an audit row; call it inside the transaction that makes the change."""
    person = actor if isinstance(actor, AuthUser) else None  # anonymous and the system have no row
    return AuditEvent.objects.create(
        actor=person,
        actor_name=person.get_username() if person is not None else "system",
        action=action,
        target_type=type(target).__name__,
        target_id=str(getattr(target, "pk", target)),
        request_id=getattr(request, "request_id", "") if request else "",
        remote_addr=request.META.get("REMOTE_ADDR") if request else None,
        before=before,
        after=after,
        outcome=outcome,
    )


def _require(user: User | None, action: selectors.Action, obj: Any) -> None:
    """Refuse an actor the action on obj; None is the system (commands, bootstrap), which may do anything."""
    if user is not None and not selectors.user_may(user, action, obj):
        raise PermissionDenied(f"you may not {action} this {obj._meta.verbose_name} (see your role in its team)")


def farm_storage(*, account: FarmAccount) -> FarmConnector:
    """The account's farm connector (chosen by its kind, see transfers.farm), its storage made on first use."""
    return connector_for(account).ensure()


def _size_or_none(path: str) -> int | None:
    try:
        info = os.stat(path)
    except OSError:
        return None  # the worker reports a missing or unreadable file on its own item
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def manifest_import(
    *,
    name: str,
    account: FarmAccount,
    data: bytes,
    user: User | None,
    request: HttpRequest | None = None,
    transmit_type: str = Manifest.TransmitType.UPLOAD_JSON,
) -> Manifest:
    """Validate an upload.json (or an upload list) and store it; ManifestInvalid names each problem."""
    _require(user, "manage", account)
    path_map = PathMap(account.path_map)
    roots = settings.ALLOWED_LOCAL_ROOTS
    if transmit_type == Manifest.TransmitType.UPLOAD_LIST:
        entries = expand_upload_list(read_upload_list(data), allowed_roots=roots, path_map=path_map)
    else:
        entries = read_upload_json(data, validate=False).entries  # shape only: check_entries says the rest at once
    problems = check_entries(entries, allowed_roots=roots, path_map=path_map)
    if problems:
        raise ManifestInvalid(problems)
    sizes = [_size_or_none(path_map.apply(entry.local)) for entry in entries]
    with transaction.atomic():
        manifest = Manifest.objects.create(
            name=name,
            account=account,
            transmit_type=transmit_type,
            entry_count=len(entries),
            total_bytes=sum(size or 0 for size in sizes),
            created_by=user if user is not None and user.is_authenticated else None,
        )
        ManifestEntry.objects.bulk_create(
            (
                ManifestEntry(manifest=manifest, number=number, local=entry.local, server=entry.server, size=size)
                for number, (entry, size) in enumerate(zip(entries, sizes, strict=True), start=1)
            ),
            batch_size=_BATCH,
        )
        audit_record(actor=user, action="manifest.import", target=manifest, request=request, after={"entries": len(entries)})
    return manifest


def job_create_upload(
    *, manifest: Manifest, user: User, request: HttpRequest | None = None, options: dict[str, Any] | None = None
) -> TransferJob:
    """Create an upload job with one item per manifest entry, and enqueue it once the rows are committed."""
    from transfers.tasks import run_job

    _require(user, "run", manifest)
    connector_for(manifest.account)  # UnsupportedAccount when no connector reaches the account's farm
    with transaction.atomic():
        job = TransferJob.objects.create(
            kind=TransferJob.Kind.UPLOAD_ASSET,
            account=manifest.account,
            manifest=manifest,
            options=options or {},
            created_by=user if user.is_authenticated else None,
            files_total=manifest.entry_count,
            bytes_total=manifest.total_bytes,
        )
        TransferItem.objects.bulk_create(
            (
                TransferItem(job=job, number=e.number, local=e.local, server=e.server, size=e.size)
                for e in manifest.entries.only("number", "local", "server", "size").iterator(chunk_size=_BATCH)
            ),
            batch_size=_BATCH,
        )
        audit_record(
            actor=user, action="job.create", target=job, request=request, after={"manifest": manifest.pk, "status": job.status}
        )
        transaction.on_commit(lambda: run_job.delay(job.pk))
    return job


def job_transition(*, job_id: int, to: str, allowed_from: Iterable[str] | None = None, **fields: Any) -> bool:
    """Move a job to `to` only if its current status allows it; False when another actor got there first.

    The check and the change are one conditional UPDATE, so a redelivered task cannot run a job twice.
    """
    sources = (
        set(allowed_from) if allowed_from is not None else {s for s, targets in TransferJob.TRANSITIONS.items() if to in targets}
    )
    changed = TransferJob.objects.filter(pk=job_id, status__in=sources).update(status=to, **fields)
    if changed:
        transaction.on_commit(lambda: job_publish_state(job_id=job_id, status=to))
    return bool(changed)


def job_publish_state(*, job_id: int, status: str) -> None:
    """Announce a job's state with its row as committed: the page takes status, controls and figures
    from it. Best effort, as all publishing: a database that fails here costs only the figures."""
    try:
        job = TransferJob.objects.filter(pk=job_id).first()
    except DatabaseError:
        job = None
    progress.publish_state(job_id, status=status, live=job.as_live() if job is not None else None)


def job_set_max_speed(*, job: TransferJob, max_speed: int | None, user: User, request: HttpRequest | None = None) -> None:
    """Change a job's speed limit (KB/s, None for none); a running worker applies it within a second."""
    _require(user, "control", job)
    with transaction.atomic():
        locked = TransferJob.objects.select_for_update().get(pk=job.pk)
        before = locked.options.get("max_speed")
        options = {key: value for key, value in locked.options.items() if key != "max_speed"}
        if max_speed:
            options["max_speed"] = max_speed
        TransferJob.objects.filter(pk=job.pk).update(options=options)
        audit_record(
            actor=user,
            action="job.max_speed",
            target=job,
            request=request,
            before={"max_speed": before},
            after={"max_speed": max_speed},
        )
    job.options = options


def job_start(*, job_id: int) -> bool:
    """Queued -> running; or running -> running when the caller holds the job's lease, which proves
    the run that marked it running is gone (its worker died): the new run takes over and resumes."""
    return job_transition(
        job_id=job_id,
        to=TransferJob.Status.RUNNING,
        allowed_from={TransferJob.Status.QUEUED, TransferJob.Status.RUNNING},
        started_at=Coalesce("started_at", Now()),  # the first start is kept across pauses
    )


def job_recount(*, job_id: int) -> None:
    """Set the job's counters from its items (before a resume or a retry), so progress starts exact."""
    done_states = [TransferItem.State.DONE, TransferItem.State.SKIPPED]
    totals = TransferItem.objects.filter(job_id=job_id).aggregate(
        done=Count("pk", filter=Q(state__in=done_states)),
        skipped=Count("pk", filter=Q(state=TransferItem.State.SKIPPED)),
        failed=Count("pk", filter=Q(state=TransferItem.State.FAILED)),
        bytes_arrived=Sum("bytes_done", filter=Q(state__in=done_states)),
        bytes_pending=Sum("size", filter=Q(state=TransferItem.State.PENDING)),
        # What the partial files of pending items held when the last run stored them: the resumed run
        # picks them up, so the bar carries on from there instead of falling back (see execution).
        bytes_partial=Sum("bytes_done", filter=Q(state=TransferItem.State.PENDING)),
    )
    bytes_done = totals["bytes_arrived"] or 0
    TransferJob.objects.filter(pk=job_id).update(
        files_done=totals["done"],
        files_skipped=totals["skipped"],
        files_failed=totals["failed"],
        bytes_done=bytes_done + (totals["bytes_partial"] or 0),
        bytes_total=bytes_done + (totals["bytes_pending"] or 0),
        figures_at=timezone.now(),
    )


def _job_act(
    *, job: TransferJob, action: str, user: User, request: HttpRequest | None, only_from: set[str] | None = None, **fields: Any
) -> bool:
    _require(user, "control", job)
    """A user's action, as TransferJob.ACTIONS allows it (narrowed to `only_from` when given), audited."""
    to, allowed_from = TransferJob.ACTIONS[action]
    before = job.status
    with transaction.atomic():
        if not job_transition(job_id=job.pk, to=to, allowed_from=allowed_from & (only_from or allowed_from), **fields):
            return False
        audit_record(
            actor=user, action=f"job.{action}", target=job, request=request, before={"status": before}, after={"status": to}
        )
    job.status = to
    return True


def job_pause(*, job: TransferJob, user: User, request: HttpRequest | None = None) -> bool:
    """Ask the worker to stop between chunks; partial files stay and resume at their offset."""
    return _job_act(job=job, action="pause", user=user, request=request)


def job_resume(*, job: TransferJob, user: User, request: HttpRequest | None = None) -> bool:
    from transfers.tasks import run_job

    with transaction.atomic():
        resumed = _job_act(job=job, action="resume", user=user, request=request)
        if resumed:
            transaction.on_commit(lambda: run_job.delay(job.pk))
    return resumed


def job_cancel(*, job: TransferJob, user: User, request: HttpRequest | None = None) -> bool:
    """Stop for good (a failed job too). Once no run holds the job any more, a task removes its partial files.

    A running job's worker is still stopping: it sets finished_at, with its last counters, and writes the
    job's finishing audit event (job_stopped). Any other job has no run: it is finished here, at once.
    """
    from transfers.tasks import discard_partials

    running: set[str] = {TransferJob.Status.RUNNING}
    with transaction.atomic():
        cancelled = _job_act(job=job, action="cancel", user=user, request=request, only_from=running)
        if not cancelled:
            others = set(TransferJob.ACTIONS["cancel"][1]) - running
            cancelled = _job_act(
                job=job, action="cancel", user=user, request=request, only_from=others, finished_at=timezone.now()
            )
            if cancelled:
                job_audit_end(job_id=job.pk, outcome=TransferJob.Status.CANCELLED)
        if cancelled:
            transaction.on_commit(lambda: discard_partials.delay(job.pk))
    return cancelled


def job_audit_end(*, job_id: int, outcome: str, error: str = "") -> None:
    """The one event that says a run (or a job without a run) ended, with the counters it ended with."""
    job = TransferJob.objects.filter(pk=job_id).first()
    after: dict[str, Any] = {}
    if job is not None:
        after = {key: value for key, value in job.figures().items() if key not in ("percent", "figures_at")}
    if error:
        after["error"] = error
    audit_record(actor=None, action="job.finish", target=TransferJob(pk=job_id), outcome=outcome, after=after)


def job_retry(*, job: TransferJob, user: User, request: HttpRequest | None = None) -> bool:
    """Send the failed files of a finished job again, and the ones never sent (with the same options).

    Items still pending stay pending and resume from their partial files; failed ones start over.
    """
    from transfers.tasks import run_job

    with transaction.atomic():
        retried = _job_act(job=job, action="retry", user=user, request=request, finished_at=None, error="")
        if retried:
            job.items.filter(state=TransferItem.State.FAILED).update(
                state=TransferItem.State.PENDING, error="", error_code="", attempts=0, bytes_done=0
            )
            job_recount(job_id=job.pk)
            transaction.on_commit(lambda: run_job.delay(job.pk))
    return retried
