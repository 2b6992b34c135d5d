"""Storing a manifest's entries: read as a stream, checked one by one, written in short batches.

services.manifest_import (here and now) and services.manifest_import_run (a worker) share it.
Memory stays bounded: one entry is read at a time (engine.manifest_stream) and a repeated server path
is found through a hash per entry, not the paths themselves. Each batch is one short transaction,
followed by a pause as long as it, so a login or a Cancel never waits long on SQLite's write lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Max

from transfers import workers
from transfers.engine.manifest import EntryProblem, ManifestInvalid, check_entries, expand_upload_list, read_upload_list
from transfers.engine.manifest import ManifestEntry as EngineEntry
from transfers.engine.manifest_stream import read_upload_json_stream
from transfers.engine.paths import PathMap, clean_server_path
from transfers.models import Manifest, ManifestEntry

logger = logging.getLogger(__name__)

BATCH = 5000  # entries per transaction: each holds SQLite's write lock ~0.1 s at most
MAX_PROBLEMS = 1000
_EntryRow = tuple[int, int, str, str, int | None]  # manifest, number, local, server, size


def _size_or_none(path: str) -> int | None:
    try:
        info = os.stat(path)
    except OSError:
        return None  # the worker reports a missing or unreadable file on its own item
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def import_spooled(*, manifest_id: int, path: Path, wait: bool) -> Manifest | None:
    """Read, check and store an importing manifest's spooled file, then mark it ready or refused.

    An exclusive lock on the file keeps a second run (a redelivered message, a recovery after a
    restart) from reading it at the same time; the lock dies with its process, so a run that died
    is taken over. The state changes before the file goes, both under the lock: a late duplicate
    finds the manifest done. None when it was done already, or (wait=False) another run holds it.
    """
    try:
        handle: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - closed below, after the lock's work
    except FileNotFoundError:
        handle = None
    try:
        if handle is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return None
        manifest = Manifest.objects.select_related("account").defer("account__access_key")
        found = manifest.filter(pk=manifest_id, state=Manifest.State.IMPORTING).first()
        if found is None:
            return None
        if handle is None:
            problems = [EntryProblem(0, "the uploaded file is gone; import it again")]
        else:
            try:
                problems = manifest_fill(found, handle)
            except Exception as exc:  # a bug must refuse this manifest, not leave it importing for ever
                logger.exception("manifest %s: import failed", manifest_id)
                entries_delete(manifest_id=manifest_id)
                problems = [EntryProblem(0, f"internal error while reading the file ({type(exc).__name__}); see the worker log")]
        if problems:
            found.state, found.problems, found.entries_stored = Manifest.State.REFUSED, problems_stored(problems), 0
            Manifest.objects.filter(pk=manifest_id).update(state=found.state, problems=found.problems, entries_stored=0)
        path.unlink(missing_ok=True)
        return found
    finally:
        if handle is not None:
            handle.close()


def problems_stored(problems: list[EntryProblem]) -> list[dict[str, int | str]]:
    """A refusal as the manifest keeps it (and the API shows it): [{"entry"|"line": N, "reason": ...}]."""
    return [{p.unit: p.number, "reason": p.reason} for p in problems[:MAX_PROBLEMS]]


def problems_loaded(stored: list[dict[str, Any]]) -> list[EntryProblem]:
    problems = []
    for problem in stored:
        unit = "line" if "line" in problem else "entry"
        problems.append(EntryProblem(int(problem.get(unit, 0)), str(problem.get("reason", "")), unit))
    return problems


def manifest_fill(manifest: Manifest, handle: IO[bytes]) -> list[EntryProblem]:
    """Check every entry and store them BATCH per short transaction, counting progress on the
    manifest; problems (the first MAX_PROBLEMS) when refused, and then no entry is kept.

    Memory stays bounded: one entry is read at a time (engine.manifest_stream) and a repeated server
    path is found through a hash per entry, not the paths themselves.
    """
    path_map = PathMap(manifest.account.path_map)
    roots = workers.studio_roots()  # every worker's: the entries run on one that sees them (transfers.placement)
    entries_delete(manifest_id=manifest.pk)  # a redelivered import starts again
    stream: Iterable[tuple[int, EngineEntry | EntryProblem]]
    if manifest.transmit_type == Manifest.TransmitType.UPLOAD_LIST:
        try:  # lists name files and folders, a line each: small files, read whole
            stream = enumerate(expand_upload_list(read_upload_list(handle.read()), allowed_roots=roots, path_map=path_map), 1)
        except ManifestInvalid as exc:
            return exc.problems
    else:
        stream = read_upload_json_stream(handle)
    problems: list[EntryProblem] = []
    first_of: dict[int, int] = {}  # hash of a clean server path -> the entry that named it first
    batch: list[_EntryRow] = []
    count = total = 0
    try:
        for number, item in stream:
            count = number
            if isinstance(item, EntryProblem):
                problems.append(item)
            else:
                found = [
                    EntryProblem(number, p.reason, p.unit) for p in check_entries([item], allowed_roots=roots, path_map=path_map)
                ]
                if not found:
                    first = first_of.setdefault(hash(clean_server_path(item.server)), number)
                    if first != number and _same_server(manifest.pk, first, item.server, batch):
                        found = [EntryProblem(number, f"server path {item.server!r} repeats entry {first}")]
                problems.extend(found)
                if not problems:
                    size = _size_or_none(path_map.apply(item.local))
                    total += size or 0
                    batch.append((manifest.pk, number, item.local, item.server, size))
                    if len(batch) >= BATCH:
                        _entries_store(manifest_id=manifest.pk, batch=batch)
                        batch = []
            if len(problems) >= MAX_PROBLEMS:
                break
    except ManifestInvalid as exc:
        problems = [*exc.problems, *problems]
    if problems:
        entries_delete(manifest_id=manifest.pk)
        return problems
    _entries_store(manifest_id=manifest.pk, batch=batch)
    Manifest.objects.filter(pk=manifest.pk).update(state=Manifest.State.READY, entry_count=count, total_bytes=total)
    manifest.state, manifest.entry_count, manifest.total_bytes, manifest.entries_stored = (
        Manifest.State.READY,
        count,
        total,
        count,
    )
    return []


def _same_server(manifest_id: int, first: int, server: str, batch: list[_EntryRow]) -> bool:
    """Whether entry `first` names the same storage path (two paths sharing a hash are told apart)."""
    earlier = next((row[3] for row in batch if row[1] == first), None)
    if earlier is None:
        earlier = ManifestEntry.objects.filter(manifest_id=manifest_id, number=first).values_list("server", flat=True).first()
    return earlier is None or clean_server_path(earlier) == clean_server_path(server)


def pace(started: float) -> None:
    """Leave SQLite's write lock free as long as we held it, so a login or a Cancel gets its turn."""
    time.sleep(min(0.2, time.monotonic() - started))


def _entries_store(*, manifest_id: int, batch: list[_EntryRow]) -> None:
    started = time.monotonic()
    table = db_connection.ops.quote_name(ManifestEntry._meta.db_table)
    with transaction.atomic():
        if batch:
            with db_connection.cursor() as cursor:
                # A prepared INSERT per row: a fifth of bulk_create's cost, so the write lock is held that much less.
                cursor.executemany(
                    f"INSERT INTO {table} (manifest_id, number, local, server, size) VALUES (%s, %s, %s, %s, %s)",  # noqa: S608
                    batch,
                )
            Manifest.objects.filter(pk=manifest_id).update(entries_stored=batch[-1][1])
    pace(started)


def entries_delete(*, manifest_id: int) -> None:
    last = ManifestEntry.objects.filter(manifest_id=manifest_id).aggregate(last=Max("number"))["last"] or 0
    for low in range(0, last, BATCH):
        started = time.monotonic()
        ManifestEntry.objects.filter(manifest_id=manifest_id, number__gt=low, number__lte=low + BATCH).delete()
        pace(started)
