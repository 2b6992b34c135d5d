"""Multi-step workflows: importing manifests, creating jobs, moving them between states, auditing.

Services are keyword-only `<noun>_<verb>` functions; views, API, commands and tasks all call these.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, transaction
from django.db import connection as db_connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, Now
from django.http import HttpRequest
from django.utils import timezone

from transfers import manifest_store, progress, selectors
from transfers.engine.manifest import ManifestInvalid
from transfers.farm import FarmConnector, connector_for
from transfers.farm import UnsupportedAccount as UnsupportedAccount  # for the callers of job_create_upload
from transfers.models import AuditEvent, FarmAccount, Manifest, ManifestEntry, Team, TransferItem, TransferJob

User = AuthUser | AnonymousUser
logger = logging.getLogger(__name__)


class ManifestNotReady(ValueError):
    """The manifest is still being imported, or was refused: there is nothing to upload yet."""


_STORE_BATCH = 5000  # items per transaction: each holds SQLite's write lock ~0.1 s at most


# Keys whose values never go into an audit row, at any depth: the row says only whether one was set.
_SECRET_WORDS = ("password", "secret", "token", "access_key", "api_key", "private_key", "credential")


# What a caller may already have put in a secret's place: said as it is ("changed" tells more than "set").
_SECRET_SAYINGS = frozenset({"set", "not set", "changed", "cleared", "unchanged"})


def _said(value: Any) -> str:
    if isinstance(value, str) and value in _SECRET_SAYINGS:
        return value
    return "set" if value else "not set"


def audit_redact(values: Any) -> Any:
    """`values` with every secret-looking key's value replaced by "set" or "not set" (recursively); a
    value that already only says what happened to the secret ("changed", "cleared") stays."""
    if isinstance(values, dict):
        return {
            key: _said(value)
            if isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS)
            else audit_redact(value)
            for key, value in values.items()
        }
    if isinstance(values, (list, tuple)):
        return [audit_redact(value) for value in values]
    return values


def audit_snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named fields of a model instance as an audit row's before/after (foreign keys by id, secrets
    as "set"/"not set"). Take one before and one after a change; audit_record keeps the keys that changed:

        before = services.audit_snapshot(account, FIELDS)
        ... change and save ...
        services.audit_record(actor=user, action="account.change", target=account, request=request,
                              before=before, after=services.audit_snapshot(account, FIELDS), changed_only=True)
    """
    values: dict[str, Any] = {}
    for name in fields:
        field = obj._meta.get_field(name)
        value = getattr(obj, field.attname)
        values[name] = value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else str(value)
    return audit_redact(values)  # type: ignore[no-any-return]


def audit_team_of(target: Any) -> int | None:
    """The id of the team a target belongs to (a team, a membership, an account, or anything of an
    account: manifests, jobs, farm tasks, tokens), None for the rest (users, logins)."""
    if isinstance(target, Team):
        return target.pk
    team_id = getattr(target, "team_id", None)  # memberships, accounts
    if isinstance(team_id, int):
        return team_id
    account_id = getattr(target, "account_id", None)
    if isinstance(account_id, int):
        return FarmAccount.objects.filter(pk=account_id).values_list("team_id", flat=True).first()
    if isinstance(target, TransferJob) and target.pk is not None:  # a bare TransferJob(pk=...)
        return TransferJob.objects.filter(pk=target.pk).values_list("account__team", flat=True).first()
    return None


def audit_record(
    *,
    actor: User | None,
    action: str,
    target: Any,
    request: HttpRequest | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: str = "ok",
    team: Team | int | None = None,
    changed_only: bool = False,
    actor_name: str = "system",
) -> AuditEvent:
    """Append an audit row; call it inside the transaction that makes the change.

    `action` is "<noun>.<verb>" (job.pause, account.change, auth.login); the target's team is found
    from the target unless `team` is given; `actor_name` names an actor without an account ("system",
    "anonymous" for a failed login of an unknown name). Secret-looking keys of before/after are stored as
    "set"/"not set" only (audit_redact); with `changed_only`, only the keys whose values differ stay.
    """
    person = actor if isinstance(actor, AuthUser) else None  # anonymous and the system have no row
    before, after = audit_redact(before), audit_redact(after)
    if changed_only and before is not None and after is not None:
        keys = [key for key in {**before, **after} if before.get(key) != after.get(key)]
        before = {key: before.get(key) for key in keys}
        after = {key: after.get(key) for key in keys}
    team_id = team.pk if isinstance(team, Team) else team if team is not None else audit_team_of(target)
    django_request = getattr(request, "_request", request)  # a DRF request works too
    return AuditEvent.objects.create(
        actor=person,
        actor_name=person.get_username() if person is not None else actor_name[:150],
        team_id=team_id,
        action=action,
        target_type=type(target).__name__,
        target_id=str(getattr(target, "pk", target))[:60],
        request_id=getattr(django_request, "request_id", "") if django_request is not None else "",
        remote_addr=django_request.META.get("REMOTE_ADDR") if django_request is not None else None,
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


def manifest_import(
    *,
    name: str,
    account: FarmAccount,
    data: bytes,
    user: User | None,
    request: HttpRequest | None = None,
    transmit_type: str = Manifest.TransmitType.UPLOAD_JSON,
) -> Manifest:
    """Validate an upload.json (or an upload list) and store it, here and now (the import_manifest
    command, the demo); ManifestInvalid names each problem and nothing is kept. Pages and the API
    hand the file to a worker instead (manifest_import_begin)."""
    _require(user, "manage", account)
    manifest = Manifest.objects.create(
        name=name,
        account=account,
        transmit_type=transmit_type,
        state=Manifest.State.IMPORTING,
        created_by=user if user is not None and user.is_authenticated else None,
    )
    # Spooled like an upload: should this process die, a worker finishes the import (recover_imports).
    path = manifest_spool_path(manifest_id=manifest.pk)
    path.write_bytes(data)
    manifest_store.import_spooled(manifest_id=manifest.pk, path=path, wait=True)
    manifest.refresh_from_db()
    if manifest.state == Manifest.State.REFUSED:
        manifest.delete()
        raise ManifestInvalid(manifest_store.problems_loaded(manifest.problems))
    audit_record(actor=user, action="manifest.import", target=manifest, request=request, after={"entries": manifest.entry_count})
    return manifest


def manifest_spool_path(*, manifest_id: int) -> Path:
    """Where an uploaded manifest waits for its worker (in the data dir: the web and the worker share it)."""
    folder = Path(settings.DATA_DIR) / "imports"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / f"manifest-{manifest_id}.upload"


def manifest_import_begin(
    *,
    name: str,
    account: FarmAccount,
    chunks: Iterable[bytes],
    user: User | None,
    request: HttpRequest | None = None,
    transmit_type: str = Manifest.TransmitType.UPLOAD_JSON,
    spooled: str | None = None,
) -> Manifest:
    """Record an import (state importing) and hand the file to a worker (tasks.import_manifest).

    The request only puts the upload in the data dir: `spooled` (the file Django spooled a big
    upload to) is moved there when it can be, else `chunks` are copied one by one, so a 200 MB
    manifest never sits in the web process's memory.
    """
    from transfers.tasks import import_manifest

    _require(user, "manage", account)
    folder = manifest_spool_path(manifest_id=0).parent
    fd, temporary = tempfile.mkstemp(prefix=".upload-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                if spooled is None:
                    raise OSError("not spooled")
                os.replace(spooled, temporary)  # same filesystem: a rename, whatever the size
            except OSError:
                for chunk in chunks:
                    out.write(chunk)
        size = os.path.getsize(temporary)
        with transaction.atomic():
            manifest = Manifest.objects.create(
                name=name,
                account=account,
                transmit_type=transmit_type,
                state=Manifest.State.IMPORTING,
                created_by=user if user is not None and user.is_authenticated else None,
            )
            os.replace(temporary, manifest_spool_path(manifest_id=manifest.pk))
            audit_record(
                actor=user,
                action="manifest.import",
                target=manifest,
                request=request,
                after={"state": "importing", "bytes": size},
            )
            transaction.on_commit(lambda: import_manifest.delay(manifest.pk))
    finally:
        Path(temporary).unlink(missing_ok=True)
    return manifest


def manifest_import_run(*, manifest_id: int) -> None:
    """The worker's side of manifest_import_begin: read, check and store the file; ready or refused.
    A duplicate (a redelivery, a recovery) while another run reads it, or once it is done, does nothing."""
    path = manifest_spool_path(manifest_id=manifest_id)
    manifest = manifest_store.import_spooled(manifest_id=manifest_id, path=path, wait=False)
    if manifest is None:
        return
    if manifest.state == Manifest.State.REFUSED:
        after = {"problems": len(manifest.problems)}
        audit_record(actor=None, action="manifest.import.finish", target=manifest, outcome="refused", after=after)
    else:
        audit_record(actor=None, action="manifest.import.finish", target=manifest, after={"entries": manifest.entry_count})


def job_create_upload(
    *, manifest: Manifest, user: User, request: HttpRequest | None = None, options: dict[str, Any] | None = None
) -> TransferJob:
    """upload_asset: record the job and enqueue it (transfers.jobs.job_create); the worker makes its
    items from the manifest's entries (job_prepare), so this stays well under a second."""
    from transfers.jobs import job_create

    return job_create(
        kind=TransferJob.Kind.UPLOAD_ASSET,
        account=manifest.account,
        manifest=manifest,
        user=user,
        request=request,
        options=options,
    )


def job_prepare(
    *, job_id: int, keep_going: Callable[[], bool] = lambda: True, first_number: int = 1, area: str = "input"
) -> bool:
    """Make the job's items from its manifest's entries and, after a retry, set its failed items
    pending again — _STORE_BATCH rows per short transaction, paced, so no other request waits on the
    database. True once prepared; False when keep_going() said stop (a pause, a cancel): the next
    run continues from `items_prepared`, which moves in the same transaction as the rows it counts.

    Entry n becomes item `first_number + n - 1` in `area` (a kind with other items first moves them up)."""
    job = TransferJob.objects.only("manifest_id", "files_total", "items_prepared", "prepared").get(pk=job_id)
    entries_total = job.files_total - (first_number - 1)
    if job.prepared:
        return True
    item, entry = TransferItem._meta, ManifestEntry._meta
    quote = db_connection.ops.quote_name
    columns = ", ".join(quote(name) for name in _ITEM_COLUMNS)
    # INSERT ... SELECT: the rows never pass through Python (a 1.3M-entry job in well under a minute).
    insert = (
        f"INSERT INTO {quote(item.db_table)} ({columns}) "  # noqa: S608 - names are ours, values bound
        f"SELECT %s, number + %s, local, server, size, %s, %s, 0, '', 0, '', '' FROM {quote(entry.db_table)} "
        f"WHERE manifest_id = %s AND number > %s AND number <= %s"
    )
    done = job.items_prepared
    while done < entries_total and job.manifest_id is not None:
        if not keep_going():
            return False
        upto = min(done + _STORE_BATCH, entries_total)
        started = time.monotonic()
        with transaction.atomic(), db_connection.cursor() as cursor:
            cursor.execute(insert, [job_id, first_number - 1, area, TransferItem.State.PENDING, job.manifest_id, done, upto])
            if not TransferJob.objects.filter(pk=job_id, items_prepared=done).update(items_prepared=upto):
                raise RuntimeError(f"job {job_id} is being prepared by another run")  # rolls the rows back
        done = upto
        manifest_store.pace(started)
    failed = TransferItem.objects.filter(job_id=job_id, state=TransferItem.State.FAILED).order_by("pk")
    while ids := list(failed.values_list("pk", flat=True)[:_STORE_BATCH]):
        if not keep_going():
            return False
        started = time.monotonic()
        failed.filter(pk__gte=ids[0], pk__lte=ids[-1]).update(
            state=TransferItem.State.PENDING, error="", error_code="", attempts=0, bytes_done=0
        )
        manifest_store.pace(started)
    TransferJob.objects.filter(pk=job_id).update(prepared=True)
    return True


_ITEM_COLUMNS = [
    "job_id",
    "number",
    "local",
    "server",
    "size",
    "area",
    "state",
    "bytes_done",
    "checksum",
    "attempts",
    "error_code",
    "error",
]


def job_transition(
    *, job_id: int, to: str, allowed_from: Iterable[str] | None = None, owned_by: str | None = None, **fields: Any
) -> bool:
    """Move a job to `to` only if its current status allows it; False when another actor got there first.

    The check and the change are one conditional UPDATE, so a redelivered task cannot run a job twice.
    `owned_by` (a run's token) also requires that no other run has taken the job over since.
    """
    sources = (
        set(allowed_from) if allowed_from is not None else {s for s, targets in TransferJob.TRANSITIONS.items() if to in targets}
    )
    jobs = TransferJob.objects.filter(pk=job_id, status__in=sources)
    if owned_by is not None:
        jobs = jobs.filter(run_token=owned_by)
    changed = jobs.update(status=to, **fields)
    if changed:
        transaction.on_commit(lambda: job_publish_state(job_id=job_id, status=to))
        if to not in (TransferJob.Status.RUNNING, TransferJob.Status.QUEUED):
            from transfers.groups import group_advance

            transaction.on_commit(lambda: group_advance(job_id=job_id))  # a place in its group, if any, is free
    return bool(changed)


def job_publish_state(*, job_id: int, status: str) -> None:
    """Announce a job's state with its row as committed: the page takes status, controls and figures
    from it. Best effort, as all publishing: a database that fails here costs only the figures."""
    try:
        job = TransferJob.objects.select_related("account").defer("account__access_key").filter(pk=job_id).first()
    except DatabaseError:
        job = None
    live, team_id = (job.as_live(), job.account.team_id) if job is not None else (None, None)
    progress.publish_state(job_id, status=status, live=live, team_id=team_id)


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


def job_start(*, job_id: int, run_token: str | None = None) -> bool:
    """Queued -> running; or running -> running when the caller holds the job's lease: the run that
    marked it running lost its lease (its worker died, or Redis restarted empty) and the new run takes
    over and resumes. The job becomes the new run's (`run_token`, a new one when not given): from the
    same UPDATE on, the old run, maybe still stopping, can write nothing more (see recorder).
    A queued job of a group starts only in its turn (groups.group_turn); until then it stays queued."""
    from transfers.groups import group_turn

    with transaction.atomic():
        return group_turn(job_id=job_id) and job_transition(
            job_id=job_id,
            to=TransferJob.Status.RUNNING,
            allowed_from={TransferJob.Status.QUEUED, TransferJob.Status.RUNNING},
            started_at=Coalesce("started_at", Now()),  # the first start is kept across pauses
            run_token=run_token or uuid.uuid4().hex,
        )


def job_recount(*, job_id: int, owned_by: str | None = None) -> bool:
    """Set the job's counters from its items (before a resume or a retry), so progress starts exact.

    `owned_by` (a run's token): only while the job is running and still that run's; False otherwise.
    """
    if not TransferJob.objects.filter(pk=job_id, prepared=True).exists():
        return False  # its items are not all there yet: job_prepare's caller counts once they are
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
    jobs = TransferJob.objects.filter(pk=job_id)
    if owned_by is not None:
        jobs = jobs.filter(run_token=owned_by, status=TransferJob.Status.RUNNING)
    return bool(
        jobs.update(
            files_done=totals["done"],
            files_skipped=totals["skipped"],
            files_failed=totals["failed"],
            bytes_done=bytes_done + (totals["bytes_partial"] or 0),
            bytes_total=bytes_done + (totals["bytes_pending"] or 0),
            figures_at=timezone.now(),
        )
    )


def _job_act(
    *, job: TransferJob, action: str, user: User, request: HttpRequest | None, only_from: set[str] | None = None, **fields: Any
) -> bool:
    """A user's action, as TransferJob.ACTIONS allows it (narrowed to `only_from` when given), audited."""
    _require(user, "control", job)
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
    if outcome in TransferJob.TERMINAL:
        from transfers.notifications import notify_job_end

        transaction.on_commit(lambda: notify_job_end(job_id=job_id, outcome=outcome))


def job_retry(*, job: TransferJob, user: User, request: HttpRequest | None = None) -> bool:
    """Send the failed files of a finished job again, and the ones never sent (with the same options).

    Items still pending stay pending and resume from their partial files; failed ones start over.
    """
    from transfers.tasks import run_job

    with transaction.atomic():
        # The worker sets the failed items pending again, in short batches (job_prepare).
        retried = _job_act(job=job, action="retry", user=user, request=request, finished_at=None, error="", prepared=False)
        if retried:
            transaction.on_commit(lambda: run_job.delay(job.pk))
    return retried
