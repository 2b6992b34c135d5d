"""Which worker runs a job: one that sees all of its local files and can run its farm's transport.

Every worker consumes the shared queue and a queue of its own (`<queue>.w.<worker name>`), and announces
its roots and transports (transfers.workers). The worker that takes a job's message from the shared
queue decides, before running it (`place`): it runs the job itself when it sees every local folder the
job reads or writes and has the transport; otherwise it forwards the message to the least loaded live
worker that does; when none does, the job stays queued saying why ("no worker sees /mnt/nas2") on its
page, and recovery asks again every round, so it starts once such a worker is up. A job taken over after
its worker died goes the same way, to a worker that sees the same files.

Without the list of workers (Redis away) a worker runs what it sees itself and leaves the rest queued.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from transfers import downloads, kinds, workers
from transfers.engine.paths import PathMap
from transfers.farm import UnsupportedAccount, connector_for
from transfers.kinds.options import Download, OptionsInvalid
from transfers.models import ManifestEntry, TransferItem, TransferJob

logger = logging.getLogger(__name__)

SENT_TO = "sent to worker "  # a queued job's `waiting` once forwarded (tasks._placing places it again if that worker goes)
_MAX_FOLDERS = 100_000  # distinct folders remembered while reading a job's paths (then one is enough to say)
_BATCH = 5000


@dataclass(frozen=True)
class Needs:
    folders: frozenset[str]  # the local folders the job reads or writes (absolute, as this host names them)
    transport: str  # "local", "sftp", "s3", "transmitter"


@dataclass(frozen=True)
class Placement:
    here: bool  # this worker runs it
    queue: str = ""  # else: forward it there
    worker: str = ""
    waiting: str = ""  # else: why no worker can (for the job's page)


def own_queue(name: str) -> str:
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE}.w.{name}"


def needs_of(job: TransferJob) -> Needs:
    """The folders of the job's local files and its farm's transport (read from its items, or its manifest)."""
    try:
        transport = connector_for(job.account).transport
    except UnsupportedAccount:
        transport = ""
    kind = kinds.get(job.kind)
    options = kind.options(job)
    folders: set[str] = set()
    if isinstance(options, Download):
        try:
            folders.add(str(downloads.local_root(options, [Path(r) for r in settings.ALLOWED_LOCAL_ROOTS] or [Path("/")])))
        except OptionsInvalid:
            if options.local_path:
                folders.add(os.path.normpath(os.path.expanduser(options.local_path)))
    if any(leg.direction == "upload" for leg in kind.legs(options)):
        path_map = PathMap(job.account.path_map)
        for local in _locals(job):
            folders.add(path_map.apply(local).rpartition("/")[0] or "/")
            if len(folders) >= _MAX_FOLDERS:
                break
    return Needs(frozenset(folders), transport)


def _locals(job: TransferJob) -> Any:
    if TransferItem.objects.filter(job=job).exists():
        return TransferItem.objects.filter(job=job).order_by("pk").values_list("local", flat=True).iterator(chunk_size=_BATCH)
    if job.manifest_id is not None:
        entries = ManifestEntry.objects.filter(manifest_id=job.manifest_id).order_by("number")
        return entries.values_list("local", flat=True).iterator(chunk_size=_BATCH)
    return []


def _under(folder: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return folder == root or folder.startswith(root if root.endswith("/") else root + "/")


def uncovered(needs: Needs, roots: list[str], transports: list[str]) -> str:
    """What a worker with these roots and transports lacks for the job ("" when nothing)."""
    if needs.transport and needs.transport not in transports:
        return f"the {needs.transport} transport"
    for folder in sorted(needs.folders):
        if not any(_under(folder, root) for root in roots):
            return folder
    return ""


def place(job: TransferJob, *, me: str) -> Placement:
    """Where the job runs (see the module's docstring)."""
    needs = needs_of(job)
    mine = uncovered(needs, [str(r) for r in settings.ALLOWED_LOCAL_ROOTS], workers.transports())
    if not mine:
        return Placement(here=True)
    try:
        live = [w for w in workers.live() if w.get("hostname") != me]
    except (RedisError, OSError):
        return Placement(here=False, waiting=f"this worker does not see {mine}, and the list of workers is unavailable (Redis)")
    able = [w for w in live if not uncovered(needs, list(w.get("roots", [])), list(w.get("transports", [])))]
    if able:
        # Its host's load, and the jobs already sent to it that it has not started: the load average
        # does not move between the placements of one burst (every job went to the same worker).
        sent = Counter(
            TransferJob.objects.filter(status=TransferJob.Status.QUEUED, waiting__startswith=SENT_TO).values_list(
                "waiting", flat=True
            )
        )
        chosen = min(able, key=lambda w: (sent[f"{SENT_TO}{w['hostname']}"] + float(w["load"]), str(w["hostname"])))
        return Placement(
            here=False, queue=str(chosen.get("queue") or own_queue(str(chosen["hostname"]))), worker=str(chosen["hostname"])
        )
    lacking = mine
    if live:
        lacking = min((uncovered(needs, list(w.get("roots", [])), list(w.get("transports", []))) for w in live), key=len)
    return Placement(
        here=False, waiting=f"no worker runs {lacking}" if lacking.startswith("the ") else f"no worker sees {lacking}"
    )
