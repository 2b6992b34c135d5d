"""Starting a job of any kind: the kind checks its options and what they name, then the job is recorded
and enqueued. The request stays short: the worker lists the job's items (JobKind.prepare).

`job_create` is the one door for every kind (the pages, the API, the commands); which kind does what
is in transfers.kinds.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest

from transfers import kinds, workers
from transfers.accounts import options_for
from transfers.farm import connector_for
from transfers.kinds import options as kind_options
from transfers.models import FarmAccount, JobGroup, Manifest, TransferJob
from transfers.services import ManifestNotReady, User, _require, audit_record


def job_create(
    *,
    kind: str,
    account: FarmAccount,
    user: User | None,
    options: dict[str, Any] | None = None,
    manifest: Manifest | None = None,
    request: HttpRequest | None = None,
    group: JobGroup | None = None,
) -> TransferJob:
    """Record a job of `kind` and enqueue it once committed.

    Refuses (before recording anything): an actor whose role may not run it (PermissionDenied), options
    that do not fit the kind or name files outside the allowed roots (OptionsInvalid), a kind that needs
    a ready manifest without one (ManifestNotReady), an account whose farm nothing here reaches."""
    from transfers.tasks import run_job

    job_kind = kinds.get(kind)
    if job_kind.uses_manifest:
        if manifest is None:
            raise kinds.OptionsInvalid(f"{kind} sends a manifest's files: choose a manifest")
        account = manifest.account
        _require(user, "run", manifest)
    else:
        _require(user, "run", account)  # a member or a lead of the account's team
    # The account's default options (its page's "default upload options") under the job's own.
    checked = job_kind.parse({**options_for(account, job_kind.Options), **(options or {})})
    connector_for(account).check_options(checked)  # UnsupportedAccount when no connector reaches the farm
    if manifest is not None and manifest.state != Manifest.State.READY:
        raise ManifestNotReady(f"manifest {manifest.name!r} is {manifest.get_state_display().lower()}: nothing to upload")
    totals = job_kind.plan(account=account, manifest=manifest, options=checked, roots=workers.studio_roots())
    with transaction.atomic():
        job = TransferJob.objects.create(
            kind=kind,
            account=account,
            manifest=manifest if job_kind.uses_manifest else None,
            options=kind_options.dump(checked),
            created_by=user if user is not None and user.is_authenticated else None,
            files_total=totals.files,
            bytes_total=totals.bytes,
            prepared=False,
            group=group,
        )
        after = {"kind": kind, "status": job.status, **({"manifest": manifest.pk} if manifest is not None else {})}
        if group is not None:
            after["group"] = group.pk
        audit_record(actor=user, action="job.create", target=job, request=request, after=after)
        transaction.on_commit(lambda: run_job.delay(job.pk))
    return job
