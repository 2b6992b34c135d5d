"""Work a worker does on a manifest: append files and folders, split it into parts, a dry run.

Each `manifest_*_begin` service checks the user's role (selectors.user_may), records a ManifestWork
and its audit row in one transaction and enqueues tasks.manifest_work; `work_run` is the worker's
side. Like an import, each runs in short paced transactions (manifest_store.pace), with its progress
on the row (`done` of `total`), and with bounded memory:

* append (the SDK's append_to_upload, without its bugs): files are taken as they are, folders walked
  recursively; every folder is opened beneath its allowed root through engine.localfs.LocalTree (no
  symlink followed, `..` refused, whatever was checked when the work was asked for); symlinks and
  special files met in a walk are skipped and counted. A local path already in the manifest is
  skipped (the dedupe keeps a 64-bit hash per entry, not the paths), and so is a new path whose
  storage path another entry has. New entries take the numbers after the manifest's last.
* split (cutting_upload with max_resources_number): ceil(n / max) parts named "<name> — part i of N",
  never an empty one; rows are copied by INSERT ... SELECT in batches, as services.job_prepare does.
* dry run: what an upload would send: a stat per entry (engine.paths.SourceResolver) and the upload
  ledger asked a batch at a time: files and bytes, those the ledger has unchanged (size and mtime, as
  the engine's first look), missing, unreadable and refused files, and the bytes left to send.

A run holds the work's lease (transfers.locks.work_lock, renewed by its own thread), so a worker that
dies leaves its work running without one; the recovery round (transfers.tasks.works_recover) then
enqueues it and the next run takes it over. Each step is safe to redo: append skips the entries it
added before, split keeps the parts it finished and rebuilds a half-filled one, a dry run starts again.
A run that loses its lease stops at its next batch, and one interrupted by the database or Redis leaves
the work running for recovery: no outage fails a work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import F, Max, Sum
from django.http import HttpRequest
from django.utils import timezone
from redis.exceptions import RedisError

from transfers import locks, manifest_store, selectors
from transfers.engine.localfs import LocalTree, NotAFile
from transfers.engine.manifest import is_text
from transfers.engine.paths import PathMap, PathRefused, SourceResolver, clean_server_path, local_to_server
from transfers.ledger import DbLedger
from transfers.models import Manifest, ManifestEntry, ManifestWork

logger = logging.getLogger(__name__)

BATCH = 5000
MAX_PATHS = 1000  # paths one append may name (each may be a folder)
MAX_APPENDED = 2_000_000  # entries one append may add
MAX_PARTS = 10_000
MAX_EXAMPLES = 50  # problems kept on a work's result, with their count


class WorkRefused(ValueError):
    """The work cannot be done as asked; the message says why, in words a user can act on."""


def _require(user: Any, action: selectors.Action, obj: Any) -> None:
    if user is not None and not selectors.user_may(user, action, obj):
        raise PermissionDenied(f"you may not {action} this {obj._meta.verbose_name} (see your role in its team)")


def _user(user: Any) -> Any:
    return user if user is not None and user.is_authenticated else None


def _begin(
    *, manifest: Manifest, kind: str, params: dict[str, Any], user: Any, request: HttpRequest | None, new: bool = False
) -> ManifestWork:
    """Record the work and its audit row, and enqueue it once committed. A work that changes or reads
    the whole manifest refuses to start beside another one that changes it."""
    from transfers.services import audit_record
    from transfers.tasks import manifest_work

    with transaction.atomic():
        locked = Manifest.objects.select_for_update().get(pk=manifest.pk)
        if not new and locked.state != Manifest.State.READY:
            raise WorkRefused(f"the manifest is {locked.get_state_display().lower()}: wait until it is ready")
        changing = locked.works.filter(state__in=ManifestWork.ACTIVE, kind=ManifestWork.Kind.APPEND).exists()
        if kind == ManifestWork.Kind.APPEND:
            changing = changing or locked.works.filter(state__in=ManifestWork.ACTIVE, kind=ManifestWork.Kind.SPLIT).exists()
        if changing:
            raise WorkRefused("files are being added to this manifest: wait until that has finished")
        work = ManifestWork.objects.create(manifest=locked, kind=kind, params=params, created_by=_user(user))
        shown = {key: value[:20] if isinstance(value, list) else value for key, value in params.items()}  # a row, not a list
        audit_record(actor=user, action=f"manifest.{kind}", target=locked, request=request, after={"work": work.pk, **shown})
        transaction.on_commit(lambda: manifest_work.delay(work.pk))
    return work


def _checked_path(tree: LocalTree, path: Any) -> str:
    """An absolute path beneath an allowed root naming a file or a folder there (opened to be sure)."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path or len(path) > 4096:
        raise WorkRefused(f"{path!r} is not an absolute path on the server")
    if ".." in path.split("/"):
        raise WorkRefused(f"{path!r} contains '..'")
    text = "/" + "/".join(part for part in path.split("/") if part not in ("", "."))
    try:
        fd, _ = tree.open_file(text)
        os.close(fd)
    except NotAFile:
        try:
            with tree.folder(text):
                pass
        except (OSError, PathRefused) as exc:
            raise WorkRefused(f"{path!r}: {exc}") from None
    except PathRefused as exc:
        raise WorkRefused(str(exc)) from None
    except FileNotFoundError:
        raise WorkRefused(f"{path!r} does not exist") from None
    except OSError as exc:
        raise WorkRefused(f"{path!r} cannot be read: {exc.strerror or exc}") from None
    return text


def manifest_append_begin(
    *,
    paths: list[Any],
    user: Any,
    request: HttpRequest | None = None,
    manifest: Manifest | None = None,
    name: str = "",
    account: Any = None,
) -> ManifestWork:
    """append_to_upload: add files and folders (walked by a worker) to `manifest`, or to a new
    manifest `name` of `account`. Every path must lie beneath an allowed root: each is checked here
    (to answer at once) and opened again, beneath its root, when the worker walks it."""
    target = manifest if manifest is not None else account
    if target is None:
        raise WorkRefused("name the manifest to add to, or a farm account for a new one")
    _require(user, "manage", target)
    if not isinstance(paths, list) or not paths:
        raise WorkRefused("choose at least one file or folder")
    if len(paths) > MAX_PATHS:
        raise WorkRefused(f"at most {MAX_PATHS} files and folders at once; choose their folder instead")
    with LocalTree(settings.ALLOWED_LOCAL_ROOTS) as tree:
        clean = list(dict.fromkeys(_checked_path(tree, path) for path in paths))
    new = manifest is None
    if manifest is None:
        if not name.strip():
            raise WorkRefused("give the new manifest a name")
        manifest = Manifest.objects.create(
            name=name.strip()[:200], account=account, state=Manifest.State.IMPORTING, created_by=_user(user)
        )
    params = {"paths": clean}
    return _begin(manifest=manifest, kind=ManifestWork.Kind.APPEND, params=params, user=user, request=request, new=new)


def manifest_split_begin(
    *, manifest: Manifest, max_resources_number: Any, user: Any, request: HttpRequest | None = None
) -> ManifestWork:
    """cutting_upload: cut the manifest into parts of at most `max_resources_number` entries each."""
    _require(user, "manage", manifest)
    if isinstance(max_resources_number, bool) or not isinstance(max_resources_number, int) or max_resources_number < 1:
        raise WorkRefused("max_resources_number must be a whole number of at least 1")
    if max_resources_number >= manifest.entry_count:
        raise WorkRefused(f"the manifest has {manifest.entry_count} entries: max_resources_number must be smaller to split it")
    parts = math.ceil(manifest.entry_count / max_resources_number)
    if parts > MAX_PARTS:
        raise WorkRefused(f"that makes {parts} parts; at most {MAX_PARTS}: choose a larger max_resources_number")
    params = {"max_resources_number": max_resources_number, "parts": parts}
    return _begin(manifest=manifest, kind=ManifestWork.Kind.SPLIT, params=params, user=user, request=request)


def manifest_dry_run_begin(*, manifest: Manifest, user: Any, request: HttpRequest | None = None) -> ManifestWork:
    """What an upload of the manifest would send (run: the role that may start the upload)."""
    _require(user, "run", manifest)
    return _begin(manifest=manifest, kind=ManifestWork.Kind.DRY_RUN, params={}, user=user, request=request)


# --- the worker's side ------------------------------------------------------------------------


class WorkInterrupted(Exception):
    """The run lost its lease (another worker may take the work over): it stops, leaving the work running."""


# Failures around a run, not of the work: it stops and stays running; once its lease has lapsed,
# recovery (transfers.tasks) runs it again, and every step is safe to redo.
_INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    WorkInterrupted,
    OperationalError,
    InterfaceError,
    RedisError,
)


def work_run(*, work_id: int) -> None:
    """Run a queued work, holding its lease (transfers.locks.work_lock) while it runs. A work still
    marked running whose lease we could take lost its run (its worker died): it is taken over and
    done again from where it stands (append skips what it added, split keeps its finished parts). A
    message for a work another run holds, or for one that has ended, does nothing."""
    try:
        with locks.work_lock(work_id) as lease:
            _run_held(work_id, lease)
    except locks.JobBusy:
        logger.info("manifest work %s is held by another run; message dropped", work_id)
    except RedisError as exc:  # no lease could be taken: the work is untouched, recovery enqueues it again
        logger.warning("manifest work %s not started (%s); recovery will enqueue it again", work_id, type(exc).__name__)


def _run_held(work_id: int, lease: locks.Lease) -> None:
    from transfers.services import audit_record

    if ManifestWork.objects.filter(pk=work_id, state=ManifestWork.State.RUNNING).exists():
        logger.warning("manifest work %s was left running by a run that is gone; taking it over", work_id)
    startable = ManifestWork.objects.filter(pk=work_id, state__in=ManifestWork.ACTIVE)
    if not startable.update(state=ManifestWork.State.RUNNING):
        return
    work = (
        ManifestWork.objects.select_related("manifest", "manifest__account")
        .defer("manifest__account__access_key")
        .get(pk=work_id)
    )
    work.lease = lease  # type: ignore[attr-defined]  # read by _check between batches
    try:
        result = _RUNNERS[work.kind](work)
    except _INFRASTRUCTURE_ERRORS as exc:
        logger.warning("manifest work %s interrupted (%s: %s); left running for recovery", work_id, type(exc).__name__, exc)
        return
    except WorkRefused as exc:
        _end(work, state=ManifestWork.State.FAILED, error=str(exc))
    except Exception as exc:  # a bug must end the work, not leave it running for ever
        logger.exception("manifest work %s failed", work_id)
        _end(work, state=ManifestWork.State.FAILED, error=f"internal error ({type(exc).__name__}); see the worker log")
    else:
        _end(work, state=ManifestWork.State.DONE, result=result)
    work.refresh_from_db()
    outcome = "ok" if work.state == ManifestWork.State.DONE else "failed"
    after = {"work": work.pk, **({"error": work.error} if work.error else {})}
    audit_record(actor=None, action=f"manifest.{work.kind}.finish", target=work.manifest, outcome=outcome, after=after)


def _check(work: ManifestWork) -> None:
    """Between batches: stop at once when the lease is lost (another run may hold the work now)."""
    lease = getattr(work, "lease", None)
    if lease is not None and lease.lost.is_set():
        raise WorkInterrupted(f"manifest work {work.pk}: lost its lease; another run may take it over")


def _end(work: ManifestWork, *, state: str, result: dict[str, Any] | None = None, error: str = "") -> None:
    fields: dict[str, Any] = {"state": state, "finished_at": timezone.now(), "error": error}
    if result is not None:
        fields["result"] = result
    ManifestWork.objects.filter(pk=work.pk).update(**fields)
    if work.kind == ManifestWork.Kind.APPEND:
        manifest = work.manifest
        if manifest.state == Manifest.State.IMPORTING:  # a new manifest: ready with what was found, or refused
            count = ManifestEntry.objects.filter(manifest=manifest).count()
            if count and state == ManifestWork.State.DONE:
                Manifest.objects.filter(pk=manifest.pk).update(state=Manifest.State.READY)
            else:
                reason = error or "no files were found in what was chosen"
                Manifest.objects.filter(pk=manifest.pk).update(
                    state=Manifest.State.REFUSED, problems=[{"entry": 0, "reason": reason}]
                )


def _progress(work: ManifestWork, *, done: int, total: int | None = None) -> None:
    _check(work)
    fields: dict[str, int] = {"done": done}
    if total is not None:
        fields["total"] = total
    ManifestWork.objects.filter(pk=work.pk).update(**fields)


class _Problems:
    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(text)


def _entries_in_order(manifest_id: int, fields: tuple[str, ...]) -> Iterator[list[tuple[Any, ...]]]:
    """The manifest's entries BATCH at a time, in number order (keyset: each batch costs the same)."""
    after = 0
    rows = ManifestEntry.objects.filter(manifest_id=manifest_id).order_by("number")
    while batch := list(rows.filter(number__gt=after).values_list("number", *fields)[:BATCH]):
        yield batch
        after = batch[-1][0]


def _walk(tree: LocalTree, path: str, problems: _Problems) -> Iterator[tuple[str, int]]:
    """(local path, size) of every regular file at `path` (a file, or a folder walked in name order),
    each folder opened beneath its allowed root; symlinks and special files are skipped and counted."""
    try:
        fd, info = tree.open_file(path)
        os.close(fd)
        yield path, info.st_size
        return
    except NotAFile:
        pass
    except (OSError, PathRefused) as exc:
        problems.add(f"{path}: {exc}")
        return
    try:
        with tree.folder(path) as top:
            for folder, dirs, files, dir_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
                dirs.sort()
                relative = folder[2:] if folder.startswith("./") else ""
                prefix = f"{path}/{relative}" if relative else path
                if not is_text(prefix):
                    dirs.clear()
                    problems.add(f"{prefix!r}: the folder name is not UTF-8 text; rename it to send it")
                    continue
                for name in sorted(files):
                    local = f"{prefix}/{name}"
                    try:
                        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except OSError as exc:
                        problems.add(f"{local}: {exc.strerror or exc}")
                        continue
                    if not is_text(name):
                        problems.add(f"{local!r}: the file name is not UTF-8 text; rename it to send it")
                    elif stat.S_ISLNK(info.st_mode):
                        problems.add(f"{local}: a symlink, not followed")
                    elif not stat.S_ISREG(info.st_mode):
                        problems.add(f"{local}: not a regular file")
                    else:
                        yield local, info.st_size
    except (OSError, PathRefused) as exc:
        problems.add(f"{path}: {exc}")


def _append(work: ManifestWork) -> dict[str, Any]:
    """Safe to run again: the manifest's last number before the work's first run is kept on its result
    (`after`), so a run that takes the work over knows the entries after it as its own (the walk meets
    them again and skips them, counted as added, not as duplicates) and adds only the rest."""
    manifest = work.manifest
    number = ManifestEntry.objects.filter(manifest=manifest).aggregate(last=Max("number"))["last"] or 0
    if "after" not in work.result:  # the first run: no entry of this work yet
        work.result = {"after": number}
        ManifestWork.objects.filter(pk=work.pk).update(result=work.result)
    after = int(work.result["after"])
    locals_seen: set[int] = set()
    ours: set[int] = set()  # added by an earlier run of this work
    servers_seen: set[int] = set()
    for batch in _entries_in_order(manifest.pk, ("local", "server")):
        for entry_number, local, server in batch:
            (ours if entry_number > after else locals_seen).add(hash(local))
            with contextlib.suppress(PathRefused):
                servers_seen.add(hash(clean_server_path(server)))
    problems, duplicates, added = _Problems(), 0, len(ours)
    _progress(work, done=added)
    rows: list[tuple[int, int, str, str, int]] = []
    with LocalTree(settings.ALLOWED_LOCAL_ROOTS) as tree:
        for path in work.params.get("paths", []):
            for local, size in _walk(tree, path, problems):
                _check(work)  # a walk of many files already added can be long between batches
                server = local_to_server(local)
                key = hash(local)
                if key in ours:
                    continue  # added before this run; counted already
                if key in locals_seen:
                    duplicates += 1
                    continue
                server_key = hash(clean_server_path(server))
                if server_key in servers_seen:
                    problems.add(f"{local}: its storage path {server} is another entry's")
                    continue
                if added >= MAX_APPENDED:
                    raise WorkRefused(f"more than {MAX_APPENDED} files: choose fewer folders at once")
                locals_seen.add(key)
                servers_seen.add(server_key)
                number += 1
                added += 1
                rows.append((manifest.pk, number, local, server, size))
                if len(rows) >= BATCH:
                    _store(manifest.pk, rows)
                    _progress(work, done=added)
                    rows = []
    _store(manifest.pk, rows)
    _progress(work, done=added, total=added)
    return {"added": added, "duplicates": duplicates, "skipped": problems.count, "problems": problems.examples}


def _store(manifest_id: int, rows: list[tuple[int, int, str, str, int]]) -> None:
    """Insert the rows and count them on the manifest in one short transaction."""
    if not rows:
        return
    started = time.monotonic()
    table = db_connection.ops.quote_name(ManifestEntry._meta.db_table)
    with transaction.atomic():
        with db_connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} (manifest_id, number, local, server, size) VALUES (%s, %s, %s, %s, %s)",  # noqa: S608
                rows,
            )
        Manifest.objects.filter(pk=manifest_id).update(
            entry_count=F("entry_count") + len(rows),
            entries_stored=F("entries_stored") + len(rows),
            total_bytes=F("total_bytes") + sum(row[4] for row in rows),
        )
    manifest_store.pace(started)


def _split(work: ManifestWork) -> dict[str, Any]:
    """Safe to run again: the parts are made together with the work's result naming them, so a run
    that takes the work over finds them all; it keeps the parts already ready and rebuilds the others
    from empty (a part left half-filled loses its rows first), so no entry is copied twice."""
    original = work.manifest
    size = int(work.params["max_resources_number"])
    count = original.entry_count
    parts = math.ceil(count / size)  # no empty trailing part (the SDK's off-by-one)
    made: list[int] = [int(pk) for pk in work.result.get("parts", [])]
    if len(made) != parts or Manifest.objects.filter(pk__in=made, split_from=original).count() != parts:
        made = _split_parts(work, original, parts, stale=made)
    quote = db_connection.ops.quote_name
    table = quote(ManifestEntry._meta.db_table)
    copy = (
        f"INSERT INTO {table} (manifest_id, number, local, server, size) "  # noqa: S608 - names are ours, values bound
        f"SELECT %s, number - %s, local, server, size FROM {table} WHERE manifest_id = %s AND number > %s AND number <= %s"
    )
    ready = set(Manifest.objects.filter(pk__in=made, state=Manifest.State.READY).values_list("pk", flat=True))
    done = sum(min(size, count - index * size) for index, part_id in enumerate(made) if part_id in ready)
    _progress(work, done=done, total=count)
    for index, part_id in enumerate(made):
        if part_id in ready:
            continue
        offset = index * size
        end = min(offset + size, count)
        with transaction.atomic():  # a part an earlier run left half-filled starts again from empty
            ManifestEntry.objects.filter(manifest_id=part_id).delete()
            Manifest.objects.filter(pk=part_id).update(entries_stored=0)
        low = offset
        while low < end:
            high = min(low + BATCH, end)
            started = time.monotonic()
            with transaction.atomic(), db_connection.cursor() as cursor:
                cursor.execute(copy, [part_id, offset, original.pk, low, high])
                Manifest.objects.filter(pk=part_id).update(entries_stored=high - offset)
            done += high - low
            _progress(work, done=done)
            low = high
            manifest_store.pace(started)
        total = ManifestEntry.objects.filter(manifest_id=part_id).aggregate(total=Sum("size"))["total"] or 0
        Manifest.objects.filter(pk=part_id).update(state=Manifest.State.READY, entry_count=end - offset, total_bytes=total)
    return {"parts": made}


def _split_parts(work: ManifestWork, original: Manifest, parts: int, *, stale: list[int]) -> list[int]:
    """The parts, made (empty, importing) and named on the work's result in one transaction. A part an
    earlier run made that is still there keeps its place; one that is gone is made again."""
    made: list[int] = []
    with transaction.atomic():
        there = set(Manifest.objects.filter(pk__in=stale, split_from=original).values_list("pk", flat=True))
        for index in range(1, parts + 1):
            earlier = stale[index - 1] if index <= len(stale) else None
            if earlier is not None and earlier in there:
                made.append(earlier)
                continue
            part = Manifest.objects.create(
                name=f"{original.name[:160]} — part {index} of {parts}",
                account=original.account,
                transmit_type=original.transmit_type,
                state=Manifest.State.IMPORTING,
                created_by=work.created_by,
                split_from=original,
            )
            made.append(part.pk)
        ManifestWork.objects.filter(pk=work.pk).update(result={"parts": made})
    return made


def _dry_run(work: ManifestWork) -> dict[str, Any]:
    manifest = work.manifest
    path_map = PathMap(manifest.account.path_map)
    resolver = SourceResolver(settings.ALLOWED_LOCAL_ROOTS)
    ledger = DbLedger(account_id=manifest.account_id, area="input")
    figures = dict.fromkeys(("files", "bytes", "ledger_files", "ledger_bytes", "send_files", "send_bytes"), 0)
    missing, unreadable, refused = _Problems(), _Problems(), _Problems()
    _progress(work, done=0, total=manifest.entry_count)
    done = 0
    for batch in _entries_in_order(manifest.pk, ("local", "server")):
        keys: dict[int, str] = {}
        for number, _, server in batch:
            with contextlib.suppress(PathRefused):
                keys[number] = clean_server_path(server)
        records = ledger.lookup(sorted(set(keys.values())))
        for number, local, _ in batch:
            _check(work)  # a stat can be slow (a network share)
            try:
                real, info = resolver.resolve_stat(path_map.apply(local))
            except PathRefused as exc:
                refused.add(f"{local}: {exc}")
                continue
            if info is None:
                missing.add(local)
                continue
            if not stat.S_ISREG(info.st_mode) or not os.access(real, os.R_OK):
                unreadable.add(local)
                continue
            figures["files"] += 1
            figures["bytes"] += info.st_size
            record = records.get(keys.get(number, ""))
            if record is not None and record.size == info.st_size and record.mtime_ns == info.st_mtime_ns:
                figures["ledger_files"] += 1
                figures["ledger_bytes"] += info.st_size
            else:
                figures["send_files"] += 1
                figures["send_bytes"] += info.st_size
        done += len(batch)
        _progress(work, done=done)
    problems = {
        "missing": missing.count,
        "missing_examples": missing.examples,
        "unreadable": unreadable.count,
        "unreadable_examples": unreadable.examples,
        "refused": refused.count,
        "refused_examples": refused.examples,
    }
    return {**figures, **problems}


_RUNNERS: dict[str, Callable[[ManifestWork], dict[str, Any]]] = {
    ManifestWork.Kind.APPEND: _append,
    ManifestWork.Kind.SPLIT: _split,
    ManifestWork.Kind.DRY_RUN: _dry_run,
}


def manifest_import_server_file(
    *, name: str, account: Any, path: str, user: Any, request: HttpRequest | None = None, transmit_type: str
) -> Manifest:
    """Import an upload.json or an upload list that is a file on the server, beneath an allowed root
    (opened there, following no symlink), through the worker like an uploaded one."""
    from transfers.services import manifest_import_begin

    _require(user, "manage", account)
    with LocalTree(settings.ALLOWED_LOCAL_ROOTS) as tree:
        text = _checked_path(tree, path)
        try:
            fd, _ = tree.open_file(text)
        except NotAFile:
            raise WorkRefused(f"{path!r} is a folder: name the upload.json or upload list file in it") from None
        except (OSError, PathRefused) as exc:
            raise WorkRefused(f"{path!r}: {exc}") from None
    with os.fdopen(fd, "rb") as handle:
        chunks = iter(lambda: handle.read(1 << 20), b"")
        return manifest_import_begin(
            name=name, account=account, chunks=chunks, user=user, request=request, transmit_type=transmit_type
        )
