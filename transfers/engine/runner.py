"""The transfer runner: many files, `pool_size` at a time, each failure kept to its own file.

Progress goes to one callback as events; returning False from it stops the run (cancel, pause).
The callback is called from the pool's threads, so it must be thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from transfers.engine.copy import CopyFailed, Stopped, copy_file
from transfers.engine.paths import PathRefused, local_source, server_target


@dataclass(frozen=True)
class FileTask:
    item_id: int
    local: str
    server: str


@dataclass(frozen=True)
class BytesSent:
    item_id: int
    count: int


@dataclass(frozen=True)
class FileFinished:
    item_id: int
    ok: bool
    size: int = 0
    checksum: str = ""
    error_code: str = ""
    error: str = ""


Event = BytesSent | FileFinished
Report = Callable[[Event], bool | None]


@dataclass(frozen=True)
class RunSummary:
    files_ok: int
    files_failed: int
    bytes_sent: int
    stopped: bool


def upload_one(
    task: FileTask, *, storage_root: Path, allowed_roots: Sequence[Path], on_bytes: Callable[[int], bool]
) -> FileFinished:
    """Copy one manifest entry into the storage root, turning every expected failure into a result."""
    try:
        # Checked again here, not only at import: a symlink may have been changed since.
        src = local_source(task.local, allowed_roots)
        dest = server_target(storage_root, task.server)
        copied = copy_file(src, dest, on_bytes=on_bytes)
    except PathRefused as exc:
        return FileFinished(task.item_id, ok=False, error_code="bad_path", error=str(exc))
    except CopyFailed as exc:
        return FileFinished(task.item_id, ok=False, error_code=exc.code, error=str(exc))
    return FileFinished(task.item_id, ok=True, size=copied.size, checksum=copied.checksum)


def run_upload(
    tasks: Iterable[FileTask],
    *,
    storage_root: Path,
    allowed_roots: Sequence[Path],
    report: Report,
    pool_size: int = 4,
) -> RunSummary:
    stop = threading.Event()
    lock = threading.Lock()
    totals = {"ok": 0, "failed": 0, "bytes": 0}

    def tell(event: Event) -> bool:
        if report(event) is False:
            stop.set()
        return not stop.is_set()

    def one(task: FileTask) -> None:
        if stop.is_set():
            return

        def on_bytes(count: int) -> bool:
            return tell(BytesSent(task.item_id, count))

        try:
            result = upload_one(task, storage_root=storage_root, allowed_roots=allowed_roots, on_bytes=on_bytes)
        except Stopped:
            return
        with lock:
            totals["ok" if result.ok else "failed"] += 1
            totals["bytes"] += result.size
        tell(result)

    workers = max(1, pool_size)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rvweb-copy") as pool:
        # Bounded submission keeps memory flat for huge manifests: at most 2x pool_size in flight.
        pending: set[Future[None]] = set()
        for task in tasks:
            if stop.is_set():
                break
            pending.add(pool.submit(one, task))
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
        for future in pending:
            future.result()
    return RunSummary(files_ok=totals["ok"], files_failed=totals["failed"], bytes_sent=totals["bytes"], stopped=stop.is_set())
